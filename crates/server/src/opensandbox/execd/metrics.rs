//! `GET /metrics` and `/metrics/watch`: CPU and memory of the sandbox,
//! sampled over [`SAMPLE`] by a script run with the agent's `/execute`:
//! from its cgroup (v2) when `/sys/fs/cgroup` shows it, else from its
//! processes (`/proc`: CPU ticks and resident memory of every process in
//! the sandbox's PID namespace). Totals are the sandbox's limits.

use serde::Serialize;

use super::now_millis;
use crate::opensandbox::agent::Agent;
use crate::opensandbox::error::OsError;

/// CPU usage is measured over this long (the script sleeps it).
pub const SAMPLE: &str = "0.2";

/// `Metrics` of the spec.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub cpu_count: f64,
    pub cpu_used_pct: f64,
    pub mem_total_mib: f64,
    pub mem_used_mib: f64,
    pub timestamp: i64,
}

const SCRIPT: &str = r#"cg=/sys/fs/cgroup
usage() {
  if [ -r "$cg/cpu.stat" ]; then sed -n 's/^usage_usec //p' "$cg/cpu.stat"
  else cat /proc/[0-9]*/stat 2>/dev/null | awk '{ t += $14 + $15 } END { printf "%d\n", t * 10000 }'; fi
}
a=$(usage); sleep SAMPLE; b=$(usage)
echo "usage $a $b"
echo "memcur $(cat "$cg/memory.current" 2>/dev/null || cat /proc/[0-9]*/statm 2>/dev/null | awk '{ p += $2 } END { printf "%d\n", p * 4096 }')"
"#;

fn field<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(|r| r.split_whitespace().collect()))
        .unwrap_or_default()
}

fn num(text: Option<&&str>) -> Option<f64> {
    text.and_then(|t| t.parse::<f64>().ok())
}

/// Metrics from the script's output, for a sandbox of `vcpus` and
/// `mem_bytes`.
pub fn parse(out: &str, sample_seconds: f64, vcpus: f64, mem_bytes: f64) -> Metrics {
    let usage = field(out, "usage ");
    let used_usec = match (num(usage.first()), num(usage.get(1))) {
        (Some(a), Some(b)) if b >= a => b - a,
        _ => 0.0,
    };
    let cpu_used_pct = if vcpus > 0.0 {
        (used_usec / (sample_seconds * 1e6) / vcpus * 100.0).min(100.0)
    } else {
        0.0
    };
    let mib = 1024.0 * 1024.0;
    let mem_used = num(field(out, "memcur ").first()).unwrap_or(0.0);
    Metrics {
        cpu_count: vcpus,
        cpu_used_pct,
        mem_total_mib: mem_bytes / mib,
        mem_used_mib: mem_used / mib,
        timestamp: now_millis(),
    }
}

pub async fn sample(agent: &Agent, vcpus: i64, mem_bytes: i64) -> Result<Metrics, OsError> {
    let script = SCRIPT.replace("SAMPLE", SAMPLE);
    let out = agent.exec(&script, 10.0).await?;
    Ok(parse(
        &out.stdout,
        SAMPLE.parse().unwrap_or(0.2),
        vcpus as f64,
        mem_bytes as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_become_metrics_of_the_limits() {
        let out = "usage 1000 101000\nmemcur 536870912\n";
        let m = parse(out, 0.2, 2.0, 1024.0 * 1024.0 * 1024.0);
        assert_eq!(m.cpu_count, 2.0);
        assert!((m.cpu_used_pct - 25.0).abs() < 1e-9);
        assert_eq!((m.mem_total_mib, m.mem_used_mib), (1024.0, 512.0));
        let empty = parse("", 0.2, 1.0, 0.0);
        assert_eq!((empty.cpu_used_pct, empty.mem_used_mib), (0.0, 0.0));
    }
}
