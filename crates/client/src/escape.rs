//! Percent-encoding for names put into URL paths and query strings.

/// Encode `value` as one path segment or query value (RFC 3986
/// unreserved characters and `:` pass; `/`, `?`, `#`, `%`... are escaped),
/// so a name typed by a user can never change which route is called.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_their_segment() {
        assert_eq!(segment("bb:v2"), "bb:v2");
        assert_eq!(segment("../admin?x=1#y"), "..%2Fadmin%3Fx%3D1%23y");
        assert_eq!(segment("a b%"), "a%20b%25");
    }
}
