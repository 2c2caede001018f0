// The sandboxes list: filter by name and status, sort, paginate through the
// list API, and reload it when a sandbox changes (server-sent events, see
// live.js; polling while no stream is open).

import { api, path } from './api.js';
import { errorBox, field, h, replace, showError, statusLine } from './dom.js';
import { date, deadline, resources, source } from './format.js';
import { liveUpdates } from './live.js';

const PAGE_SIZE = 20;
const STATUSES = ['provisioning', 'ready', 'stopped', 'failed', 'deleting'];

/** Filter, sort and page state, kept in the page's query for reloads. */
function initialState() {
  const saved = sessionStorage.getItem('sandpit.listState');
  const base = { name: '', status: '', sort: 'created_at', direction: 'desc', offset: 0 };
  try {
    return { ...base, ...(saved ? JSON.parse(saved) : {}) };
  } catch {
    return base;
  }
}

function query(state) {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE + 1), offset: String(state.offset),
    sort_by: state.sort, sort_direction: state.direction });
  if (state.name) q.set('name_contains', state.name);
  if (state.status) q.set('status', state.status);
  return q;
}

export function statusBadge(status) {
  return h('span', { class: `badge ${status}` }, status);
}

function row(sb) {
  return h('tr', { 'data-name': sb.name },
    h('td', {}, h('a', { href: `#/sandboxes/${encodeURIComponent(sb.name)}` }, sb.name)),
    h('td', {}, statusBadge(sb.status)),
    h('td', {}, source(sb)),
    h('td', {}, resources(sb)),
    h('td', {}, h('time', { datetime: sb.created_at }, date(sb.created_at))),
    h('td', {}, deadline(sb)));
}

function createForm(onCreated) {
  const name = field('Name', { required: true });
  const snapshot = field('Snapshot (optional)', { placeholder: 'name, name:tag or id' });
  const template = field('Template (optional)', {});
  const error = errorBox();
  const button = h('button', { type: 'submit' }, 'Create');
  const form = h('form', { class: 'inline-form', 'aria-label': 'New sandbox' },
    name.wrap, snapshot.wrap, template.wrap, button, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const body = { name: name.input.value.trim(), wait_for_ready: false };
    if (snapshot.input.value.trim()) body.snapshot = snapshot.input.value.trim();
    if (template.input.value.trim()) body.template_name = template.input.value.trim();
    button.disabled = true;
    try {
      await api('POST', path('boxes'), body);
      form.reset();
      onCreated();
    } catch (e) {
      showError(error, e);
    } finally {
      button.disabled = false;
    }
  });
  return h('details', { class: 'card' }, h('summary', {}, 'New sandbox'), form);
}

export function sandboxesPage(main) {
  const state = initialState();
  const error = errorBox();
  const summary = statusLine();
  const tbody = h('tbody');
  const prev = h('button', { type: 'button', class: 'secondary' }, 'Previous');
  const next = h('button', { type: 'button', class: 'secondary' }, 'Next');
  const pageInfo = h('span', { class: 'page-info' });
  let generation = 0;

  async function load() {
    const mine = ++generation;
    sessionStorage.setItem('sandpit.listState', JSON.stringify(state));
    try {
      const data = await api('GET', `${path('boxes')}?${query(state)}`);
      if (mine !== generation) return;
      showError(error, null);
      const items = data.sandboxes.slice(0, PAGE_SIZE);
      replace(tbody, items.length ? items.map(row)
        : h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No sandboxes match.')));
      prev.disabled = state.offset === 0;
      next.disabled = data.sandboxes.length <= PAGE_SIZE;
      const first = items.length ? state.offset + 1 : state.offset;
      replace(pageInfo, `${first}–${state.offset + items.length}`);
      replace(summary, `${items.length} sandbox${items.length === 1 ? '' : 'es'} shown`);
    } catch (e) {
      if (mine === generation) showError(error, e);
    }
  }

  function restart() {
    load();
  }

  const filters = filterForm(state, () => { state.offset = 0; restart(); });
  prev.addEventListener('click', () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); restart(); });
  next.addEventListener('click', () => { state.offset += PAGE_SIZE; restart(); });

  main.append(
    h('h1', {}, 'Sandboxes'),
    createForm(restart),
    filters, error, summary,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'list', 'aria-label': 'Sandboxes' },
        h('thead', {}, h('tr', {}, ...['Name', 'Status', 'Image / snapshot / template', 'Resources',
          'Created', 'Idle deadline'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)),
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, pageInfo, next));
  restart();
  const stop = liveUpdates(() => load());
  return () => { stop(); generation += 1; };
}

function filterForm(state, onChange) {
  const name = field('Name contains', { type: 'search', value: state.name });
  const status = field('Status', { tag: 'select',
    options: [['', 'Any'], ...STATUSES.map((s) => [s, s])] });
  status.input.value = state.status;
  const sort = field('Sort by', { tag: 'select',
    options: [['created_at', 'Created'], ['name', 'Name'], ['status', 'Status']] });
  sort.input.value = state.sort;
  const direction = field('Order', { tag: 'select',
    options: [['desc', 'Descending'], ['asc', 'Ascending']] });
  direction.input.value = state.direction;
  let debounce = null;
  name.input.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { state.name = name.input.value.trim(); onChange(); }, 250);
  });
  for (const [f, key] of [[status, 'status'], [sort, 'sort'], [direction, 'direction']]) {
    f.input.addEventListener('change', () => { state[key] = f.input.value; onChange(); });
  }
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter sandboxes' },
    name.wrap, status.wrap, sort.wrap, direction.wrap);
  form.addEventListener('submit', (e) => e.preventDefault());
  return form;
}
