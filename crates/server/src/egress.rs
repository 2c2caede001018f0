//! The egress proxy's view of sandboxes: source address → policy, and the
//! owning tenant's workspace secrets.

use std::net::IpAddr;
use std::sync::Arc;

use sandpit_egress::direct::{DirectTable, Route, TableError};
use sandpit_egress::{Lookup, Policy};
use sandpit_runtime::network::firewall::DirectRoute;
use sandpit_runtime::{EgressSource, Runtime};

use crate::gateway::tokens::ServiceKeys;
use crate::sandboxes::Sandboxes;
use crate::secrets::Secrets;

/// Asks for direct routes in the egress configuration before the backend
/// exists: when the proxy starts, the server puts its backend's
/// [`RuntimeRoutes`] in its place. Refuses every update itself.
#[derive(Debug)]
pub struct BackendRoutes;

impl DirectTable for BackendRoutes {
    fn update(&self, _add: &[Route], _remove: &[Route]) -> Result<(), TableError> {
        Err(TableError::Refused(
            "direct routes are not bound to a backend".into(),
        ))
    }
}

/// Direct routes, written by the sandbox backend
/// ([`Runtime::update_direct_routes`]: the host firewall's `inet sandpit`
/// table for the local one). The server makes no firewall call itself.
pub struct RuntimeRoutes(pub Arc<dyn Runtime>);

impl std::fmt::Debug for RuntimeRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeRoutes")
    }
}

impl DirectTable for RuntimeRoutes {
    fn update(&self, add: &[Route], remove: &[Route]) -> Result<(), TableError> {
        let rows = |routes: &[Route]| -> Vec<DirectRoute> {
            routes
                .iter()
                .map(|r| DirectRoute {
                    sandbox: r.sandbox,
                    alias: r.alias,
                    target: r.target,
                })
                .collect()
        };
        self.0
            .update_direct_routes(&rows(add), &rows(remove))
            .map_err(|e| TableError::Refused(e.into()))
    }
}

/// `config`, with requested direct routes written by `runtime`.
pub fn bind_direct_routes(
    mut config: sandpit_egress::EgressConfig,
    runtime: Arc<dyn Runtime>,
) -> sandpit_egress::EgressConfig {
    if config.direct.is_some() {
        config.direct = Some(Arc::new(RuntimeRoutes(runtime)));
    }
    config
}

/// Looks sandboxes up by their source address (the backend's
/// [`Runtime::egress_source`]: a veth end locally, a pod IP on Kubernetes).
pub struct EgressLookup(
    pub Arc<Sandboxes>,
    pub Arc<Secrets>,
    pub Arc<ServiceKeys>,
    /// Tokens for sandboxes with an `access_delegation` grant.
    pub Arc<crate::delegation::Minter>,
);

/// `sub` of a callback signature, as the SDK's verifier expects it.
const CALLBACK_SUBJECT: &str = "langsmith-sandbox-callback";
/// How long a callback signature is valid.
const CALLBACK_SIGNATURE_TTL: i64 = 300;

impl Lookup for EgressLookup {
    async fn policy(&self, source: IpAddr) -> Option<Policy> {
        // The backend names the sandbox by its address: a slot of this
        // host's network, or a pod (whichever replica started it).
        let (id, tenant, config) = match self.0.runtime().egress_source(source)? {
            EgressSource::Slot(slot) => self.0.proxy_config_on_slot(slot).await?,
            EgressSource::Sandbox(id) => self.0.proxy_config_of(&id).await?,
        };
        match Policy::from_proxy_config(config.as_ref()) {
            Ok(policy) => Some(policy.for_tenant(&tenant).for_sandbox(&id)),
            Err(err) => {
                // Validated on the way in, so only a corrupt row gets here:
                // fail closed.
                tracing::warn!(sandbox = %id, error = %err, "unusable proxy_config; denying egress");
                None
            }
        }
    }

    fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.policy_changes()
    }

    async fn delegation(&self, policy: &Policy) -> Option<sandpit_egress::delegate::Grant> {
        let (tenant, sandbox) = (policy.tenant.as_deref()?, policy.sandbox.as_deref()?);
        self.3.grant(tenant, sandbox).await
    }

    async fn secret(&self, tenant: &str, name: &str) -> Option<String> {
        self.1.value(tenant, name).await
    }

    fn sign_callback(&self, aud: &str, body_sha256: &str) -> Option<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "iss": "sandpit",
            "sub": CALLBACK_SUBJECT,
            "aud": aud,
            "iat": now,
            "exp": now + CALLBACK_SIGNATURE_TTL,
            "body_sha256": body_sha256,
        });
        match self.2.sign_any(&claims) {
            Ok(token) => Some(token),
            Err(err) => {
                tracing::warn!(error = %err, "could not sign a proxy callback");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandpit_runtime::{RunningSandbox, RuntimeError, SandboxSpec, Started};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::Mutex;

    /// A backend that records the direct routes it is asked to write.
    #[derive(Default)]
    struct Recording(Mutex<Vec<(Vec<DirectRoute>, Vec<DirectRoute>)>>);

    impl Runtime for Recording {
        fn start(&self, _: &SandboxSpec) -> Result<Started, RuntimeError> {
            Err(RuntimeError::Helper("unused".into()))
        }
        fn stop(&self, _: &str) -> Result<(), RuntimeError> {
            Ok(())
        }
        fn running(&self) -> Result<Vec<RunningSandbox>, RuntimeError> {
            Ok(Vec::new())
        }
        fn cleanup(&self, _: &[String]) -> Result<Vec<String>, RuntimeError> {
            Ok(Vec::new())
        }
        fn update_direct_routes(
            &self,
            add: &[DirectRoute],
            remove: &[DirectRoute],
        ) -> Result<(), RuntimeError> {
            let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
            calls.push((add.to_vec(), remove.to_vec()));
            Ok(())
        }
    }

    fn route(n: u8) -> Route {
        Route {
            sandbox: Ipv4Addr::new(10, 200, 0, n),
            alias: Ipv4Addr::new(198, 18, 1, n),
            target: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, n), 443),
        }
    }

    #[test]
    fn requested_direct_routes_are_written_by_the_backend() {
        let dir =
            std::env::temp_dir().join(format!("sandpit-egress-routes-{}", std::process::id()));
        let ca = Arc::new(sandpit_egress::Authority::load_or_create(&dir).expect("ca"));
        let _ = std::fs::remove_dir_all(&dir);
        let config = |direct: Option<Arc<dyn DirectTable>>| sandpit_egress::EgressConfig {
            ports: sandpit_egress::Ports {
                tls: 1,
                http: 2,
                dns: 3,
            },
            resolve: Default::default(),
            ca: ca.clone(),
            upstream_ca: Vec::new(),
            time_scale: 1,
            direct,
        };
        let backend = Arc::new(Recording::default());
        let bound = bind_direct_routes(config(Some(Arc::new(BackendRoutes))), backend.clone());
        let table = bound.direct.expect("direct routes kept");
        table.update(&[route(2)], &[route(6)]).expect("written");
        let calls = backend.0.lock().expect("lock").clone();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0[0].sandbox, Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(calls[0].1[0].target.ip(), &Ipv4Addr::new(192, 0, 2, 6));
        // Not asked for: none, whatever the backend.
        assert!(bind_direct_routes(config(None), backend).direct.is_none());
        // A backend without direct routes refuses them (the proxy keeps
        // that traffic).
        let refused = RuntimeRoutes(Arc::new(crate::cluster::NoRuntime));
        assert!(refused.update(&[route(2)], &[]).is_err());
    }
}
