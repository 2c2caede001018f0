//! The bounded output ring of one stream.
//!
//! A [`Ring`] holds the most recent output of a stream as UTF-8 text, addressed
//! by absolute byte offsets: offset 0 is the first byte the stream ever
//! emitted. It keeps the text in fixed-size blocks and evicts whole blocks from
//! the front, so it retains between `capacity - BLOCK` and `capacity` bytes
//! once full. The newest block grows with its content, so the many small
//! outputs of finished commands kept for reconnects cost what they hold, not
//! a block each. Whether eviction is allowed (backpressure) is the session's
//! decision; the ring only reports what an append would evict.

use std::collections::VecDeque;

/// Size of one storage block.
pub const BLOCK: usize = 64 * 1024;

/// Bounded, offset-addressed store of a stream's recent text.
#[derive(Debug)]
pub struct Ring {
    blocks: VecDeque<Vec<u8>>,
    /// Offset of the first retained byte (always the start of `blocks[0]`).
    start: u64,
    /// Offset just past the last byte ever appended.
    end: u64,
    capacity: usize,
}

impl Ring {
    /// A ring retaining at most `capacity` bytes (at least two blocks).
    pub fn new(capacity: usize) -> Self {
        Self {
            blocks: VecDeque::new(),
            start: 0,
            end: 0,
            capacity: capacity.max(2 * BLOCK),
        }
    }

    /// Offset of the oldest retained byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset just past the newest byte.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Where `start` would be after appending `len` more bytes.
    pub fn start_after_append(&self, len: usize) -> u64 {
        let mut start = self.start;
        let mut retained = self.retained() + len as u64;
        let mut blocks = self.blocks.iter();
        while retained > self.capacity as u64 {
            // Blocks not yet allocated are full blocks of the new text.
            let evicted = blocks.next().map_or(BLOCK, Vec::len) as u64;
            start += evicted;
            retained -= evicted;
        }
        start
    }

    /// Appends `text`, evicting the oldest blocks beyond the capacity.
    pub fn append(&mut self, text: &str) {
        let mut bytes = text.as_bytes();
        while !bytes.is_empty() {
            let block = self.writable_block();
            let room = BLOCK - block.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            reserve_within_block(block, now.len());
            block.extend_from_slice(now);
            bytes = rest;
        }
        self.end += text.len() as u64;
        self.evict();
    }

    /// Copies up to `max` bytes starting at `from` into `out`, ending on a
    /// character boundary. An offset before the ring's start reads from the
    /// oldest retained character. Returns the offset of the first byte
    /// copied, or `None` when there is nothing at or after `from`.
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<u8>) -> Option<u64> {
        out.clear();
        let mut at = self.char_boundary_at_or_after(from.max(self.start))?;
        let first = at;
        let limit = (self.end - at).min(max as u64);
        let mut stop = self.char_boundary_at_or_before(at + limit);
        if stop == at {
            // `max` is smaller than the first character: send it whole.
            stop = self.char_boundary_at_or_after(at + 1).unwrap_or(self.end);
        }
        while at < stop {
            let (block, offset) = self.locate(at);
            let take = (block.len() - offset).min((stop - at) as usize);
            out.extend_from_slice(&block[offset..offset + take]);
            at += take as u64;
        }
        (!out.is_empty()).then_some(first)
    }

    fn retained(&self) -> u64 {
        self.end - self.start
    }

    fn writable_block(&mut self) -> &mut Vec<u8> {
        if self.blocks.back().is_none_or(|b| b.len() == BLOCK) {
            self.blocks.push_back(Vec::new());
        }
        self.blocks.back_mut().expect("a block was just ensured")
    }

    fn evict(&mut self) {
        while self.retained() > self.capacity as u64 {
            let block = self
                .blocks
                .pop_front()
                .expect("retained bytes live in blocks");
            self.start += block.len() as u64;
        }
    }

    /// The block holding `offset` and the index within it.
    fn locate(&self, offset: u64) -> (&[u8], usize) {
        let relative = (offset - self.start) as usize;
        // Every block but the last is full, so the position is arithmetic.
        (&self.blocks[relative / BLOCK], relative % BLOCK)
    }

    fn byte_at(&self, offset: u64) -> u8 {
        let (block, index) = self.locate(offset);
        block[index]
    }

    fn char_boundary_at_or_after(&self, mut offset: u64) -> Option<u64> {
        while offset < self.end && is_continuation(self.byte_at(offset)) {
            offset += 1;
        }
        (offset < self.end).then_some(offset)
    }

    fn char_boundary_at_or_before(&self, mut offset: u64) -> u64 {
        while offset < self.end && offset > self.start && is_continuation(self.byte_at(offset)) {
            offset -= 1;
        }
        offset
    }
}

