//! `access_delegation`: requests a sandbox sends to [`HOST`] (plain HTTP,
//! port 80) reach Sandpit's own API as the sandbox's creator.
//!
//! Only a sandbox whose [`crate::Lookup::delegation`] gives a [`Grant`] may
//! use the name; others get the usual policy refusal. On the way through,
//! every credential the sandbox sent is dropped and [`HEADER`] is set to the
//! grant's short-lived token, so the token never enters the sandbox (the
//! answer cannot carry it either: it is only ever a request header). The
//! API re-checks the token, the grant and the creating key on every request.

use std::net::SocketAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::http::{denied, refuse, Body};

/// The name code in a sandbox calls Sandpit's API by
/// (`LANGSMITH_ENDPOINT=http://sandpit.internal`).
pub const HOST: &str = "sandpit.internal";
/// The header carrying the token to the API.
pub const HEADER: &str = "x-sandpit-delegation";

/// A sandbox's right to call the API, for one request.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Short-lived token naming the sandbox (the API verifies it).
    pub token: String,
    /// The API's address.
    pub upstream: SocketAddr,
}

/// Headers that carry credentials; the sandbox's are never passed on.
const CREDENTIALS: [&str; 6] = [
    "x-api-key",
    "x-tenant-id",
    "authorization",
    "proxy-authorization",
    "cookie",
    HEADER,
];

/// Drop the sandbox's credentials and set the grant's token.
pub fn prepare<B>(
    req: &mut Request<B>,
    token: &str,
) -> Result<(), http::header::InvalidHeaderValue> {
    let headers = req.headers_mut();
    for name in CREDENTIALS {
        headers.remove(name);
    }
    let mut value = HeaderValue::from_str(token)?;
    value.set_sensitive(true);
    headers.insert(HeaderName::from_static(HEADER), value);
    headers.insert(header::HOST, HeaderValue::from_static(HOST));
    Ok(())
}

/// Forward a request for [`HOST`] on `port` under `grant` (none: refused).
pub async fn forward(mut req: Request<Incoming>, port: u16, grant: Option<Grant>) -> Response {
    let Some(grant) = grant else {
        return denied(HOST, "this sandbox has no access_delegation grant");
    };
    if port != 80 {
        return denied(HOST, format!("only port 80 serves it, not {port}"));
    }
    if prepare(&mut req, &grant.token).is_err() {
        return refuse(StatusCode::BAD_GATEWAY, "Sandpit egress: bad token".into());
    }
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = pq.as_str().parse().unwrap_or_default();
    }
    let upstream = match tokio::net::TcpStream::connect(grant.upstream).await {
        Ok(s) => s,
        Err(err) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("Sandpit egress: API: {err}"),
            )
        }
    };
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(err) => {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    format!("Sandpit egress: API: {err}"),
                )
            }
        };
    tokio::spawn(conn);
    crate::stats::global().verdict(crate::stats::Verdict::Allowed);
    match sender.send_request(req).await {
        Ok(response) => {
            use http_body_util::BodyExt;
            response.map(|b| b.boxed())
        }
        Err(err) => refuse(
            StatusCode::BAD_GATEWAY,
            format!("Sandpit egress: API: {err}"),
        ),
    }
}

type Response = http::Response<Body>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_credentials_are_dropped_and_the_token_set() {
        let mut req = Request::builder()
            .uri("/api/v2/sandboxes/boxes")
            .header("X-Api-Key", "sandbox-key")
            .header("Authorization", "Bearer x")
            .header("X-Sandpit-Delegation", "forged")
            .header("X-Tenant-Id", "other")
            .header("Cookie", "s=1")
            .header("Accept", "application/json")
            .body(())
            .unwrap();
        prepare(&mut req, "tok").unwrap();
        let h = req.headers();
        for gone in ["x-api-key", "authorization", "x-tenant-id", "cookie"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h.get_all(HEADER).iter().count(), 1);
        assert_eq!(h[HEADER], "tok");
        assert_eq!(h["accept"], "application/json");
        assert_eq!(h["host"], HOST);
    }
}
