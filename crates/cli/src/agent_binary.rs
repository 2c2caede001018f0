//! The static agent binary, built by `build.rs` and embedded here so that one
//! `sandpit` file is all a host needs.

pub static STATIC_AGENT: &[u8] = include_bytes!(env!("SANDPIT_STATIC_AGENT"));

#[cfg(test)]
mod tests {
    use super::STATIC_AGENT;

    fn u16_at(at: usize) -> u16 {
        u16::from_le_bytes([STATIC_AGENT[at], STATIC_AGENT[at + 1]])
    }

    /// A fixed-address executable (`ET_EXEC`) without a program
    /// interpreter: a static-pie (`ET_DYN`) is relocated at every sandbox
    /// start, ~200 KiB of private memory each (docs/benchmarks.md, issue 19).
    #[test]
    fn the_agent_is_static_and_not_position_independent() {
        assert_eq!(&STATIC_AGENT[..5], b"\x7fELF\x02", "not a 64-bit ELF");
        let e_type = u16_at(16);
        assert_eq!(e_type, 2, "ELF type {e_type}: 2 is ET_EXEC, 3 ET_DYN (pie)");
        let mut phoff = [0u8; 8];
        phoff.copy_from_slice(&STATIC_AGENT[32..40]);
        let phoff = usize::try_from(u64::from_le_bytes(phoff)).unwrap();
        let (size, count) = (usize::from(u16_at(54)), usize::from(u16_at(56)));
        for n in 0..count {
            let p_type = u16_at(phoff + n * size);
            assert_ne!(p_type, 3, "PT_INTERP: the agent asks for a dynamic loader");
        }
    }
}
