//! Direct routes: HTTPS the proxy would only pass through goes around it.
//!
//! A passed-through TLS stream costs the proxy a second TCP connection and
//! two wake-ups per request, which on a busy host halves small-request
//! throughput (`docs/benchmarks.md`). When nothing about a host needs the
//! proxy — the sandbox's policy lets it reach every name (no allow or deny
//! list) and no rule or callback intercepts the host — the DNS server
//! answers the name with an alias of its own (198.18.0.0/15, one per name)
//! instead of [`SENTINEL`], and asks the firewall ([`DirectTable`]) to send
//! TCP 443 from that sandbox to that alias by NAT to the address the proxy
//! would have dialed. Nothing widens: the sandbox reaches only addresses
//! Sandpit resolved for names it may reach, on port 443, which is what the
//! proxy allows it too; and the host (not the sandbox) resolves the name.
//!
//! Policy changes are followed: [`Direct::watch`] drops every route whose
//! sandbox is gone or whose policy no longer qualifies the name, and the
//! firewall checks the route on every packet, so that cuts open
//! connections as well. Connections to an alias without a route go to the
//! proxy like any other (it treats aliases like the sentinel: the name in
//! SNI is what counts).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::dial::Dialer;
use crate::{Lookup, Policy, SENTINEL};

/// Re-resolve a route's target when the sandbox asks for the name again
/// after this long (its DNS answers live 5 s, so it asks often).
const REFRESH: Duration = Duration::from_secs(300);
/// Routes (so aliases) per sandbox; names past this go through the proxy.
/// The alias range is shared: 131,069 aliases, so at this cap it takes
/// 512 sandboxes to use it up.
const MAX_ROUTES_PER_SANDBOX: usize = 256;
/// Aliases are 198.18.0.2 …, after the sentinel, within 198.18.0.0/15.
const FIRST_ALIAS: u32 = u32::from_be_bytes([198, 18, 0, 2]);
const LAST_ALIAS: u32 = u32::from_be_bytes([198, 19, 255, 254]);

/// Whether `ip` is the sentinel or an alias: the sandbox dialed a name, so
/// the name (SNI, `Host`) is what the proxy checks, not the address.
pub fn is_alias(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == SENTINEL || (FIRST_ALIAS..=LAST_ALIAS).contains(&u32::from(v4)),
        IpAddr::V6(_) => false,
    }
}

/// TCP 443 from `sandbox` to `alias` goes to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub sandbox: Ipv4Addr,
    pub alias: Ipv4Addr,
    pub target: SocketAddrV4,
}

/// Where routes are written (the host firewall). One call is one
/// transaction; it may block briefly.
pub trait DirectTable: Send + Sync + std::fmt::Debug + 'static {
    fn update(&self, add: &[Route], remove: &[Route]) -> Result<(), TableError>;
}

/// Why routes could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The table refused the transaction.
    #[error("the direct-route table refused the update: {0}")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The blocking write did not finish (a panic, or shutdown).
    #[error("the direct-route update did not finish: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub struct Direct {
    table: Arc<dyn DirectTable>,
    dialer: Arc<Dialer>,
    /// Whether NAT from a veth reaches a target ([`reachable`]; tests
    /// replace it).
    reachable: fn(Ipv4Addr) -> bool,
    /// The lookup's count of policy changes: a route is only made if none
    /// came since the policy it was decided on was read.
    changes: tokio::sync::watch::Receiver<u64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The alias of each name some route uses (and only those).
    aliases: HashMap<String, Ipv4Addr>,
    /// Aliases handed out so far, from [`FIRST_ALIAS`] on.
    handed_out: u32,
    /// Aliases whose routes are all gone, the longest-unused first.
    free: VecDeque<Ipv4Addr>,
    routes: HashMap<(Ipv4Addr, String), Installed>,
    /// The table refused an update: stop using it (the proxy still works).
    broken: bool,
}

struct Installed {
    route: Route,
    since: Instant,
}

impl State {
    /// The name's alias, the same for every sandbox: the one it has, a
    /// recycled one, or the next unused; none once the range is used up.
    fn alias(&mut self, name: &str) -> Option<Ipv4Addr> {
        if let Some(alias) = self.aliases.get(name) {
            return Some(*alias);
        }
        let alias = match self.free.pop_front() {
            Some(alias) => alias,
            None => {
                let next = FIRST_ALIAS.checked_add(self.handed_out)?;
                if next > LAST_ALIAS {
                    return None;
                }
                self.handed_out += 1;
                Ipv4Addr::from(next)
            }
        };
        self.aliases.insert(name.to_owned(), alias);
        Some(alias)
    }