/// Grows `block` for `more` bytes, doubling but never past [`BLOCK`].
fn reserve_within_block(block: &mut Vec<u8>, more: usize) {
    let needed = block.len() + more;
    if needed > block.capacity() {
        let target = needed.max(block.capacity() * 2).min(BLOCK);
        block.reserve_exact(target - block.len());
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0b1100_0000 == 0b1000_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(ring: &Ring, from: u64) -> (u64, String) {
        let mut text = Vec::new();
        let mut chunk = Vec::new();
        let mut at = from;
        let mut first = None;
        while let Some(offset) = ring.read(at, 1000, &mut chunk) {
            first.get_or_insert(offset);
            at = offset + chunk.len() as u64;
            text.extend_from_slice(&chunk);
        }
        (
            first.unwrap_or(at),
            String::from_utf8(text).expect("ring text is UTF-8"),
        )
    }

    #[test]
    fn reads_from_any_offset() {
        let mut ring = Ring::new(4 * BLOCK);
        ring.append("hello ");
        ring.append("world");
        assert_eq!(read_all(&ring, 0), (0, "hello world".to_string()));
        assert_eq!(read_all(&ring, 6), (6, "world".to_string()));
        assert_eq!(ring.read(11, 10, &mut Vec::new()), None);
    }

    #[test]
    fn evicts_whole_blocks_and_reads_from_oldest() {
        let mut ring = Ring::new(2 * BLOCK);
        let text = "x".repeat(5 * BLOCK / 2);
        ring.append(&text);
        assert_eq!(ring.start(), BLOCK as u64);
        assert_eq!(ring.end(), text.len() as u64);
        let (first, rest) = read_all(&ring, 0);
        assert_eq!(first, BLOCK as u64);
        assert_eq!(rest.len(), 3 * BLOCK / 2);
    }

    #[test]
    fn predicts_eviction() {
        let mut ring = Ring::new(2 * BLOCK);
        ring.append(&"y".repeat(2 * BLOCK));
        assert_eq!(ring.start_after_append(0), 0);
        assert_eq!(ring.start_after_append(1), BLOCK as u64);
        assert_eq!(ring.start_after_append(BLOCK + 1), 2 * BLOCK as u64);
        ring.append(&"y".repeat(BLOCK + 1));
        assert_eq!(ring.start(), 2 * BLOCK as u64);
    }

    #[test]
    fn small_output_stays_small() {
        let mut ring = Ring::new(4 * BLOCK);
        ring.append("hello\n");
        assert!(ring.blocks[0].capacity() < 64);
        for _ in 0..20_000 {
            ring.append("0123456789");
        }
        assert!(ring.blocks.iter().all(|b| b.capacity() <= BLOCK));
    }

    #[test]
    fn reads_end_on_character_boundaries() {
        let mut ring = Ring::new(2 * BLOCK);
        ring.append("aé€🦀");
        let mut out = Vec::new();
        assert_eq!(ring.read(0, 2, &mut out), Some(0));
        assert_eq!(out, b"a");
        assert_eq!(ring.read(1, 3, &mut out), Some(1));
        assert_eq!(out, "é".as_bytes());
        // An offset inside a character starts at the next boundary.
        assert_eq!(ring.read(2, 100, &mut out), Some(3));
        assert_eq!(out, "€🦀".as_bytes());
    }

    #[test]
    fn characters_straddling_blocks_stay_whole() {
        let mut ring = Ring::new(4 * BLOCK);
        ring.append(&"a".repeat(BLOCK - 1));
        ring.append("€tail");
        let (_, text) = read_all(&ring, 0);
        assert!(text.ends_with("€tail"));
        let mut out = Vec::new();
        assert_eq!(
            ring.read(BLOCK as u64, 10, &mut out),
            Some(BLOCK as u64 + 2)
        );
        assert_eq!(out, b"tail");
    }
}
