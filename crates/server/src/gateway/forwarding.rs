//! The forwarding policy: which headers of a request reach a sandbox, which
//! headers of its answer reach the client, and where a service token is
//! taken from. Both relays call these functions — the hyper path
//! ([`super::relay`], through [`filter_request`] and [`filter_response`])
//! and the fast path ([`super::fastpath`] and [`super::h1`], header by
//! header through [`request_header`] and [`response_header`]) — so there is
//! one list of what never crosses.
//!
//! Towards a sandbox: no hop-by-hop header (RFC 9110 §7.6.1, and any the
//! `Connection` header names), no Sandpit credential (`X-Api-Key`,
//! `Authorization`, the service and endpoint token headers) and no
//! service-token cookie (the app's own cookies stay). Back from it: no
//! hop-by-hop header, and no `Domain=` attribute on `Set-Cookie`, so a
//! service can only set host-only cookies and cannot plant cookies for
//! sibling services (or the console) under a shared parent domain.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Header carrying a service-URL token (as the `langsmith` SDK sends it).
pub const SERVICE_TOKEN_HEADER: &str = "x-langsmith-sandbox-service-token";
/// Header carrying an OpenSandbox endpoint token.
pub const ENDPOINT_TOKEN_HEADER: &str = "x-sandbox-token";
/// Cookie set by `/_svc/auth` on a service host.
pub const COOKIE: &str = "sandpit_svc_token";

/// Request headers that carry a credential for Sandpit: never forwarded.
pub const CREDENTIALS: [&str; 4] = [
    "x-api-key",
    "authorization",
    SERVICE_TOKEN_HEADER,
    ENDPOINT_TOKEN_HEADER,
];

/// Headers never forwarded in either direction (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `Content-Security-Policy` added to every response served on a path form
/// (`/svc/...`, `/sandboxes/.../port/...`), which shares the server's — and
/// so the console's — origin: the page gets an opaque origin, so its
/// scripts reach neither the console's storage nor its windows, and cannot
/// register a service worker over the console. Scripts, forms and popups
/// still work.
pub const PATH_FORM_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// Where a door takes its token from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `X-Sandbox-Token` (OpenSandbox endpoints).
    EndpointHeader,
    /// The service token header only (path form: a browser cannot send it
    /// on a navigation, so no service page opens on the server's origin).
    ServiceHeader,
    /// The service token header, else the `/_svc/auth` cookie (service
    /// hosts).
    ServiceHeaderOrCookie,
}

/// What to do with one header.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    Keep,
    Drop,
    /// Forward this value instead.
    Replace(Cow<'a, str>),
}

/// Whether `name` (lowercase) is hop-by-hop.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Whether `name` (lowercase) carries a Sandpit credential.
pub fn is_credential(name: &str) -> bool {
    CREDENTIALS.contains(&name)
}

/// The comma-separated tokens of a header value.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `name` (lowercase) is named by one of the `connection` values.
pub fn named_by_connection<'a>(name: &str, connection: impl IntoIterator<Item = &'a [u8]>) -> bool {
    connection
        .into_iter()
        .any(|value| tokens(value).any(|t| t.eq_ignore_ascii_case(name)))
}

/// The verdict on request header `name` (lowercase) with `value`, going to
/// a sandbox. Hop-by-hop headers the `Connection` header names are the
/// caller's to drop (see [`named_by_connection`]).
pub fn request_header<'a>(name: &str, value: &'a [u8]) -> Verdict<'a> {
    if is_credential(name) || is_hop_by_hop(name) {
        return Verdict::Drop;
    }
    if name != "cookie" {
        return Verdict::Keep;
    }
    let Ok(text) = std::str::from_utf8(value) else {
        // Not text: cannot be searched for the token cookie, so it goes.
        return Verdict::Drop;
    };
    if cookie_in(text, COOKIE).is_none() {
        return Verdict::Keep;
    }
    match without_token_cookie(text) {
        kept if kept.is_empty() => Verdict::Drop,
        kept => Verdict::Replace(Cow::Owned(kept)),
    }
}

/// The verdict on response header `name` (lowercase) with `value`, going
/// back to a client. `transfer-encoding` is hop-by-hop: a relay that keeps
/// the service's chunked framing re-adds it itself.
pub fn response_header<'a>(name: &str, value: &'a [u8]) -> Verdict<'a> {
    if is_hop_by_hop(name) {
        return Verdict::Drop;
    }
    if name != "set-cookie" {
        return Verdict::Keep;
    }
    let Ok(text) = std::str::from_utf8(value) else {
        return Verdict::Drop;
    };
    match without_domain(text) {
        Cow::Borrowed(_) => Verdict::Keep,
        owned => Verdict::Replace(owned),
    }
}

