//! The egress proxy's view of sandboxes: source address → policy, and the
//! owning tenant's workspace secrets.

use std::net::IpAddr;
use std::sync::Arc;

use sandpit_egress::direct::{DirectTable, Route, TableError};
use sandpit_egress::{Lookup, Policy};
use sandpit_runtime::network::firewall::{self, DirectRoute};

use crate::gateway::tokens::ServiceKeys;
use crate::sandboxes::Sandboxes;
use crate::secrets::Secrets;

/// Direct routes, written to the host firewall's `inet sandpit` table.
#[derive(Debug)]
pub struct FirewallRoutes;

impl DirectTable for FirewallRoutes {
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
        firewall::update_direct(&rows(add), &rows(remove))
            .map_err(|e| TableError::Refused(e.into()))
    }
}

/// Looks sandboxes up by the address of their veth end.
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
        let IpAddr::V4(v4) = source else { return None };
        let slot = sandpit_runtime::network::slot_of_sandbox_ip(v4)?;
        let (id, tenant, config) = self.0.proxy_config_on_slot(slot).await?;
        match Policy::from_proxy_config(config.as_ref()) {
            Ok(policy) => Some(policy.for_tenant(&tenant).for_sandbox(&id)),
            Err(err) => {
                // Validated on the way in, so only a corrupt row gets here:
                // fail closed.
                tracing::warn!(slot, error = %err, "unusable proxy_config; denying egress");
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
