//! A small synchronous rtnetlink client: the handful of link, address and
//! route requests a sandbox needs, without an async runtime.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::Socket;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("netlink socket I/O failed")]
    Io(#[from] io::Error),
    #[error("kernel refused {request}")]
    Refused {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("malformed netlink reply: {0}")]
    Malformed(String),
}

/// A link as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
}

/// An rtnetlink socket bound in the network namespace it was created in.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn new() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Self { socket, seq: 0 })
    }

    /// Creates a veth pair: `host` here, `peer` directly inside the network
    /// namespace `netns` (cheaper than moving it there afterwards).
    pub fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        netns: RawFd,
    ) -> Result<(), NetlinkError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.into()),
            LinkAttribute::NetNsFd(netns),
        ];
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(host.into()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ];
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.acked("create veth", RouteNetlinkMessage::NewLink(msg), flags)
    }

    /// Brings a link up, optionally labelling it with an alias.
    pub fn set_up(&mut self, index: u32, alias: Option<&str>) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if let Some(alias) = alias {
            msg.attributes.push(LinkAttribute::IfAlias(alias.into()));
        }
        self.acked("set link up", RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Adds `ip/prefix` to a link.
    pub fn add_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        msg.attributes = vec![
            AddressAttribute::Local(ip.into()),
            AddressAttribute::Address(ip.into()),
        ];
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.acked("add address", RouteNetlinkMessage::NewAddress(msg), flags)
    }

    /// Adds a default IPv4 route through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.acked(
            "add default route",
            RouteNetlinkMessage::NewRoute(msg),
            flags,
        )
    }

    pub fn delete_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.acked("delete link", RouteNetlinkMessage::DelLink(msg), 0)
    }

    /// Every link of this namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let seq = self.send(request, NLM_F_DUMP)?;
        let mut links = Vec::new();
        self.receive(seq, "list links", |payload| {
            if let RouteNetlinkMessage::NewLink(msg) = payload {
                links.push(link_of(&msg));
            }
        })?;
        Ok(links)
    }

    /// The link named `name`, if there is one.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        let seq = self.send(RouteNetlinkMessage::GetLink(msg), NLM_F_ACK)?;
        let mut found = None;
        let result = self.receive(seq, "get link", |payload| {
            if let RouteNetlinkMessage::NewLink(msg) = payload {
                found = Some(link_of(&msg));
            }
        });
        match result {
            Err(NetlinkError::Refused { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(found),
        }
    }

    fn acked(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let seq = self.send(message, flags | NLM_F_ACK)?;
        self.receive(seq, request, |_| {})
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        Ok(self.seq)
    }

    /// Reads replies to request `seq` until its ACK, error or end of dump,
    /// handing every data message to `each`.
    fn receive(
        &mut self,
        seq: u32,
        request: &'static str,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), NetlinkError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
            let mut offset = 0;
            while offset < n {
                let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..n])
                    .map_err(|e| NetlinkError::Malformed(e.to_string()))?;
                let len = usize::try_from(packet.header.length).unwrap_or(0);
                if len == 0 {
                    return Err(NetlinkError::Malformed("zero-length message".into()));
                }
                offset += len;
                if packet.header.sequence_number != seq {
                    continue;
                }
                match packet.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(NetlinkError::Refused {
                                request,
                                source: io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::InnerMessage(msg) => each(msg),
                    _ => {}
                }
            }
        }
    }
}

fn link_of(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        alias: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
            _ => {}
        }
    }
    link
}