    /// Give `name`'s alias back once no route uses it.
    fn release_if_unused(&mut self, name: &str) {
        if self.routes.keys().any(|(_, n)| n == name) {
            return;
        }
        if let Some(alias) = self.aliases.remove(name) {
            self.free.push_back(alias);
        }
    }

    fn routes_of(&self, sandbox: Ipv4Addr) -> usize {
        self.routes.keys().filter(|(s, _)| *s == sandbox).count()
    }
}

/// Whether the policy leaves nothing for the proxy to do for `name`.
fn qualifies(policy: &Policy, name: &str) -> bool {
    policy.permits_every_name() && !policy.rules.intercepts(name)
}

impl Direct {
    pub fn new(
        table: Arc<dyn DirectTable>,
        dialer: Arc<Dialer>,
        changes: tokio::sync::watch::Receiver<u64>,
    ) -> Self {
        Self {
            table,
            dialer,
            reachable,
            changes,
            state: Mutex::new(State::default()),
        }
    }

    /// The lookup's count of policy changes now: read it before reading
    /// the policy that [`Direct::address`] is given.
    pub fn changes_seen(&self) -> u64 {
        *self.changes.borrow()
    }

    /// [`Direct::address`], waited for at most `wait`: past that the
    /// answer is the sentinel (the proxy serves the name) while the route
    /// is still made for the next query. A slow resolver upstream must not
    /// make the sandbox's own DNS time out.
    pub async fn address_within(
        self: &Arc<Self>,
        wait: Duration,
        seen: u64,
        sandbox: Ipv4Addr,
        name: &str,
        policy: Policy,
    ) -> Ipv4Addr {
        let this = self.clone();
        let name = name.to_owned();
        let task = tokio::spawn(async move { this.address(seen, sandbox, &name, &policy).await });
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(address)) => address,
            _ => SENTINEL,
        }
    }

    /// The address Sandpit's DNS answers for `name` (allowed by `policy`,
    /// read when the change count was `seen`) to `sandbox`: an alias with a
    /// direct route when the name qualifies and the target can be reached
    /// without the proxy, else the sentinel.
    pub async fn address(
        &self,
        seen: u64,
        sandbox: Ipv4Addr,
        name: &str,
        policy: &Policy,
    ) -> Ipv4Addr {
        let name = &name.to_ascii_lowercase();
        let key = (sandbox, name.clone());
        if !qualifies(policy, name) {
            self.remove(|k, _| *k == key).await;
            return SENTINEL;
        }
        {
            let state = self.state.lock().await;
            if state.broken {
                return SENTINEL;
            }
            if let Some(installed) = state.routes.get(&key) {
                if installed.since.elapsed() < REFRESH {
                    return installed.route.alias;
                }
            }
        }
        // Resolve without holding the lock: other sandboxes' queries go on.
        let Some(target) = self.target(policy, name).await else {
            self.remove(|k, _| *k == key).await;
            return SENTINEL;
        };
        let mut state = self.state.lock().await;
        let old = state.routes.get(&key).map(|i| i.route);
        // Only a route that will be made takes an alias: a sandbox past
        // its cap, or a policy changed since it was read (the route might
        // not be allowed any more, and the reconcile for that change may
        // already have run; the next query decides on the new policy),
        // gets the sentinel without one.
        if old.is_none() && state.routes_of(sandbox) >= MAX_ROUTES_PER_SANDBOX {
            return SENTINEL;
        }
        if self.changes_seen() != seen {
            return SENTINEL;
        }
        let Some(alias) = state.alias(name) else {
            return SENTINEL;
        };
        let route = Route {
            sandbox,
            alias,
            target,
        };
        if old != Some(route) {
            let remove: Vec<Route> = old.into_iter().collect();
            if let Err(err) = self.write(&[route], &remove).await {
                tracing::warn!(error = %err, "egress: direct routes unavailable; using the proxy");
                state.broken = true;
                state.release_if_unused(name);
                return SENTINEL;
            }
        }
        let since = Instant::now();
        state.routes.insert(key, Installed { route, since });
        route.alias
    }

    /// Where a route for `name` would go: where the proxy would dial it on
    /// port 443, if that can be reached by NAT from a sandbox's veth — not
    /// a loopback address, and a remote one only when the host forwards.
    async fn target(&self, policy: &Policy, name: &str) -> Option<SocketAddrV4> {
        let SocketAddr::V4(target) = self.dialer.resolve(policy, name, 443).await.ok()? else {
            return None;
        };
        (self.reachable)(*target.ip()).then_some(target)
    }

    /// Drop the routes `gone` picks, in one table update.
    async fn remove(&self, gone: impl Fn(&(Ipv4Addr, String), &Route) -> bool) {
        let mut state = self.state.lock().await;
        let keys: Vec<_> = state
            .routes
            .iter()
            .filter(|(k, i)| gone(k, &i.route))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() || state.broken {
            return;
        }
        let routes: Vec<Route> = keys.iter().map(|k| state.routes[k].route).collect();
        if let Err(err) = self.write(&[], &routes).await {
            tracing::warn!(error = %err, "egress: could not remove direct routes");
            state.broken = true;
            return;
        }
        for key in keys {
            state.routes.remove(&key);
            state.release_if_unused(&key.1);
        }
    }

    async fn write(&self, add: &[Route], remove: &[Route]) -> Result<(), TableError> {
        let table = self.table.clone();
        let (add, remove) = (add.to_vec(), remove.to_vec());
        tokio::task::spawn_blocking(move || table.update(&add, &remove)).await?
    }

    /// Drop the routes of sandboxes that are gone or whose policy no
    /// longer qualifies the name.
    pub async fn reconcile<L: Lookup>(&self, lookup: &L) {
        let sandboxes: Vec<Ipv4Addr> = {
            let state = self.state.lock().await;
            let mut all: Vec<_> = state.routes.keys().map(|(s, _)| *s).collect();
            all.sort();
            all.dedup();
            all
        };
        for sandbox in sandboxes {
            let policy = lookup.policy(IpAddr::V4(sandbox)).await;
            self.remove(|(s, name), _| {
                *s == sandbox && !policy.as_ref().is_some_and(|p| qualifies(p, name))
            })
            .await;
        }
    }

    /// Reconcile after every policy change, until the lookup goes away.
    pub async fn watch<L: Lookup>(self: Arc<Self>, lookup: Arc<L>) {
        let mut changes = lookup.policy_changes();
        while changes.changed().await.is_ok() {
            self.reconcile(&*lookup).await;
        }
    }
}

