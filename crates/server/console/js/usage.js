// A sandbox's live usage: CPU and memory charts over the last minutes, from
// polling GET /boxes/{name}/usage. Plain SVG, no chart library; every
// value drawn is a number the page computed, never markup from the API.

import { api, path } from './api.js';
import { h, replace } from './dom.js';
import { bytes } from './format.js';

const POLL_MS = 2000;
/** Samples kept: five minutes at one every two seconds. */
const KEEP = 150;
/** The x axis spans at least this many samples (a minute), so a fresh page
 * draws a readable line that then compresses towards five minutes. */
const MIN_SPAN = 30;
const W = 300;
const H = 80;
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** A line chart of `points` (0..max) with an optional limit line. */
function chart(label, points, max, limit) {
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label,
    preserveAspectRatio: 'none',
  });
  root.append(svg('rect', { x: 0, y: 0, width: W, height: H, class: 'chart-bg' }));
  const y = (v) => H - 2 - (Math.min(v, max) / max) * (H - 4);
  if (limit !== undefined) {
    root.append(svg('line', { x1: 0, x2: W, y1: y(limit), y2: y(limit), class: 'chart-limit' }));
  }
  if (points.length > 1) {
    const step = W / Math.max(points.length - 1, MIN_SPAN - 1);
    const x0 = W - (points.length - 1) * step;
    const d = points.map((v, i) => `${i ? 'L' : 'M'}${(x0 + i * step).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    root.append(svg('path', { d: `${d} L${W},${H} L${x0.toFixed(1)},${H} Z`, class: 'chart-area' }));
    root.append(svg('path', { d, class: 'chart-line' }));
  }
  return root;
}

export function usagePanel(name, getSandbox) {
  const samples = [];
  const cpuValue = h('span', { class: 'chart-value' }, '—');
  const memValue = h('span', { class: 'chart-value' }, '—');
  const cpuBox = h('div', { class: 'chart-box' });
  const memBox = h('div', { class: 'chart-box' });
  const note = h('p', { class: 'hint' }, 'Since this page opened (up to 5 minutes), every 2 s.');
  const element = h('section', { class: 'card usage', 'aria-labelledby': 'usage-title' },
    h('h2', { id: 'usage-title' }, 'Usage'),
    h('div', { class: 'charts' },
      h('figure', {}, h('figcaption', {}, 'CPU ', cpuValue), cpuBox),
      h('figure', {}, h('figcaption', {}, 'Memory ', memValue), memBox)),
    note);
  let timer = null;

  function draw() {
    const last = samples[samples.length - 1];
    const vcpus = last ? last.vcpus : 1;
    // CPU as a share of the sandbox's vCPUs between two samples.
    const cpu = [];
    for (let i = 1; i < samples.length; i += 1) {
      const dt = (samples[i].at - samples[i - 1].at) / 1000;
      const used = samples[i].cpu_seconds - samples[i - 1].cpu_seconds;
      cpu.push(dt > 0 && used >= 0 ? (100 * used) / dt / Math.max(vcpus, 1) : 0);
    }
    const mem = samples.map((s) => s.memory_bytes);
    const limit = last ? last.memory_limit_bytes : 0;
    replace(cpuValue, cpu.length ? `${cpu[cpu.length - 1].toFixed(0)}% of ${vcpus} vCPU` : '—');
    replace(memValue, last ? `${bytes(last.memory_bytes)} of ${bytes(limit)}` +
      (last.memory_peak_bytes ? ` (peak ${bytes(last.memory_peak_bytes)})` : '') : '—');
    replace(cpuBox, chart('CPU use over the last minutes', cpu, 100));
    const top = Math.max(limit, ...mem, 1);
    replace(memBox, chart('Memory use over the last minutes', mem, top, limit || undefined));
  }

  async function poll() {
    const sb = getSandbox();
    if (document.hidden || (sb && sb.status !== 'ready')) return;
    try {
      const u = await api('GET', path('boxes', name, 'usage'));
      if (!u.running) return;
      samples.push({ ...u, at: Date.now() });
      if (samples.length > KEEP) samples.shift();
      draw();
    } catch (e) {
      replace(note, `Usage unavailable: ${e.message || e}`);
    }
  }

  draw();
  poll();
  timer = setInterval(poll, POLL_MS);
  return { element, close: () => clearInterval(timer) };
}
