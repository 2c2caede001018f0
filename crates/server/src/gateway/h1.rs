//! HTTP/1.1 message heads and framing for the service fast path
//! ([`super::fastpath`]): parse a head with `httparse`, rewrite it for the
//! other side, and tell where the body that follows ends.
//!
//! Only what the fast path relays is accepted here; anything unusual (a
//! request body in chunks, `Expect`, an upgrade, duplicate or malformed
//! lengths, HTTP/1.0) is reported as [`Head::Other`] and the connection is
//! handed to hyper, which has the full protocol.

use std::fmt::Write as _;

use super::forwarding::{self, Verdict};

/// Largest head either side may send; beyond it hyper takes over (and
/// answers 431).
pub const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 96;

/// The result of looking at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Head<T> {
    /// More bytes are needed.
    Partial,
    /// Not for the fast path.
    Other,
    Done(T),
}

/// A request head the fast path can relay, with what it needs to decide.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Length of the head in the buffer.
    pub len: usize,
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub host: Option<String>,
    /// Body length (`Content-Length`, 0 without one).
    pub body: u64,
    /// The client asked to close after this exchange.
    pub close: bool,
    /// The headers, in order, as `(lowercase name, value)`, without the
    /// hop-by-hop ones; [`Request::head_for`] applies the rest of the
    /// forwarding policy.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The head to send to the service: `path_and_query` as the target and
    /// the headers the forwarding policy lets through.
    pub fn head_for(&self, path: &str, query: Option<&str>) -> Vec<u8> {
        let mut head = Vec::with_capacity(self.len + 16);
        head.extend_from_slice(self.method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(path.as_bytes());
        if let Some(query) = query {
            head.push(b'?');
            head.extend_from_slice(query.as_bytes());
        }
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &self.headers {
            match forwarding::request_header(name, value) {
                Verdict::Keep => push_header(&mut head, name, value),
                Verdict::Drop => {}
                Verdict::Replace(value) => push_header(&mut head, name, value.as_bytes()),
            }
        }
        if self.host.is_none() {
            head.extend_from_slice(b"host: sandbox\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }
}

/// Parse a request head at the start of `buf`.
pub fn request(buf: &[u8]) -> Head<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Head::Partial,
        _ => return Head::Other,
    };
    let (Some(method), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Head::Other;
    };
    // Origin form only; absolute form and `*` are rare enough for hyper.
    if !target.starts_with('/') {
        return Head::Other;
    }
    let mut request = Request {
        len,
        method: method.to_owned(),
        target: target.to_owned(),
        host: None,
        body: 0,
        close: false,
        headers: Vec::with_capacity(parsed.headers.len()),
    };
    let mut lengths = 0;
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        match name.as_str() {
            "transfer-encoding" | "expect" | "upgrade" => return Head::Other,
            "content-length" => {
                lengths += 1;
                match parse_length(header.value) {
                    Some(n) if lengths == 1 => request.body = n,
                    _ => return Head::Other,
                }
            }
            "connection" => {
                for token in tokens(header.value) {
                    match token.to_ascii_lowercase().as_str() {
                        "close" => request.close = true,
                        "upgrade" => return Head::Other,
                        _ => {}
                    }
                }
            }
            "host" if request.host.is_none() => {
                request.host = std::str::from_utf8(header.value).ok().map(str::to_owned)
            }
            "host" => return Head::Other,
            _ => {}
        }
        request.headers.push((name, header.value.to_vec()));
    }
    drop_connection_named(&mut request.headers);
    Head::Done(request)
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes (then the client connection closes too).
    UntilClose,
}

/// A response head rewritten for the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Length of the upstream's head in its buffer.
    pub len: usize,
    pub status: u16,
    /// The head to send to the client.
    pub head: Vec<u8>,
    pub framing: Framing,
    /// The upstream connection cannot be reused after this response.
    pub upstream_close: bool,
}

/// Why an upstream response cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed response from the service")]
pub struct Malformed;

