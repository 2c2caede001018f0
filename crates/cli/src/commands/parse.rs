//! Value parsers for flags: sizes (`512MiB`, `1G`, `1048576`) and
//! durations (`90s`, `10m`, `2h`, `1d`, `600`).

/// Bytes from a plain number or a number with a unit: `K`/`KB` (1000),
/// `Ki`/`KiB` (1024), and the same for M, G, T; case-insensitive.
pub fn bytes(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 1073741824, 512MiB, 1G)"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let factor: i64 = match unit {
        "" => 1,
        "k" => 1_000,
        "ki" => 1 << 10,
        "m" => 1_000_000,
        "mi" => 1 << 20,
        "g" => 1_000_000_000,
        "gi" => 1 << 30,
        "t" => 1_000_000_000_000,
        "ti" => 1 << 40,
        _ => {
            return Err(format!(
                "'{s}': unknown unit (use K, Ki, M, Mi, G, Gi, T, Ti)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Seconds from a plain number or a number with `s`, `m`, `h` or `d`.
pub fn seconds(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (digits, factor) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 90s, 10m, 2h)"))?;
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{s}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes("1048576"), Ok(1 << 20));
        assert_eq!(bytes("512MiB"), Ok(512 << 20));
        assert_eq!(bytes("512Mi"), Ok(512 << 20));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("2gib"), Ok(2 << 30));
        assert!(bytes("lots").is_err());
        assert!(bytes("1XB").is_err());
        assert!(bytes("-1").is_err());
        assert!(bytes("99999999999Ti").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(seconds("600"), Ok(600));
        assert_eq!(seconds("90s"), Ok(90));
        assert_eq!(seconds("10m"), Ok(600));
        assert_eq!(seconds("2h"), Ok(7200));
        assert_eq!(seconds("1d"), Ok(86_400));
        assert!(seconds("m").is_err());
        assert!(seconds("ten minutes").is_err());
    }
}
