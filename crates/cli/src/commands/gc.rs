//! `sandpit gc`: garbage-collect the server's layer store now (admin).

use clap::Args;
use sandpit_images::GcReport;

use super::connect::Connection;

#[derive(Args)]
pub struct GcArgs {
    #[command(flatten)]
    conn: Connection,
    /// Only say what would be removed.
    #[arg(long)]
    dry_run: bool,
}

pub async fn gc(args: GcArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let answer = client.collect_garbage(args.dry_run).await?;
    if args.conn.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let report: GcReport = serde_json::from_value(answer)?;
    print!("{}", summary(&report));
    Ok(())
}

/// The report in a few lines.
fn summary(r: &GcReport) -> String {
    let verb = if r.dry_run { "would free" } else { "freed" };
    let mut text = format!(
        "{verb} {} ({} layers, {} images)\n",
        human_bytes(r.bytes_freed),
        r.layers_removed,
        r.images_removed
    );
    text.push_str(&format!(
        "in use: {} images, {} layers; unused but within the {}s grace period: {} images, {} layers\n",
        r.images_in_use, r.layers_in_use, r.grace_seconds, r.images_in_grace, r.layers_in_grace
    ));
    for layer in &r.removed_layers {
        text.push_str(&format!("  layer {layer}\n"));
    }
    for error in &r.errors {
        text.push_str(&format!("error: {error}\n"));
    }
    text
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let report = GcReport {
            dry_run: true,
            bytes_freed: 3 << 20,
            layers_removed: 2,
            images_removed: 1,
            removed_layers: vec!["sha256:ab".into()],
            ..GcReport::default()
        };
        let text = summary(&report);
        assert!(
            text.starts_with("would free 3.0 MiB (2 layers, 1 images)\n"),
            "{text}"
        );
        assert!(text.contains("  layer sha256:ab\n"));
        assert_eq!(human_bytes(512), "512 B");
    }
}