/// Parse the upstream's response head at the start of `buf`; `head_request`
/// says whether it answers a HEAD (no body whatever the headers say); `csp`
/// is a `Content-Security-Policy` to add.
pub fn response(
    buf: &[u8],
    head_request: bool,
    csp: Option<&str>,
) -> Result<Option<Response>, Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        _ => return Err(Malformed),
    };
    let (Some(version), Some(status)) = (parsed.version, parsed.code) else {
        return Err(Malformed);
    };
    let mut kept = Vec::with_capacity(parsed.headers.len());
    let (mut length, mut chunked, mut close, mut keep_alive) = (None, false, version == 0, false);
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => match (length, parse_length(header.value)) {
                (None, Some(n)) => length = Some(n),
                (Some(a), Some(b)) if a == b => continue,
                _ => return Err(Malformed),
            },
            "transfer-encoding" => {
                let last = tokens(header.value).last().map(str::to_ascii_lowercase);
                chunked = last.as_deref() == Some("chunked");
                if !chunked {
                    return Err(Malformed);
                }
            }
            "connection" => {
                for token in tokens(header.value) {
                    close |= token.eq_ignore_ascii_case("close");
                    keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
            _ => {}
        }
        kept.push((name, header.value.to_vec()));
    }
    if version == 0 && keep_alive {
        close = false;
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    drop_connection_named(&mut kept);
    let reason = parsed.reason.unwrap_or("");
    let mut head = Vec::with_capacity(len + 32);
    let _ = write!(Writer(&mut head), "HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in &kept {
        if name == "transfer-encoding" {
            // Hop-by-hop, but the chunks are relayed as they are.
            if chunked {
                push_header(&mut head, name, value);
            }
            continue;
        }
        match forwarding::response_header(name, value) {
            Verdict::Keep => push_header(&mut head, name, value),
            Verdict::Drop => {}
            Verdict::Replace(value) => push_header(&mut head, name, value.as_bytes()),
        }
    }
    if let Some(csp) = csp {
        push_header(&mut head, "content-security-policy", csp.as_bytes());
    }
    if framing == Framing::UntilClose {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok(Some(Response {
        len,
        status,
        head,
        framing,
        upstream_close: close || framing == Framing::UntilClose,
    }))
}

/// Append `name: value\r\n`.
pub fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

struct Writer<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

use forwarding::tokens;

/// Remove hop-by-hop headers, including those `Connection` names (but not
/// `transfer-encoding`, which the response side decides on).
fn drop_connection_named(headers: &mut Vec<(String, Vec<u8>)>) {
    let named: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name == "connection")
        .flat_map(|(_, value)| {
            tokens(value)
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
        })
        .collect();
    headers.retain(|(name, _)| {
        name == "transfer-encoding" || !(named.contains(name) || forwarding::is_hop_by_hop(name))
    });
}

/// Finds the end of a chunked body as its bytes go by, without changing
/// them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; the flag says whether at a line's start.
    Trailer(bool),
    TrailerCr(bool),
    Done,
}

impl Chunked {
    /// Feed the next bytes; returns how many of them belong to the body if
    /// it ends within them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            if let ChunkState::Data(left) = self.state {
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.state = match left - take {
                    0 => ChunkState::DataCr,
                    rest => ChunkState::Data(rest),
                };
                continue;
            }
            self.state = step(&self.state, bytes[i])?;
            i += 1;
            if self.state == ChunkState::Done {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}

fn step(state: &ChunkState, b: u8) -> Result<ChunkState, Malformed> {
    use ChunkState::*;
    let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
    Ok(match (state, b) {
        (SizeStart, _) => Size(hex(b).ok_or(Malformed)?),
        (Size(n), _) if hex(b).is_some() => {
            let n = n.checked_mul(16).and_then(|n| n.checked_add(hex(b)?));
            Size(n.ok_or(Malformed)?)
        }
        (Size(n), b';' | b' ' | b'\t')
        | (Extension(n), b';' | b' ' | b'\t' | b'=' | 0x21..=0x7e) => Extension(*n),
        (Size(n) | Extension(n), b'\r') => SizeLf(*n),
        (SizeLf(0), b'\n') => Trailer(true),
        (SizeLf(n), b'\n') => Data(*n),
        (DataCr, b'\r') => DataLf,
        (DataLf, b'\n') => SizeStart,
        (Trailer(true), b'\r') => TrailerCr(true),
        (Trailer(_), b'\r') => TrailerCr(false),
        (Trailer(_), b'\n') => return Err(Malformed),
        (Trailer(_), _) => Trailer(false),
        (TrailerCr(true), b'\n') => Done,
        (TrailerCr(false), b'\n') => Trailer(true),
        _ => return Err(Malformed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done<T>(head: Head<T>) -> T {
        match head {
            Head::Done(t) => t,
            _ => panic!("not a complete head"),
        }
    }

    #[test]
    fn requests_the_fast_path_takes() {
        let raw = b"GET /svc/x--80/a?b=1 HTTP/1.1\r\nHost: h:1\r\nContent-Length: 3\r\nConnection: keep-alive, x-drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nX-Kept: v\r\n\r\nabcNEXT";
        let r = done(request(raw));
        assert_eq!(r.len, raw.len() - 7);
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("GET", "/svc/x--80/a?b=1")
        );
        assert_eq!(
            (r.host.as_deref(), r.body, r.close),
            (Some("h:1"), 3, false)
        );
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["host", "content-length", "x-kept"]);
        let r = done(request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(r.close);
        assert_eq!(request(b"GET / HTTP/1.1\r\nHost: a\r\n"), Head::Partial);
    }

    #[test]
    fn unusual_requests_go_to_hyper() {
        for raw in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(
                request(raw),
                Head::Other,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD + 1, b'a');
        assert_eq!(request(&huge), Head::Other);
    }

    #[test]
    fn response_framing() {
        let r = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
            false,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.status, r.framing, r.upstream_close),
            (200, Framing::Length(2), false)
        );
        assert_eq!(r.head, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n");
        let r = response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        assert_eq!(
            r.head,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let r = response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false, None)
            .unwrap()
            .unwrap();
        assert_eq!((r.framing, r.upstream_close), (Framing::Length(2), true));
        let r = response(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", false, None)
            .unwrap()
            .unwrap();
        assert_eq!((r.framing, r.upstream_close), (Framing::UntilClose, true));
        assert!(r.head.ends_with(b"connection: close\r\n\r\n"));
        let r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, None)
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, Framing::Empty);
        let r = response(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            false,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing, Framing::Empty);
        assert_eq!(response(b"HTTP/1.1 200 OK\r\n", false, None), Ok(None));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert_eq!(response(bad, false, None), Err(Malformed));
        }
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        assert_eq!(Chunked::default().feed(body), Ok(Some(body.len() - 4)));
        // The same, a byte at a time.
        let mut scanner = Chunked::default();
        let end = body
            .iter()
            .position(|b| scanner.feed(&[*b]).unwrap().is_some());
        assert_eq!(end, Some(body.len() - 5));
        assert_eq!(Chunked::default().feed(b"0\r\n\r\n"), Ok(Some(5)));
        assert_eq!(Chunked::default().feed(b"A\r\n0123456789\r\n"), Ok(None));
        assert_eq!(Chunked::default().feed(b"x\r\n"), Err(Malformed));
        assert_eq!(Chunked::default().feed(b"2\r\nabX"), Err(Malformed));
        assert_eq!(
            Chunked::default().feed(b"ffffffffffffffffff\r\n"),
            Err(Malformed)
        );
    }
}

