// Templates, snapshots, volumes and pools: list, create and delete through
// their APIs. One generic page, configured per kind below.

import { api, path } from './api.js';
import { errorBox, field, h, replace, showError, statusLine } from './dom.js';
import { bytes, date } from './format.js';

const POLL_MS = 3000;

const optional = (v) => (v.trim() ? v.trim() : undefined);

const KINDS = {
  templates: {
    title: 'Templates',
    noun: 'template',
    columns: [['Name', (t) => t.name], ['Image', (t) => t.image],
      ['Resources', (t) => `${t.resources.cpu} CPU · ${t.resources.memory}${t.resources.storage ? ` · ${t.resources.storage}` : ''}`],
      ['Volumes', (t) => (t.volume_mounts || []).map((m) => `${m.volume_name}:${m.mount_path}`).join(', ') || '—'],
      ['Created', (t) => date(t.created_at)]],
    fields: [['name', 'Name', { required: true }], ['image', 'Image', { required: true, placeholder: 'host or registry/image:tag' }],
      ['cpu', 'CPU', { placeholder: '500m' }], ['memory', 'Memory', { placeholder: '512Mi' }],
      ['storage', 'Storage', { placeholder: '1Gi' }]],
    body: (v) => {
      const resources = { cpu: optional(v.cpu), memory: optional(v.memory), storage: optional(v.storage) };
      return { name: v.name.trim(), image: v.image.trim(),
        resources: Object.values(resources).some(Boolean) ? resources : undefined };
    },
    key: (t) => t.name,
  },
  snapshots: {
    title: 'Snapshots',
    noun: 'snapshot',
    columns: [['Name', (s) => s.name], ['Status', (s) => h('span', { class: `badge ${s.status}` }, s.status)],
      ['Image', (s) => s.docker_image || (s.source_sandbox_id ? `captured from ${s.source_sandbox_id.slice(0, 8)}` : '—')],
      ['Tags', (s) => (s.tags || []).join(', ') || '—'], ['Disk', (s) => bytes(s.fs_capacity_bytes)],
      ['Message', (s) => s.status_message || ''], ['Created', (s) => date(s.created_at)]],
    fields: [['name', 'Name', { required: true }],
      ['docker_image', 'Docker image', { required: true, placeholder: 'registry.example.com/python:3.12-slim' }],
      ['fs_capacity_bytes', 'Disk capacity (bytes, optional)', { type: 'number', min: 1 }],
      ['tag', 'Tag (optional)', {}]],
    body: (v) => ({ name: v.name.trim(), docker_image: v.docker_image.trim(), tag: optional(v.tag),
      fs_capacity_bytes: v.fs_capacity_bytes ? Number(v.fs_capacity_bytes) : undefined }),
    key: (s) => s.id,
  },
  volumes: {
    title: 'Volumes',
    noun: 'volume',
    columns: [['Name', (v) => v.name], ['Size', (v) => v.size], ['Storage class', (v) => v.storage_class],
      ['Created', (v) => date(v.created_at)]],
    fields: [['name', 'Name', { required: true }], ['size', 'Size', { required: true, placeholder: '1Gi' }]],
    body: (v) => ({ name: v.name.trim(), size: v.size.trim() }),
    key: (v) => v.name,
  },
  pools: {
    title: 'Pools',
    noun: 'pool',
    columns: [['Name', (p) => p.name], ['Template', (p) => p.template_name],
      ['Replicas', (p) => `${p.ready_replicas} / ${p.replicas} ready`], ['Created', (p) => date(p.created_at)]],
    fields: [['name', 'Name', { required: true }], ['template_name', 'Template', { required: true }],
      ['replicas', 'Replicas', { type: 'number', min: 0, required: true, value: 1 }]],
    body: (v) => ({ name: v.name.trim(), template_name: v.template_name.trim(), replicas: Number(v.replicas) }),
    key: (p) => p.name,
  },
};

function createForm(kind, spec, onCreated) {
  const inputs = {};
  const wraps = spec.fields.map(([key, label, attrs]) => {
    const f = field(label, attrs);
    inputs[key] = f.input;
    return f.wrap;
  });
  const error = errorBox();
  const button = h('button', { type: 'submit' }, `Create ${spec.noun}`);
  const form = h('form', { class: 'inline-form', 'aria-label': `New ${spec.noun}` }, ...wraps, button, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const values = Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value]));
    button.disabled = true;
    try {
      await api('POST', path(kind), spec.body(values));
      form.reset();
      onCreated();
    } catch (e) {
      showError(error, e);
    } finally {
      button.disabled = false;
    }
  });
  return h('details', { class: 'card' }, h('summary', {}, `New ${spec.noun}`), form);
}

export function resourcePage(main, kind) {
  const spec = KINDS[kind];
  const error = errorBox();
  const announce = statusLine();
  const tbody = h('tbody');
  let timer = null;

  async function remove(item) {
    if (!window.confirm(`Delete ${spec.noun} "${item.name}"?`)) return;
    showError(error, null);
    try {
      await api('DELETE', path(kind, spec.key(item)));
      replace(announce, `Deleted ${spec.noun} ${item.name}.`);
    } catch (e) {
      showError(error, e);
    }
    load();
  }

  function row(item) {
    const del = h('button', { type: 'button', class: 'danger small', 'aria-label': `Delete ${spec.noun} ${item.name}` }, 'Delete');
    del.addEventListener('click', () => remove(item));
    return h('tr', { 'data-name': item.name },
      ...spec.columns.map(([, cell]) => h('td', {}, cell(item))), h('td', {}, del));
  }

  async function load() {
    try {
      const data = await api('GET', path(kind));
      const items = data[kind] || [];
      replace(tbody, items.length ? items.map(row)
        : h('tr', {}, h('td', { colspan: spec.columns.length + 1, class: 'empty' }, `No ${kind} yet.`)));
      showError(error, null);
    } catch (e) {
      showError(error, e);
    }
  }

  main.append(h('h1', {}, spec.title), createForm(kind, spec, load), error, announce,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'list', 'aria-label': spec.title },
        h('thead', {}, h('tr', {}, ...spec.columns.map(([t]) => h('th', { scope: 'col' }, t)),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        tbody)));
  load();
  timer = setInterval(() => { if (!document.hidden) load(); }, POLL_MS);
  return () => clearInterval(timer);
}
