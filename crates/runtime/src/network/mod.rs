//! The sandbox's network: one veth pair per sandbox, addressed from a /30.
//!
//! Slot `n` gets the host end `spv<n>` and the addresses `10.200.0.0/16 +
//! 4n`: `.1` on the host, `.2` in the sandbox as `eth0`, which is created
//! directly inside the sandbox's network namespace. The host end carries the
//! alias `sandpit:<id>` so a sweep after a crash knows whose it is. The
//! [`firewall`] keeps sandboxes off host ports and off each other.

pub mod firewall;
mod netlink;
mod netns;

use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use thiserror::Error;

pub use netlink::{Link, Netlink, NetlinkError};

/// Name prefix of host-side veth ends.
pub const HOST_PREFIX: &str = "spv";
/// Name of the sandbox end.
pub const SANDBOX_IF: &str = "eth0";
/// Prefix of the alias that names the owning sandbox.
const ALIAS_PREFIX: &str = "sandpit:";
/// First address of the sandbox range, 10.200.0.0/16.
const NETWORK: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 0);
const NETWORK_PREFIX: u32 = 16;
const PAIR_PREFIX: u8 = 30;

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("network slot {0} is outside 10.200.0.0/16 (at most {max})", max = max_slot())]
    SlotOutOfRange(u32),
    #[error("failed to open the sandbox's network namespace")]
    Namespace(#[source] io::Error),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("{0} vanished while being configured")]
    LinkMissing(&'static str),
}

/// Names and addresses for one network slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub sandbox_ip: Ipv4Addr,
}

/// Highest usable slot: the /16 holds 2^14 /30s.
pub const fn max_slot() -> u32 {
    (1 << (32 - NETWORK_PREFIX - 2)) - 1
}

impl NetPlan {
    pub fn for_slot(slot: u32) -> Result<Self, NetworkError> {
        if slot > max_slot() {
            return Err(NetworkError::SlotOutOfRange(slot));
        }
        let base = u32::from(NETWORK) + slot * 4;
        Ok(Self {
            host_if: format!("{HOST_PREFIX}{slot}"),
            host_ip: Ipv4Addr::from(base + 1),
            sandbox_ip: Ipv4Addr::from(base + 2),
        })
    }
}

/// The slot whose sandbox end has address `ip`, if it is one.
pub fn slot_of_sandbox_ip(ip: Ipv4Addr) -> Option<u32> {
    let offset = u32::from(ip).checked_sub(u32::from(NETWORK))?;
    (offset >> (32 - NETWORK_PREFIX) == 0 && offset % 4 == 2).then_some(offset / 4)
}

/// The alias that marks a host-side veth end as sandbox `id`'s.
pub fn alias(id: &str) -> String {
    format!("{ALIAS_PREFIX}{id}")
}

/// The sandbox id an alias names, if it is one of ours.
pub fn owner(link: &Link) -> Option<&str> {
    link.alias.as_deref()?.strip_prefix(ALIAS_PREFIX)
}

/// Wires the network namespace of process `pid` (the paused init) to the
/// host: veth pair, addresses, links up, default route via the host end.
pub fn setup(pid: i32, id: &str, plan: &NetPlan) -> Result<(), NetworkError> {
    let netns = File::open(format!("/proc/{pid}/ns/net")).map_err(NetworkError::Namespace)?;
    let mut host = Netlink::new()?;
    host.create_veth(&plan.host_if, SANDBOX_IF, netns.as_raw_fd())?;
    disable_ipv6(&plan.host_if);
    let index = host
        .link(&plan.host_if)?
        .ok_or(NetworkError::LinkMissing("host veth"))?
        .index;
    host.add_address(index, plan.host_ip, PAIR_PREFIX)?;
    host.set_up(index, Some(&alias(id)))?;

    let mut inside =
        netns::within(netns.as_fd(), Netlink::new).map_err(NetworkError::Namespace)??;
    let lo = inside
        .link("lo")?
        .ok_or(NetworkError::LinkMissing("lo"))?
        .index;
    inside.set_up(lo, None)?;
    let eth = inside
        .link(SANDBOX_IF)?
        .ok_or(NetworkError::LinkMissing(SANDBOX_IF))?
        .index;
    inside.add_address(eth, plan.sandbox_ip, PAIR_PREFIX)?;
    inside.set_up(eth, None)?;
    inside.add_default_route(plan.host_ip)?;
    Ok(())
}