/// Property tests: the bytes come from hostile sandboxes (responses) and
/// clients (requests), so arbitrary input must never panic, how the input
/// is split across reads must not change the outcome, and valid messages
/// must come through unchanged.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn header_name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,15}".prop_filter("not a framing header", |n| {
            !matches!(
                n.as_str(),
                "content-length" | "transfer-encoding" | "host" | "expect" | "upgrade"
            ) && !forwarding::is_hop_by_hop(n)
                && !forwarding::is_credential(n)
                && n != "cookie"
        })
    }

    fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec((header_name(), "[ -~]{0,40}"), 0..12).prop_map(|headers| {
            headers
                .into_iter()
                .map(|(n, v)| (n, v.trim().to_owned()))
                .collect()
        })
    }

    /// A chunked body of `chunks` (empty ones skipped: a 0 ends the body),
    /// with an extension on each size line and `trailers`.
    fn chunked(chunks: &[Vec<u8>], trailers: &[(String, String)]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            out.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Feed `bytes` to a fresh scanner in pieces cut at `cuts`; the end as
    /// an offset into `bytes`.
    fn feed_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Option<usize>, Malformed> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut scanner = Chunked::default();
        let mut start = 0;
        for end in points {
            if end < start {
                continue;
            }
            if let Some(n) = scanner.feed(&bytes[start..end])? {
                return Ok(Some(start + n));
            }
            start = end;
        }
        Ok(None)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), head in any::<bool>()) {
            let _ = request(&bytes);
            let _ = response(&bytes, head, Some("sandbox"));
            let _ = Chunked::default().feed(&bytes);
        }

        #[test]
        fn near_valid_heads_never_panic(
            start in prop::sample::select(vec!["GET / HTTP/1.1\r\n", "HTTP/1.1 200 OK\r\n", "HTTP/1.0 204 x\r\n"]),
            tail in prop::collection::vec(prop::sample::select(b"\r\n:;, \t0aA-/\x00\xff".to_vec()), 0..512),
        ) {
            let mut bytes = start.as_bytes().to_vec();
            bytes.extend_from_slice(&tail);
            if let Head::Done(r) = request(&bytes) {
                let _ = r.head_for("/", Some("q"));
            }
            let _ = response(&bytes, false, None);
        }

        /// A head that parses from a buffer parses the same from the whole
        /// stream, and every shorter prefix only asks for more bytes: the
        /// fast path reading it in any pieces sees the same request.
        #[test]
        fn split_points_do_not_change_a_request(bytes in prop::collection::vec(any::<u8>(), 0..1024), valid in any::<bool>(), hs in headers(), cut in any::<prop::sample::Index>()) {
            let bytes = if valid {
                let mut raw = b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n".to_vec();
                for (n, v) in &hs {
                    raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                raw.extend_from_slice(b"\r\nabc");
                raw.extend_from_slice(&bytes);
                raw
            } else {
                bytes
            };
            if let Head::Done(full) = request(&bytes) {
                let len = full.len;
                prop_assert_eq!(request(&bytes[..cut.index(len)]), Head::Partial);
                prop_assert_eq!(request(&bytes[..len]), Head::Done(full));
            } else {
                prop_assert!(!valid);
            }
        }

        #[test]
        fn split_points_do_not_change_a_response(bytes in prop::collection::vec(any::<u8>(), 0..1024), valid in any::<bool>(), hs in headers(), cut in any::<prop::sample::Index>()) {
            let bytes = if valid {
                let mut raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
                for (n, v) in &hs {
                    raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                raw.extend_from_slice(b"\r\nok");
                raw.extend_from_slice(&bytes);
                raw
            } else {
                bytes
            };
            if let Ok(Some(full)) = response(&bytes, false, None) {
                let len = full.len;
                prop_assert_eq!(response(&bytes[..cut.index(len)], false, None), Ok(None));
                prop_assert_eq!(response(&bytes[..len], false, None), Ok(Some(full)));
            } else {
                prop_assert!(!valid);
            }
        }

        /// The chunked scanner gives the same answer, at the same offset,
        /// however its input is cut.
        #[test]
        fn split_points_do_not_change_a_chunked_scan(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..6),
            trailers in headers(),
            noise in prop::collection::vec(any::<u8>(), 0..64),
            garbage in any::<bool>(),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut bytes = if garbage { noise.clone() } else { chunked(&chunks, &trailers) };
            let body = bytes.len();
            bytes.extend_from_slice(&noise);
            let whole = Chunked::default().feed(&bytes);
            prop_assert_eq!(feed_in_pieces(&bytes, &cuts), whole);
            if !garbage {
                prop_assert_eq!(whole, Ok(Some(body)));
            }
        }

        /// Valid requests come through: method, target, host, length and
        /// every end-to-end header, in order, and the head the fast path
        /// forwards parses back to the same headers.
        #[test]
        fn valid_requests_round_trip(
            method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
            target in "/[a-zA-Z0-9/._~%-]{0,40}(\\?[a-z0-9=&]{0,20})?",
            hs in headers(),
            body in 0u64..1_000_000,
        ) {
            let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: svc:1\r\nContent-Length: {body}\r\n");
            for (n, v) in &hs {
                raw.push_str(&format!("{n}: {v}\r\n"));
            }
            raw.push_str("\r\n");
            let Head::Done(r) = request(raw.as_bytes()) else {
                return Err(TestCaseError::fail(format!("not parsed: {raw}")));
            };
            prop_assert_eq!((r.len, r.method.as_str(), r.target.as_str()), (raw.len(), method, target.as_str()));
            prop_assert_eq!((r.host.as_deref(), r.body, r.close), (Some("svc:1"), body, false));
            let forwarded = r.head_for(&target, None);
            let Head::Done(again) = request(&forwarded) else {
                return Err(TestCaseError::fail("forwarded head does not parse"));
            };
            prop_assert_eq!(again.headers, r.headers);
        }

        #[test]
        fn valid_responses_round_trip(
            status in prop::sample::select(vec![200u16, 201, 204, 301, 304, 404, 500]),
            hs in headers(),
            chunked_body in any::<bool>(),
            length in 0u64..1_000_000,
        ) {
            let framing = if chunked_body { "Transfer-Encoding: chunked".to_owned() } else { format!("Content-Length: {length}") };
            let mut raw = format!("HTTP/1.1 {status} Reason\r\n{framing}\r\n");
            for (n, v) in &hs {
                raw.push_str(&format!("{n}: {v}\r\n"));
            }
            raw.push_str("\r\n");
            let r = response(raw.as_bytes(), false, None).unwrap().unwrap();
            let expected = match (status, chunked_body) {
                (204 | 304, _) => Framing::Empty,
                (_, true) => Framing::Chunked,
                (_, false) => Framing::Length(length),
            };
            prop_assert_eq!((r.len, r.status, r.framing, r.upstream_close), (raw.len(), status, expected, false));
            // The head for the client is the service's, headers in order.
            let again = response(&r.head, false, None).unwrap().unwrap();
            prop_assert_eq!((again.status, again.framing), (status, expected));
            let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut p = httparse::Response::new(&mut parsed);
            prop_assert!(p.parse(&r.head).unwrap().is_complete());
            let sent: Vec<(String, String)> = p.headers.iter().skip(1)
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let wanted: Vec<(String, String)> = hs.iter()
                .map(|(n, v)| (n.clone(), forwarding::without_domain(v).into_owned()))
                .collect();
            prop_assert_eq!(sent, wanted);
        }
    }
}