/// Whether NAT from a sandbox's veth reaches `ip`: not a loopback address
/// (the kernel drops those as martians), and a remote one only when the
/// host forwards.
fn reachable(ip: Ipv4Addr) -> bool {
    !ip.is_loopback() && !ip.is_unspecified() && (is_local(ip) || forwarding())
}

/// Whether `ip` is one of the host's addresses (binding to it works).
fn is_local(ip: Ipv4Addr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Whether the host forwards IPv4 (else a remote target's replies would
/// not make it back to the sandbox).
fn forwarding() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policies;
    use std::sync::Mutex as StdMutex;

    /// Records updates; refuses them all when `refuse` is set.
    #[derive(Debug, Default)]
    struct Recorder {
        log: StdMutex<Vec<(Vec<Route>, Vec<Route>)>>,
        refuse: bool,
    }
    impl DirectTable for Recorder {
        fn update(&self, add: &[Route], remove: &[Route]) -> Result<(), TableError> {
            if self.refuse {
                return Err(TableError::Refused("no".into()));
            }
            self.log
                .lock()
                .unwrap()
                .push((add.to_vec(), remove.to_vec()));
            Ok(())
        }
    }

    const SANDBOX: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    const TARGET: &str = "192.0.2.10:8443";

    /// A `Direct` resolving `names` to [`TARGET`], reachable when `reach`.
    fn direct(recorder: Arc<Recorder>, names: &[&str], reach: bool) -> Direct {
        let target: SocketAddr = TARGET.parse().unwrap();
        let resolve = names.iter().map(|n| (n.to_string(), target)).collect();
        let changes = tokio::sync::watch::channel(0).1;
        let mut direct = Direct::new(recorder, Arc::new(Dialer::new(resolve)), changes);
        direct.reachable = if reach { |_| true } else { |_| false };
        direct
    }

    fn policy(config: serde_json::Value) -> Policy {
        Policy::from_proxy_config(Some(&config)).unwrap()
    }

    #[test]
    fn aliases_are_recognised_and_handed_out_once_per_name() {
        let mut state = State::default();
        let a = state.alias("a.test").unwrap();
        assert_eq!(a, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(state.alias("b.test").unwrap(), Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(state.alias("a.test").unwrap(), a);
        assert!(is_alias(a.into()) && is_alias(SENTINEL.into()));
        assert!(is_alias(Ipv4Addr::new(198, 19, 255, 254).into()));
        assert!(!is_alias(Ipv4Addr::new(198, 20, 0, 1).into()));
        state.handed_out = LAST_ALIAS - FIRST_ALIAS + 1;
        assert_eq!(state.alias("c.test"), None);
        // An alias no route uses goes back to the pool.
        state.release_if_unused("b.test");
        assert_eq!(state.alias("c.test"), Some(Ipv4Addr::new(198, 18, 0, 3)));
    }

    #[test]
    fn only_names_the_proxy_would_just_pass_through_qualify() {
        let open = Policy::default();
        assert!(qualifies(&open, "api.example.test"));
        let listed = policy(serde_json::json!({"access_control": {"deny_list": ["x.test"]}}));
        assert!(!qualifies(&listed, "api.example.test"));
        let allowed = policy(serde_json::json!({"access_control": {"allow_list": ["*"]}}));
        assert!(!qualifies(&allowed, "api.example.test"));
        let rules = policy(serde_json::json!({"rules": [{
            "name": "r", "match_hosts": ["api.example.test"],
            "headers": [{"name": "X", "type": "plaintext", "value": "1"}]}]}));
        assert!(!qualifies(&rules, "api.example.test"));
        assert!(qualifies(&rules, "other.example.test"));
    }

    #[test]
    fn loopback_targets_are_not_reachable_by_nat() {
        assert!(!reachable(Ipv4Addr::LOCALHOST));
        assert!(!reachable(Ipv4Addr::new(127, 0, 0, 53)));
        assert!(!reachable(Ipv4Addr::UNSPECIFIED));
    }

    #[tokio::test]
    async fn unreachable_targets_get_the_sentinel() {
        let recorder = Arc::new(Recorder::default());
        let direct = direct(recorder.clone(), &["h.test"], false);
        assert_eq!(
            direct
                .address(0, SANDBOX, "h.test", &Policy::default())
                .await,
            SENTINEL
        );
        assert!(recorder.log.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_route_is_written_once_and_removed_when_the_name_stops_qualifying() {
        let recorder = Arc::new(Recorder::default());
        let direct = direct(recorder.clone(), &["api.example.test"], true);
        let open = Policy::default();
        let alias = direct.address(0, SANDBOX, "api.example.test", &open).await;
        assert!(is_alias(alias.into()) && alias != SENTINEL);
        assert_eq!(
            direct.address(0, SANDBOX, "api.example.test", &open).await,
            alias
        );
        let route = Route {
            sandbox: SANDBOX,
            alias,
            target: TARGET.parse().unwrap(),
        };
        assert_eq!(*recorder.log.lock().unwrap(), vec![(vec![route], vec![])]);
        let listed = policy(serde_json::json!({"access_control": {"deny_list": ["x.test"]}}));
        assert_eq!(
            direct
                .address(0, SANDBOX, "api.example.test", &listed)
                .await,
            SENTINEL
        );
        assert_eq!(recorder.log.lock().unwrap()[1], (vec![], vec![route]));
    }

    #[tokio::test]
    async fn reconciling_drops_routes_of_gone_sandboxes_and_of_names_now_intercepted() {
        let recorder = Arc::new(Recorder::default());
        let direct = direct(recorder.clone(), &["a.test", "b.test", "c.test"], true);
        let other = Ipv4Addr::new(10, 200, 0, 6);
        let open = Policy::default();
        direct.address(0, SANDBOX, "a.test", &open).await;
        direct.address(0, other, "b.test", &open).await;
        let kept = direct.address(0, other, "c.test", &open).await;
        // SANDBOX is gone; `other` now has a rule naming b.test.
        let rules = policy(serde_json::json!({"rules": [{
            "name": "r", "match_hosts": ["b.test"],
            "headers": [{"name": "X", "type": "plaintext", "value": "1"}]}]}));
        let lookup = Policies([(IpAddr::V4(other), rules)].into());
        direct.reconcile(&lookup).await;
        let removed: Vec<(Ipv4Addr, Ipv4Addr)> = recorder.log.lock().unwrap()[3..]
            .iter()
            .flat_map(|(add, remove)| {
                assert!(add.is_empty());
                remove.iter().map(|r| (r.sandbox, r.alias))
            })
            .collect();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(removed.iter().all(|(_, alias)| *alias != kept));
        let state = direct.state.lock().await;
        let left: Vec<_> = state.routes.keys().cloned().collect();
        assert_eq!(left, vec![(other, "c.test".to_owned())]);
    }

    #[tokio::test]
    async fn a_policy_read_before_a_change_makes_no_route() {
        let recorder = Arc::new(Recorder::default());
        let (changed, changes) = tokio::sync::watch::channel(0);
        let mut direct = direct(recorder.clone(), &["h.test"], true);
        direct.changes = changes;
        changed.send(1).unwrap();
        let open = Policy::default();
        assert_eq!(direct.address(0, SANDBOX, "h.test", &open).await, SENTINEL);
        assert!(recorder.log.lock().unwrap().is_empty());
        assert_ne!(direct.address(1, SANDBOX, "h.test", &open).await, SENTINEL);
    }

    #[tokio::test]
    async fn a_refusing_table_falls_back_to_the_proxy() {
        let recorder = Arc::new(Recorder {
            refuse: true,
            ..Recorder::default()
        });
        let direct = direct(recorder, &["h.test"], true);
        assert_eq!(
            direct
                .address(0, SANDBOX, "h.test", &Policy::default())
                .await,
            SENTINEL
        );
        // And stays there, without asking the table again.
        assert_eq!(
            direct
                .address(0, SANDBOX, "h.test", &Policy::default())
                .await,
            SENTINEL
        );
    }

    #[tokio::test]
    async fn names_that_cannot_be_routed_take_no_alias() {
        let recorder = Arc::new(Recorder::default());
        let names: Vec<String> = (0..500).map(|i| format!("n{i}.test")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let direct = direct(recorder.clone(), &refs, false);
        for name in &names {
            let got = direct.address(0, SANDBOX, name, &Policy::default()).await;
            assert_eq!(got, SENTINEL);
        }
        let state = direct.state.lock().await;
        assert_eq!((state.handed_out, state.aliases.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_sandbox_past_its_cap_gets_the_sentinel_and_takes_no_alias() {
        let recorder = Arc::new(Recorder::default());
        let names: Vec<String> = (0..MAX_ROUTES_PER_SANDBOX + 50)
            .map(|i| format!("n{i}.test"))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let direct = direct(recorder.clone(), &refs, true);
        let open = Policy::default();
        let mut routed = 0;
        for name in &names {
            if direct.address(0, SANDBOX, name, &open).await != SENTINEL {
                routed += 1;
            }
        }
        assert_eq!(routed, MAX_ROUTES_PER_SANDBOX);
        let handed_out = direct.state.lock().await.handed_out;
        assert_eq!(handed_out as usize, MAX_ROUTES_PER_SANDBOX);
        // Another sandbox is not affected, and shares the names' aliases.
        let other = Ipv4Addr::new(10, 200, 0, 6);
        let alias = direct.address(0, other, "n0.test", &open).await;
        assert_eq!(alias, Ipv4Addr::from(FIRST_ALIAS));
        let last = &names[names.len() - 1];
        assert_ne!(direct.address(0, other, last, &open).await, SENTINEL);
    }

    #[tokio::test]
    async fn aliases_whose_routes_are_gone_are_handed_out_again() {
        let recorder = Arc::new(Recorder::default());
        let direct = direct(recorder.clone(), &["a.test", "b.test", "c.test"], true);
        let open = Policy::default();
        let a = direct.address(0, SANDBOX, "a.test", &open).await;
        let b = direct.address(0, SANDBOX, "b.test", &open).await;
        // SANDBOX is gone: its routes, then the aliases, are freed.
        direct.reconcile(&Policies(HashMap::new())).await;
        {
            let state = direct.state.lock().await;
            assert!(state.routes.is_empty() && state.aliases.is_empty());
        }
        let other = Ipv4Addr::new(10, 200, 0, 6);
        let c = direct.address(0, other, "c.test", &open).await;
        assert!(c == a || c == b, "{c} is recycled");
        assert_eq!(direct.state.lock().await.handed_out, 2);
    }
}