/// The host end needs no IPv6 either (no link-local address, no router
/// solicitations into the sandbox).
fn disable_ipv6(name: &str) {
    let knob = Path::new("/proc/sys/net/ipv6/conf")
        .join(name)
        .join("disable_ipv6");
    if knob.exists() {
        let _ = fs::write(knob, "1");
    }
}

/// Whether host link `name` exists and, if it does, the sandbox its alias
/// names. Read from sysfs, which (unlike netlink) does not wait for the RTNL
/// lock that a dying network namespace holds while it is torn down.
pub fn link_owner(name: &str) -> Option<Option<String>> {
    let dir = Path::new("/sys/class/net").join(name);
    if !dir.exists() {
        return None;
    }
    let alias = fs::read_to_string(dir.join("ifalias")).unwrap_or_default();
    Some(alias.trim().strip_prefix(ALIAS_PREFIX).map(str::to_owned))
}

/// Deletes host link `name`; one that is already gone is fine.
pub fn delete_link_named(name: &str) -> Result<(), NetworkError> {
    match Netlink::new()?.link(name)? {
        Some(link) => delete_link(link.index),
        None => Ok(()),
    }
}

/// Host-side sandbox links (`spv*`).
pub fn sandbox_links() -> Result<Vec<Link>, NetworkError> {
    let links = Netlink::new()?.links()?;
    Ok(links
        .into_iter()
        .filter(|l| l.name.starts_with(HOST_PREFIX))
        .collect())
}

/// Deletes a host link by index; one that is already gone is fine.
pub fn delete_link(index: u32) -> Result<(), NetworkError> {
    match Netlink::new()?.delete_link(index) {
        Err(NetlinkError::Refused { source, .. })
            if source.raw_os_error() == Some(libc::ENODEV) =>
        {
            Ok(())
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_addresses_map_back_to_their_slot() {
        for slot in [0, 1, 77, max_slot()] {
            let plan = NetPlan::for_slot(slot).unwrap();
            assert_eq!(slot_of_sandbox_ip(plan.sandbox_ip), Some(slot));
            assert_eq!(slot_of_sandbox_ip(plan.host_ip), None);
        }
        assert_eq!(slot_of_sandbox_ip(Ipv4Addr::new(10, 201, 0, 2)), None);
        assert_eq!(slot_of_sandbox_ip(Ipv4Addr::new(127, 0, 0, 1)), None);
    }

    #[test]
    fn slots_map_to_disjoint_slash30s() {
        let zero = NetPlan::for_slot(0).unwrap();
        assert_eq!(zero.host_if, "spv0");
        assert_eq!(zero.host_ip, Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(zero.sandbox_ip, Ipv4Addr::new(10, 200, 0, 2));
        let next = NetPlan::for_slot(65).unwrap();
        assert_eq!(next.host_ip, Ipv4Addr::new(10, 200, 1, 5));
        let last = NetPlan::for_slot(max_slot()).unwrap();
        assert_eq!(last.sandbox_ip, Ipv4Addr::new(10, 200, 255, 254));
        assert!(last.host_if.len() <= 15, "IFNAMSIZ");
        assert!(NetPlan::for_slot(max_slot() + 1).is_err());
    }

    #[test]
    fn aliases_name_their_sandbox() {
        let link = Link {
            index: 3,
            name: "spv1".into(),
            alias: Some(alias("abc")),
        };
        assert_eq!(owner(&link), Some("abc"));
        let foreign = Link {
            index: 4,
            name: "spv2".into(),
            alias: Some("other".into()),
        };
        assert_eq!(owner(&foreign), None);
    }
}
