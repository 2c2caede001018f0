// One sandbox: its fields, stop/start/delete, retention, the Open service
// widget, live usage charts and a terminal. The fields refresh when the
// sandbox changes (server-sent events, see live.js).

import { api, path } from './api.js';
import { errorBox, field, h, replace, showError, statusLine } from './dom.js';
import { bytes, date, deadline, seconds, source } from './format.js';
import { statusBadge } from './sandboxes.js';
import { serviceWidget } from './service.js';
import { terminalPanel } from './terminal.js';
import { usagePanel } from './usage.js';
import { liveUpdates } from './live.js';

function fields(sb) {
  const rows = [
    ['Name', sb.name], ['ID', sb.id], ['Status', statusBadge(sb.status)],
    ['Status message', sb.status_message || '—'], ['Boots from', source(sb)],
    ['vCPUs', sb.vcpus], ['Memory', bytes(sb.mem_bytes)], ['Disk', bytes(sb.fs_capacity_bytes)],
    ['Created', date(sb.created_at)], ['Last activity', date(sb.last_activity_at)],
    ['Stopped at', date(sb.stopped_at)], ['Idle TTL', seconds(sb.idle_ttl_seconds)],
    ['Delete after stop', seconds(sb.delete_after_stop_seconds)], ['Next deadline', deadline(sb)],
  ];
  return rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]);
}

function actions(name, getSandbox, reload, error, announce) {
  async function act(label, method, suffix, question) {
    if (question && !window.confirm(question)) return;
    showError(error, null);
    replace(announce, `${label}…`);
    try {
      await api(method, suffix ? path('boxes', name, suffix) : path('boxes', name), method === 'POST' ? {} : undefined);
      replace(announce, `${label}: done`);
      if (method === 'DELETE') {
        location.hash = '#/sandboxes';
        return;
      }
    } catch (e) {
      replace(announce, '');
      showError(error, e);
    }
    reload();
  }
  const stop = h('button', { type: 'button', class: 'secondary' }, 'Stop');
  const start = h('button', { type: 'button', class: 'secondary' }, 'Start');
  const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
  stop.addEventListener('click', () => act('Stopping', 'POST', 'stop',
    `Stop sandbox "${name}"? Running processes are killed; files are kept.`));
  start.addEventListener('click', () => act('Starting', 'POST', 'start'));
  del.addEventListener('click', () => act('Deleting', 'DELETE', null,
    `Delete sandbox "${name}" and all its files? This cannot be undone.`));
  const bar = h('div', { class: 'actions', role: 'group', 'aria-label': 'Sandbox actions' }, stop, start, del);
  bar.update = () => {
    const sb = getSandbox();
    stop.disabled = !sb || sb.status !== 'ready';
    start.disabled = !sb || !['stopped', 'failed'].includes(sb.status);
  };
  return bar;
}

function retentionForm(name, onSaved) {
  const idle = field('Idle TTL (seconds)', { type: 'number', min: 0, step: 1, required: true },
    'Stop after this long without activity (a multiple of 60); 0 never stops it.');
  const after = field('Delete after stop (seconds)', { type: 'number', min: 0, step: 1, required: true },
    'Delete this long after it stops (a multiple of 60); 0 keeps it.');
  const error = errorBox();
  const done = statusLine();
  const form = h('form', { class: 'card', 'aria-labelledby': 'retention-title' },
    h('h2', { id: 'retention-title' }, 'Retention'), idle.wrap, after.wrap,
    h('button', { type: 'submit' }, 'Save retention'), error, done);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    replace(done, '');
    try {
      const sb = await api('PATCH', path('boxes', name), {
        idle_ttl_seconds: Number(idle.input.value),
        delete_after_stop_seconds: Number(after.input.value),
      });
      replace(done, 'Saved.');
      onSaved(sb);
    } catch (e) {
      showError(error, e);
    }
  });
  form.fill = (sb) => {
    if (form.contains(document.activeElement)) return;
    idle.input.value = sb.idle_ttl_seconds;
    after.input.value = sb.delete_after_stop_seconds;
  };
  return form;
}

export function sandboxPage(main, name) {
  let sandbox = null;
  let filled = false;
  const error = errorBox();
  const announce = statusLine();
  const dl = h('dl', { class: 'fields' });
  const heading = h('h1', {}, name);
  const bar = actions(name, () => sandbox, () => load(), error, announce);
  const retention = retentionForm(name, (sb) => render(sb));
  const terminal = terminalPanel(name, () => sandbox);
  const usage = usagePanel(name, () => sandbox);

  function render(sb) {
    sandbox = sb;
    replace(dl, fields(sb));
    bar.update();
    terminal.update();
    if (!filled) {
      retention.fill(sb);
      filled = true;
    }
  }

  async function load() {
    try {
      render(await api('GET', path('boxes', name)));
    } catch (e) {
      showError(error, e);
    }
  }

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/sandboxes' }, '← Sandboxes')),
    heading, bar, announce, error,
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'fields-title' },
        h('h2', { id: 'fields-title' }, 'Details'), dl),
      h('div', { class: 'stack' }, serviceWidget(name), retention)),
    usage.element,
    terminal.element);
  load();
  const stop = liveUpdates(() => load(),
    (kind, data) => data.name === name || (sandbox !== null && data.id === sandbox.id));
  return () => {
    stop();
    usage.close();
    terminal.close();
  };
}
