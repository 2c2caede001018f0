//! The egress proxy's view of sandboxes: source address → policy, and the
//! owning tenant's workspace secrets.

use std::net::IpAddr;
use std::sync::Arc;

use sandpit_egress::{Lookup, Policy};

use crate::sandboxes::Sandboxes;
use crate::secrets::Secrets;

/// Looks sandboxes up by the address of their veth end.
pub struct EgressLookup(pub Arc<Sandboxes>, pub Arc<Secrets>);

impl Lookup for EgressLookup {
    async fn policy(&self, source: IpAddr) -> Option<Policy> {
        let IpAddr::V4(v4) = source else { return None };
        let slot = sandpit_runtime::network::slot_of_sandbox_ip(v4)?;
        let (tenant, config) = self.0.proxy_config_on_slot(slot).await?;
        match Policy::from_proxy_config(config.as_ref()) {
            Ok(policy) => Some(policy.for_tenant(&tenant)),
            Err(err) => {
                // Validated on the way in, so only a corrupt row gets here:
                // fail closed.
                tracing::warn!(slot, error = %err, "unusable proxy_config; denying egress");
                None
            }
        }
    }

    async fn secret(&self, tenant: &str, name: &str) -> Option<String> {
        self.1.value(tenant, name).await
    }
}
