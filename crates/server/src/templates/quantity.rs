//! Kubernetes-style quantities as templates and volumes write them: CPU
//! (`500m`, `1`, `2`) and sizes (`512Mi`, `1Gi`, `1G`, plain bytes).

/// CPU quantity → thousandths of a CPU.
pub fn cpu_millis(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid CPU quantity '{text}' (use e.g. '500m', '1', '2')");
    let millis = if let Some(m) = text.strip_suffix('m') {
        m.parse::<u64>().map_err(|_| bad())?
    } else {
        let cpus: f64 = text.parse().map_err(|_| bad())?;
        if !cpus.is_finite() || cpus < 0.0 || text.starts_with(['+', '-']) {
            return Err(bad());
        }
        (cpus * 1000.0).round() as u64
    };
    if millis == 0 || millis > 256_000 {
        return Err(bad());
    }
    Ok(millis)
}

/// Size quantity → bytes.
pub fn bytes(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size quantity '{text}' (use e.g. '512Mi', '1Gi')");
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, unit) = UNITS
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((text, 1));
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = number.parse().map_err(|_| bad())?;
    let total = n.checked_mul(unit).ok_or_else(bad)?;
    if total == 0 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(cpu_millis("500m"), Ok(500));
        assert_eq!(cpu_millis("1"), Ok(1000));
        assert_eq!(cpu_millis("2"), Ok(2000));
        assert_eq!(cpu_millis("1.5"), Ok(1500));
        for bad in ["", "0", "m", "-1", "abc", "1x", "0m", "1e9"] {
            assert!(cpu_millis(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("512Mi"), Ok(512 << 20));
        assert_eq!(bytes("1Gi"), Ok(1 << 30));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("4096"), Ok(4096));
        for bad in ["", "Gi", "1.5Gi", "-1Gi", "1Xi", "0", "99999999999Ti"] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
    }
}