/// A `Set-Cookie` value without its `Domain` attributes (so host-only).
pub fn without_domain(value: &str) -> Cow<'_, str> {
    let is_domain = |attr: &str| {
        let key = attr.split('=').next().unwrap_or("").trim();
        key.eq_ignore_ascii_case("domain")
    };
    let mut parts = value.split(';');
    let first = parts.next().unwrap_or("");
    if !parts.clone().any(is_domain) {
        return Cow::Borrowed(value);
    }
    let mut out = first.to_owned();
    for attr in parts.filter(|a| !is_domain(a)) {
        out.push(';');
        out.push_str(attr);
    }
    Cow::Owned(out)
}

/// The value of cookie `name` in one `Cookie` header value.
pub fn cookie_in<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Cookie` header value without the service-token cookie.
pub fn without_token_cookie(value: &str) -> String {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(COOKIE))
        .collect();
    kept.join("; ")
}

/// The token a request carries for `source`, from its headers as
/// `(lowercase name, value)` (`headers` iterates over them afresh).
pub fn presented<'a, I, F>(source: TokenSource, headers: F) -> Option<&'a str>
where
    F: Fn() -> I,
    I: Iterator<Item = (&'a str, &'a [u8])>,
{
    let value = |wanted: &'static str| {
        headers()
            .filter(move |(name, _)| *name == wanted)
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    };
    let header = |wanted| value(wanted).next().map(str::trim);
    let token = match source {
        TokenSource::EndpointHeader => header(ENDPOINT_TOKEN_HEADER),
        TokenSource::ServiceHeader => header(SERVICE_TOKEN_HEADER),
        TokenSource::ServiceHeaderOrCookie => header(SERVICE_TOKEN_HEADER)
            .or_else(|| value("cookie").find_map(|c| cookie_in(c, COOKIE))),
    };
    token.filter(|t| !t.is_empty())
}

/// [`presented`] for a [`HeaderMap`].
pub fn presented_in(source: TokenSource, headers: &HeaderMap) -> Option<&str> {
    presented(source, || {
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    })
}

/// Apply [`request_header`] to a request's headers (hyper path). Cookie
/// headers kept are joined into one, as HTTP/1.1 wants (RFC 9113 §8.2.3).
pub fn filter_request(headers: &mut HeaderMap) {
    filter(headers, request_header);
    let cookies: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if cookies.len() > 1 {
        let joined = cookies
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        headers.remove(header::COOKIE);
        if let Ok(value) = HeaderValue::from_str(&joined) {
            headers.insert(header::COOKIE, value);
        }
    }
}

/// Apply [`response_header`] to a response's headers (hyper path).
pub fn filter_response(headers: &mut HeaderMap) {
    filter(headers, response_header);
}

fn filter(headers: &mut HeaderMap, verdict: for<'a> fn(&str, &'a [u8]) -> Verdict<'a>) {
    let connection: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    let old = std::mem::take(headers);
    let mut last: Option<HeaderName> = None;
    for (name, value) in old {
        let name = match name {
            Some(name) => {
                last = Some(name.clone());
                name
            }
            None => match &last {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        if named_by_connection(name.as_str(), connection.iter().map(|v| v.as_bytes())) {
            continue;
        }
        match verdict(name.as_str(), value.as_bytes()) {
            Verdict::Keep => {
                headers.append(name, value);
            }
            Verdict::Drop => {}
            Verdict::Replace(new) => {
                if let Ok(new) = HeaderValue::from_str(&new) {
                    headers.append(name, new);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_loses_its_domain() {
        for (given, expected) in [
            ("a=1; Path=/; HttpOnly", "a=1; Path=/; HttpOnly"),
            ("a=1; Domain=sandpit.test; Path=/", "a=1; Path=/"),
            ("a=1;domain=.sandpit.test", "a=1"),
            ("a=1; DOMAIN = x; Secure; Domain=y", "a=1; Secure"),
            // A cookie named domain is a name, not an attribute.
            ("domain=1; Path=/", "domain=1; Path=/"),
        ] {
            assert_eq!(without_domain(given), expected, "{given}");
        }
        assert_eq!(response_header("set-cookie", b"a=1; Path=/"), Verdict::Keep);
        assert_eq!(
            response_header("set-cookie", b"a=1; Domain=x"),
            Verdict::Replace("a=1".into())
        );
    }

    #[test]
    fn tokens_come_from_the_door_s_source() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("cookie", b"a=1; sandpit_svc_token=C"),
            (SERVICE_TOKEN_HEADER, b" H "),
            (ENDPOINT_TOKEN_HEADER, b"E"),
        ];
        let of = |source, h: &[(&'static str, &'static [u8])]| {
            presented(source, || h.iter().copied()).map(str::to_owned)
        };
        assert_eq!(
            of(TokenSource::ServiceHeaderOrCookie, &headers).as_deref(),
            Some("H")
        );
        assert_eq!(
            of(TokenSource::ServiceHeader, &headers).as_deref(),
            Some("H")
        );
        assert_eq!(
            of(TokenSource::EndpointHeader, &headers).as_deref(),
            Some("E")
        );
        let cookie_only = &headers[..1];
        assert_eq!(
            of(TokenSource::ServiceHeaderOrCookie, cookie_only).as_deref(),
            Some("C")
        );
        // The path form never takes the cookie.
        assert_eq!(of(TokenSource::ServiceHeader, cookie_only), None);
        assert_eq!(of(TokenSource::EndpointHeader, cookie_only), None);
    }

    /// A raw request or response head as a `HeaderMap`, the way hyper hands
    /// it to the relay.
    fn header_map(headers: &[httparse::Header<'_>]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for h in headers {
            map.append(
                HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(h.value).unwrap(),
            );
        }
        map
    }

    /// `(name, value)` pairs, cookies split into one pair per cookie, sorted:
    /// what a service sees, whichever relay carried it.
    fn normalised<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            let value = String::from_utf8_lossy(value).into_owned();
            if name == "cookie" {
                out.extend(
                    value
                        .split(';')
                        .map(|c| (name.clone(), c.trim().to_owned())),
                );
            } else {
                out.push((name, value));
            }
        }
        out.sort();
        out
    }

    /// What the fast path sends the service for `raw`: its head, parsed.
    fn fast_path_request(raw: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
        let super::super::h1::Head::Done(request) = super::super::h1::request(raw) else {
            panic!(
                "the fast path does not take {}",
                String::from_utf8_lossy(raw)
            );
        };
        let head = request.head_for("/x", None);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        assert!(parsed.parse(&head).unwrap().is_complete());
        let seen = normalised(parsed.headers.iter().map(|h| (h.name, h.value)));
        (head.clone(), seen)
    }

    /// What the hyper path sends the service for `raw`.
    fn hyper_path_request(raw: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        assert!(parsed.parse(raw).unwrap().is_complete());
        let mut map = header_map(parsed.headers);
        filter_request(&mut map);
        let mut bytes = Vec::new();
        for (name, value) in &map {
            bytes.extend_from_slice(name.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        let seen = normalised(map.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        (bytes, seen)
    }

    /// Issue 14: one table, both relays. Every credential carries a value
    /// with `SECRET`; none may reach the service on either path, and both
    /// paths forward the same headers.
    #[test]
    fn no_credential_survives_either_path() {
        let table: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: SECRET-key\r\nAuthorization: Bearer SECRET-a\r\nX-Kept: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-API-KEY: SECRET-k\r\nAUTHORIZATION: SECRET-b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Langsmith-Sandbox-Service-Token: SECRET-t\r\nX-Sandbox-Token: SECRET-e\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nCookie: theme=dark; sandpit_svc_token=SECRET-c; b=2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nCookie: sandpit_svc_token=SECRET-c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nCookie:  sandpit_svc_token=SECRET-c ;a=1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: sandpit_svc_token=SECRET-c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic SECRET-p\r\nTE: trailers\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nX-Hop: SECRET-h\r\nKeep-Alive: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nx-api-key: SECRET-l\r\nx-langsmith-sandbox-service-token: SECRET-m\r\n\r\n",
        ];
        for raw in table {
            let what = String::from_utf8_lossy(raw);
            let (fast_bytes, fast) = fast_path_request(raw);
            let (hyper_bytes, hyper) = hyper_path_request(raw);
            for (path, bytes) in [("fast", &fast_bytes), ("hyper", &hyper_bytes)] {
                let text = String::from_utf8_lossy(bytes);
                assert!(
                    !text.contains("SECRET"),
                    "{path} path forwarded a credential for {what}: {text}"
                );
            }
            for name in CREDENTIALS.iter().chain(HOP_BY_HOP.iter()) {
                assert!(!fast.iter().any(|(n, _)| n == name), "{name} in {what}");
            }
            assert_eq!(fast, hyper, "the paths disagree on {what}");
        }
    }

    /// The same for responses: both paths drop hop-by-hop headers and the
    /// `Domain` of every `Set-Cookie`, and agree.
    #[test]
    fn set_cookie_domains_go_on_either_path() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nSet-Cookie: a=1; Domain=sandpit.test; Path=/\r\nset-cookie: b=2; domain=.localhost\r\nSet-Cookie: c=3; HttpOnly\r\nKeep-Alive: 5\r\nX-App: 1\r\n\r\n";
        let fast = super::super::h1::response(raw, false, None)
            .unwrap()
            .unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        assert!(parsed.parse(&fast.head).unwrap().is_complete());
        let fast = normalised(parsed.headers.iter().map(|h| (h.name, h.value)));

        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        assert!(parsed.parse(raw).unwrap().is_complete());
        let mut map = header_map(parsed.headers);
        filter_response(&mut map);
        let hyper = normalised(map.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));

        let cookies: Vec<&str> = fast
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2", "c=3; HttpOnly"]);
        assert!(!fast.iter().any(|(n, _)| n == "keep-alive"));
        assert_eq!(fast, hyper);
    }
}
