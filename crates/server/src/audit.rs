//! The audit log of admin actions: tenants, keys, service keys and
//! workspace secrets. Every call that changes them writes one log line with
//! target `audit` after it is answered: who (the prefix of the key used,
//! the first 8 characters the admin API lists keys by), what (the action
//! and the tenant, key id or secret name it named), when (the line's time)
//! and the outcome (status code). Bodies are never read, so a secret's
//! value cannot reach the log. The line is inside the request's span, so it
//! carries the request id too.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::{key_prefix, API_KEY_HEADER};

/// The action a route and method is, if it changes anything.
pub fn action(method: &Method, route: &str) -> Option<&'static str> {
    let route = route.trim_start_matches("/api/v1");
    Some(match (method.as_str(), route) {
        ("POST", "/admin/tenants") => "tenant.create",
        ("PATCH", "/admin/tenants/{tenant}") => "tenant.update",
        ("DELETE", "/admin/tenants/{tenant}") => "tenant.delete",
        ("POST", "/admin/keys") => "key.create",
        ("DELETE", "/admin/keys/{id}") => "key.revoke",
        ("POST", "/admin/service-keys/rotate") => "service_keys.rotate",
        ("POST", "/admin/gc") => "layers.gc",
        ("PUT", "/workspaces/current/secrets/{key}") => "secret.upsert",
        ("DELETE", "/workspaces/current/secrets/{key}") => "secret.delete",
        _ => return None,
    })
}

/// Route layer on the admin and secrets routes.
pub async fn layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(action) = action(req.method(), &route) else {
        return next.run(req).await;
    };
    let actor = req
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(key_prefix)
        .unwrap_or_else(|| "none".into());
    let acting_for = req
        .headers()
        .get(crate::auth::TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The last path segment names the tenant, key or secret (none for a
    // create: the body names it, and bodies are not read).
    let object = match route.ends_with('}') {
        true => req.uri().path().rsplit('/').next().map(str::to_owned),
        false => None,
    };
    let response = next.run(req).await;
    tracing::info!(
        target: "audit",
        actor_key_prefix = %actor,
        action,
        object = object.as_deref().unwrap_or(""),
        acting_for = acting_for.as_deref().unwrap_or(""),
        status = response.status().as_u16(),
        "admin action"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_audited_and_reads_are_not() {
        assert_eq!(
            action(&Method::POST, "/api/v1/admin/tenants"),
            Some("tenant.create")
        );
        assert_eq!(
            action(&Method::DELETE, "/api/v1/admin/keys/{id}"),
            Some("key.revoke")
        );
        assert_eq!(
            action(&Method::PUT, "/api/v1/workspaces/current/secrets/{key}"),
            Some("secret.upsert")
        );
        assert_eq!(action(&Method::GET, "/api/v1/admin/tenants"), None);
        assert_eq!(
            action(&Method::GET, "/api/v1/workspaces/current/secrets"),
            None
        );
    }
}
