// Display helpers.

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

export function date(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** "in 4m 10s" / "2m ago" */
export function relative(ms) {
  const past = ms < 0;
  let s = Math.round(Math.abs(ms) / 1000);
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]]) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  if (parts.length < 2 && (s || !parts.length)) parts.push(`${s}s`);
  const text = parts.slice(0, 2).join(' ');
  return past ? `${text} ago` : `in ${text}`;
}

export function seconds(n) {
  if (n === null || n === undefined) return '—';
  if (n <= 0) return 'never';
  return relative(n * 1000).replace(/^in /, '');
}

/** What a sandbox booted from. */
export function source(sb) {
  if (sb.template_name) return `template ${sb.template_name}`;
  if (sb.snapshot_id) return `snapshot ${sb.snapshot_id.slice(0, 8)}`;
  return sb.image === 'host' ? 'host image' : sb.image;
}

export function resources(sb) {
  return `${sb.vcpus} vCPU · ${bytes(sb.mem_bytes)} · ${bytes(sb.fs_capacity_bytes)} disk`;
}

/** The next retention event of a sandbox, as text. */
export function deadline(sb, now = Date.now()) {
  if (sb.status === 'ready' && sb.idle_ttl_seconds > 0) {
    const at = Date.parse(sb.last_activity_at) + sb.idle_ttl_seconds * 1000;
    return `stops ${relative(at - now)} if idle`;
  }
  if (sb.status === 'stopped' && sb.delete_after_stop_seconds > 0 && sb.stopped_at) {
    const at = Date.parse(sb.stopped_at) + sb.delete_after_stop_seconds * 1000;
    return `deleted ${relative(at - now)}`;
  }
  if (sb.expires_at) return `expires ${relative(Date.parse(sb.expires_at) - now)}`;
  return '—';
}
