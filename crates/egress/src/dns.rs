//! The sandbox's resolver: allowed names resolve to [`SENTINEL`] (or to an
//! alias with a [`crate::direct`] route), denied ones do not exist.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

use crate::direct::Direct;
use crate::{Context, Lookup, SENTINEL};

/// Seconds a sandbox may cache an answer (short: policies change).
const TTL: u32 = 5;
/// How long an answer may wait for a direct route to be made.
const DIRECT_WAIT: Duration = Duration::from_secs(1);

pub async fn serve<L: Lookup>(socket: UdpSocket, ctx: Arc<Context<L>>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(err) => {
                tracing::warn!(error = %err, "dns: receive failed");
                continue;
            }
        };
        // A sandbox past its share of queries in flight loses the query
        // (its resolver asks again).
        let Some(slot) = ctx.dns_queries.acquire(peer.ip()) else {
            continue;
        };
        let query = buf[..n].to_vec();
        let socket = socket.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(reply) = answer(&query, peer, &*ctx.lookup, ctx.direct.as_ref()).await {
                let _ = socket.send_to(&reply, peer).await;
            }
        });
    }
}

async fn answer<L: Lookup>(
    query: &[u8],
    peer: SocketAddr,
    lookup: &L,
    direct: Option<&Arc<Direct>>,
) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let id = request.metadata.id;
    let op_code = request.metadata.op_code;
    // Before the policy: a route is only made on a policy still current.
    let seen = direct.map(|d| d.changes_seen());
    let Some(policy) = lookup.policy(peer.ip()).await else {
        return Message::error_msg(id, op_code, ResponseCode::Refused)
            .to_vec()
            .ok();
    };
    let [question] = request.queries.as_slice() else {
        return Message::error_msg(id, op_code, ResponseCode::FormErr)
            .to_vec()
            .ok();
    };
    if op_code != OpCode::Query {
        return Message::error_msg(id, op_code, ResponseCode::NotImp)
            .to_vec()
            .ok();
    }
    let name = question.name().to_ascii();
    let host = name.trim_end_matches('.');
    let mut reply = Message::response(id, op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    // Sandpit's own API: only for a sandbox with an access_delegation grant.
    let delegated = host.eq_ignore_ascii_case(crate::delegate::HOST);
    if delegated {
        match lookup.delegation(&policy).await {
            None => reply.metadata.response_code = ResponseCode::NXDomain,
            Some(_) if question.query_type() == RecordType::A => {
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    TTL,
                    RData::A(A(SENTINEL)),
                ));
            }
            Some(_) => {}
        }
    } else if policy.check_name(host).is_err() {
        reply.metadata.response_code = ResponseCode::NXDomain;
    } else if question.query_type() == RecordType::A {
        let address = match (direct, seen, peer.ip()) {
            (Some(direct), Some(seen), IpAddr::V4(sandbox)) => {
                direct
                    .address_within(DIRECT_WAIT, seen, sandbox, host, policy)
                    .await
            }
            _ => SENTINEL,
        };
        reply.add_answer(Record::from_rdata(
            question.name().clone(),
            TTL,
            RData::A(A(address)),
        ));
    }
    // Other types (AAAA included): the name exists, with no such records.
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policies, Policy};
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn ask(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), kind));
        m.to_vec().unwrap()
    }

    async fn run(policy: Option<Policy>, name: &str, kind: RecordType) -> Message {
        let peer: SocketAddr = "10.200.0.2:5353".parse().unwrap();
        let lookup = Policies(policy.map(|p| (peer.ip(), p)).into_iter().collect());
        let reply = answer(&ask(name, kind), peer, &lookup, None).await.unwrap();
        Message::from_vec(&reply).unwrap()
    }

    fn deny(pattern: &str) -> Policy {
        Policy::from_proxy_config(Some(&serde_json::json!({
            "access_control": {"deny_list": [pattern]}
        })))
        .unwrap()
    }

    #[tokio::test]
    async fn allowed_names_resolve_to_the_sentinel() {
        let reply = run(Some(Policy::default()), "api.example.test.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].data, RData::A(A(SENTINEL)));
    }

    #[tokio::test]
    async fn denied_names_do_not_exist_and_ipv6_is_empty() {
        let reply = run(Some(deny("*.evil.test")), "x.evil.test.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(reply.answers.is_empty());
        let v6 = run(Some(Policy::default()), "ok.test.", RecordType::AAAA).await;
        assert_eq!(v6.metadata.response_code, ResponseCode::NoError);
        assert!(v6.answers.is_empty());
    }

    #[tokio::test]
    async fn strangers_are_refused() {
        let reply = run(None, "ok.test.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::{test_context, Policy};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A lookup that never answers, counting the queries waiting on it.
    struct Stuck(AtomicUsize);

    impl Lookup for Stuck {
        async fn policy(&self, _source: IpAddr) -> Option<Policy> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn secret(&self, _tenant: &str, _name: &str) -> Option<String> {
            None
        }
        fn sign_callback(&self, _aud: &str, _body_sha256: &str) -> Option<String> {
            None
        }
        fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
            tokio::sync::watch::channel(0).1
        }
    }

    #[tokio::test]
    async fn a_sandbox_has_a_bounded_number_of_queries_in_flight() {
        let lookup = Arc::new(Stuck(AtomicUsize::new(0)));
        let ctx = test_context(lookup.clone(), 1);
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(serve(server, ctx.clone()));
        // Many source ports, one sandbox (the source address).
        let query = {
            let mut m = Message::query();
            m.add_query(hickory_proto::op::Query::query(
                hickory_proto::rr::Name::from_ascii("a.test.").unwrap(),
                RecordType::A,
            ));
            m.to_vec().unwrap()
        };
        let mut sockets = Vec::new();
        for _ in 0..200 {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.send_to(&query, addr).await.unwrap();
            sockets.push(socket);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let source = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        assert_eq!(
            lookup.0.load(Ordering::SeqCst),
            crate::limits::DNS_QUERIES_PER_SANDBOX
        );
        assert_eq!(
            ctx.dns_queries.held_by(source),
            crate::limits::DNS_QUERIES_PER_SANDBOX
        );
    }
}
