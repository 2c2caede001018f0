//! Conditional and ranged downloads (RFC 9110), as `read_range` and `stat`
//! in the SDK use them.
//!
//! - `If-None-Match` matching the ETag (or `*`) answers 304.
//! - `Range: bytes=a-b | a- | -n` answers 206 with `Content-Range`; an end
//!   past EOF is clamped; a start at or past EOF answers 416.
//! - `If-Range` with a stale ETag ignores `Range` (200, whole file).
//! - Several ranges or a malformed header are ignored (200, whole file).

use axum::http::header::{IF_NONE_MATCH, IF_RANGE, RANGE};
use axum::http::HeaderMap;

/// How to answer a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Full,
    /// Bytes `start..=end`.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
    NotModified,
}

/// Decides the answer for a file of `size` bytes with validator `etag`.
pub fn plan(headers: &HeaderMap, size: u64, etag: &str) -> Plan {
    if let Some(tags) = header(headers, IF_NONE_MATCH) {
        if none_match_hits(tags, etag) {
            return Plan::NotModified;
        }
    }
    let Some(range) = header(headers, RANGE) else {
        return Plan::Full;
    };
    if header(headers, IF_RANGE).is_some_and(|tag| tag.trim() != etag) {
        return Plan::Full;
    }
    match parse(range) {
        Some(spec) => spec.resolve(size),
        None => Plan::Full,
    }
}

fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Weak comparison against a list of entity tags.
fn none_match_hits(tags: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    tags.split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// One parsed byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    From { start: u64, end: Option<u64> },
    Suffix(u64),
}

impl Spec {
    fn resolve(self, size: u64) -> Plan {
        match self {
            Spec::From { start, .. } if start >= size => Plan::Unsatisfiable,
            Spec::From { start, end } => Plan::Partial {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            },
            Spec::Suffix(0) => Plan::Unsatisfiable,
            Spec::Suffix(_) if size == 0 => Plan::Unsatisfiable,
            Spec::Suffix(n) => Plan::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        }
    }
}

/// Parses a single `bytes=` range; `None` for anything else.
fn parse(header: &str) -> Option<Spec> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return last.parse().ok().map(Spec::Suffix);
    }
    let start = first.parse().ok()?;
    let end = match last {
        "" => None,
        last => Some(last.parse().ok()?),
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(Spec::From { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"1-2-3\"";

    fn plan_for(pairs: &[(&str, &str)], size: u64) -> Plan {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        plan(&headers, size, ETAG)
    }

    #[test]
    fn ranges() {
        assert_eq!(plan_for(&[], 10), Plan::Full);
        assert_eq!(
            plan_for(&[("range", "bytes=2-4")], 10),
            Plan::Partial { start: 2, end: 4 }
        );
        assert_eq!(
            plan_for(&[("range", "bytes=2-")], 10),
            Plan::Partial { start: 2, end: 9 }
        );
        assert_eq!(
            plan_for(&[("range", "bytes=5-100")], 10),
            Plan::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            plan_for(&[("range", "bytes=-3")], 10),
            Plan::Partial { start: 7, end: 9 }
        );
        assert_eq!(
            plan_for(&[("range", "bytes=-30")], 10),
            Plan::Partial { start: 0, end: 9 }
        );
        assert_eq!(plan_for(&[("range", "bytes=10-")], 10), Plan::Unsatisfiable);
        assert_eq!(plan_for(&[("range", "bytes=0-")], 0), Plan::Unsatisfiable);
        assert_eq!(plan_for(&[("range", "bytes=0-1,3-4")], 10), Plan::Full);
        assert_eq!(plan_for(&[("range", "items=0-1")], 10), Plan::Full);
        assert_eq!(plan_for(&[("range", "bytes=4-2")], 10), Plan::Full);
    }

    #[test]
    fn conditions() {
        assert_eq!(plan_for(&[("if-none-match", ETAG)], 10), Plan::NotModified);
        assert_eq!(
            plan_for(&[("if-none-match", "W/\"1-2-3\"")], 10),
            Plan::NotModified
        );
        assert_eq!(plan_for(&[("if-none-match", "\"other\"")], 10), Plan::Full);
        assert_eq!(
            plan_for(&[("range", "bytes=1-2"), ("if-range", ETAG)], 10),
            Plan::Partial { start: 1, end: 2 }
        );
        assert_eq!(
            plan_for(&[("range", "bytes=1-2"), ("if-range", "\"old\"")], 10),
            Plan::Full
        );
    }
}
