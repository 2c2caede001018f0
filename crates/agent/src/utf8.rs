//! Incremental UTF-8 decoding of a command's output.
//!
//! A pipe read can end in the middle of a multi-byte character; the
//! [`Decoder`] keeps that partial character and completes it with the next
//! read. Bytes that can never form a character become U+FFFD. Offsets on the
//! wire count bytes of the text the decoder *emits*, so a replacement counts
//! as its three UTF-8 bytes, never as the raw bytes it replaced.

/// The longest incomplete sequence that can be waiting for more bytes.
const MAX_PENDING: usize = 3;

/// Decodes one stream, carrying a split character across reads.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
    scratch: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, returning the text that is complete so far.
    ///
    /// The result borrows either `input` (the common, copy-free case) or
    /// `out`, which is cleared first.
    pub fn decode<'a>(&mut self, input: &'a [u8], out: &'a mut String) -> &'a str {
        out.clear();
        if self.pending.is_empty() {
            if let Ok(text) = std::str::from_utf8(input) {
                return text;
            }
            self.pending = push_lossy(input, out).to_vec();
            return out;
        }
        let mut joined = std::mem::take(&mut self.scratch);
        joined.clear();
        joined.extend_from_slice(&self.pending);
        joined.extend_from_slice(input);
        self.pending = push_lossy(&joined, out).to_vec();
        self.scratch = joined;
        out
    }

    /// Ends the stream: a character left incomplete becomes U+FFFD.
    pub fn finish(&mut self) -> Option<&'static str> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending.clear();
        Some("\u{FFFD}")
    }
}

/// Appends the lossy decoding of `bytes` to `out`, except for a trailing
/// incomplete (but so far valid) sequence, which is returned.
fn push_lossy<'a>(bytes: &'a [u8], out: &mut String) -> &'a [u8] {
    out.reserve(bytes.len());
    let mut chunks = bytes.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        out.push_str(chunk.valid());
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        if chunks.peek().is_none() && is_incomplete(invalid) {
            return invalid;
        }
        out.push('\u{FFFD}');
    }
    &[]
}

/// Whether `tail` is the start of a character that more bytes could finish.
fn is_incomplete(tail: &[u8]) -> bool {
    tail.len() <= MAX_PENDING
        && matches!(std::str::from_utf8(tail), Err(e) if e.error_len().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> String {
        let mut decoder = Decoder::new();
        let mut text = String::new();
        for part in parts {
            let mut out = String::new();
            text.push_str(decoder.decode(part, &mut out));
        }
        text.push_str(decoder.finish().unwrap_or(""));
        text
    }

    #[test]
    fn valid_input_is_borrowed() {
        let mut decoder = Decoder::new();
        let mut out = String::new();
        let input = b"hello";
        let text = decoder.decode(input, &mut out);
        assert_eq!(text, "hello");
        assert_eq!(text.as_ptr(), input.as_ptr());
    }

    #[test]
    fn split_character_is_completed_by_the_next_read() {
        let euro = "€".as_bytes();
        for split in 1..euro.len() {
            let text = feed_all(&[b"a", &euro[..split], &euro[split..], b"b"]);
            assert_eq!(text, "a€b");
        }
    }

    #[test]
    fn split_across_three_reads() {
        let crab = "🦀".as_bytes();
        assert_eq!(feed_all(&[&crab[..1], &crab[1..2], &crab[2..]]), "🦀");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(feed_all(&[b"a\xffb"]), "a\u{FFFD}b");
        assert_eq!(feed_all(&[b"\xc3", b"x"]), "\u{FFFD}x");
        assert_eq!(feed_all(&[b"\xe2\x82", b"\xff"]), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn unfinished_character_at_end_of_stream_is_replaced() {
        assert_eq!(feed_all(&[b"ok\xe2\x82"]), "ok\u{FFFD}");
    }

    #[test]
    fn pending_then_invalid_then_valid() {
        assert_eq!(feed_all(&[b"\xf0\x9f", b"A\xc3\xa9"]), "\u{FFFD}Aé");
    }
}
