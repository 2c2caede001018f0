//! The data-plane wire types, as the `langsmith` SDK speaks them. The
//! command protocol lives in `sandpit_api::exec` (the Rust client speaks it
//! too); this module adds the fast output renderer and the file-search and
//! error bodies.
//!
//! Requests are parsed leniently (unknown fields are ignored) because the
//! SDK adds fields over time and an older agent must keep working.

use serde::{Deserialize, Serialize};

pub use sandpit_api::exec::{
    BlockingExecuteRequest, BlockingExecuteResponse, ClientMessage, ExecuteRequest,
    ReconnectRequest, RunConfig, ServerMessage, SseAckRequired, SseChunk, SseError, SseExit,
    SseStarted, SseStreamEnd,
};

/// Renders a `stdout` / `stderr` message: byte-for-byte what serialising
/// [`ServerMessage::Stdout`] gives, but escaping the text eight bytes at a
/// time, since output messages carry nearly all of the agent's traffic.
pub fn output_message(stream: &str, data: &str, offset: u64) -> String {
    let mut out = String::with_capacity(data.len() + data.len() / 8 + 64);
    out.push_str(r#"{"type":""#);
    out.push_str(stream);
    out.push_str(r#"","data":""#);
    escape_json_into(&mut out, data);
    out.push_str(r#"","offset":"#);
    out.push_str(&offset.to_string());
    out.push('}');
    out
}

/// Appends `text` as the inside of a JSON string, escaping like serde_json:
/// `"`, `\` and control characters; everything else verbatim.
fn escape_json_into(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if i + 8 <= bytes.len() {
            let word = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        if let Some(escape) = escape_for(byte) {
            // Escaped bytes are ASCII, so both cuts are character boundaries.
            out.push_str(&text[run_start..i]);
            push_escape(out, byte, escape);
            run_start = i + 1;
        }
        i += 1;
    }
    out.push_str(&text[run_start..]);
}

/// Whether any byte of `word` is a control character, `"` or `\`.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space || has_zero(word ^ (ONES * b'"' as u64)) || has_zero(word ^ (ONES * b'\\' as u64))
}

/// The escape of `byte` (`b'u'` for the `\u00XX` form), if it needs one.
fn escape_for(byte: u8) -> Option<u8> {
    match byte {
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        b'\n' => Some(b'n'),
        b'\r' => Some(b'r'),
        b'\t' => Some(b't'),
        0x08 => Some(b'b'),
        0x0c => Some(b'f'),
        0x00..=0x1f => Some(b'u'),
        _ => None,
    }
}

fn push_escape(out: &mut String, byte: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push(escape as char);
    if escape == b'u' {
        out.push_str("00");
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
}

/// Body of `POST /glob`.
#[derive(Debug, Deserialize)]
pub struct GlobRequest {
    pub pattern: String,
    pub path: String,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Body of `POST /grep`.
#[derive(Debug, Deserialize)]
pub struct GrepRequest {
    pub pattern: String,
    pub path: String,
    #[serde(default)]
    pub glob: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// One entry of a glob result (`FileInfo` in the SDK).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub size_bytes: u64,
    pub modified_at: Option<String>,
}

/// One matching line of a grep result (`GrepMatch` in the SDK).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct GrepMatch {
    pub path: String,
    pub line: u64,
    pub text: String,
}

/// Response of `POST /glob` and `POST /grep`.
#[derive(Debug, Serialize)]
pub struct SearchResponse<T> {
    pub matches: Vec<T>,
    pub truncated: bool,
}

/// Every 4xx/5xx body: `{"detail": {"error": KIND, "message": TEXT}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub detail: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub error: &'a str,
    pub message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_output_messages_match_serde() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain ascii text that is long enough for words\n".repeat(3),
            "quote\" back\\slash \t\r\n\x08\x0c\x00\x01\x1f\x7f é€🦀".to_string(),
            "\u{FFFD}\u{FFFD}abc".to_string(),
        ];
        // Every byte value in every position of a word.
        for byte in 0u8..0x80 {
            for pos in 0..9 {
                let mut text = "abcdefghijklmnop".to_string();
                text.insert(pos, byte as char);
                samples.push(text);
            }
        }
        for (n, data) in samples.iter().enumerate() {
            let expected = serde_json::to_string(&ServerMessage::Stdout {
                data: data.into(),
                offset: n as u64,
            })
            .expect("serialises");
            assert_eq!(
                output_message("stdout", data, n as u64),
                expected,
                "{data:?}"
            );
        }
    }

    #[test]
    fn error_body_snapshot() {
        let body = ErrorBody {
            detail: ErrorDetail {
                error: "FileNotFound",
                message: "no such file: /x",
            },
        };
        assert_eq!(
            serde_json::to_string(&body).expect("serialises"),
            r#"{"detail":{"error":"FileNotFound","message":"no such file: /x"}}"#
        );
    }
}
