// An interactive shell in the sandbox: xterm.js on the exec WebSocket with a
// pseudo-terminal (the same `execute`/`input`/`resize` messages `sandpit
// shell` sends). A browser WebSocket cannot carry X-Api-Key, so the page
// first gets a single-use ticket with an authenticated POST and opens
// `/console-terminal/{id}?ticket=...`.

import { Terminal } from '/console/vendor/xterm/xterm.mjs';
import { FitAddon } from '/console/vendor/xterm/addon-fit.mjs';
import { api } from './api.js';
import { errorBox, h, replace, showError, statusLine } from './dom.js';

const SHELL = 'if [ -x /bin/bash ]; then exec /bin/bash -i; else exec /bin/sh -i; fi';

function wsUrl(id, ticket) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/console-terminal/${encodeURIComponent(id)}?ticket=${encodeURIComponent(ticket)}`;
}

export function terminalPanel(name, getSandbox) {
  const connect = h('button', { type: 'button' }, 'Connect');
  const disconnect = h('button', { type: 'button', class: 'secondary' }, 'Disconnect');
  const error = errorBox();
  const state = statusLine();
  const screen = h('div', { class: 'terminal', role: 'region', 'aria-label': 'Terminal' });
  screen.hidden = true;
  disconnect.disabled = true;
  let session = null;

  function close() {
    if (!session) return;
    const { ws, term, observer } = session;
    session = null;
    observer.disconnect();
    if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
    term.options.disableStdin = true;
    disconnect.disabled = true;
    update();
  }

  async function open() {
    showError(error, null);
    connect.disabled = true;
    let ticket;
    try {
      ticket = await api('POST', '/api/v1/console/terminal-tickets', { sandbox: name });
    } catch (e) {
      showError(error, e);
      update();
      return;
    }
    screen.hidden = false;
    screen.replaceChildren();
    const term = new Terminal({ cursorBlink: true, convertEol: false, fontSize: 14,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace', scrollback: 5000 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(screen);
    fit.fit();
    const ws = new WebSocket(wsUrl(ticket.sandbox_id, ticket.ticket));
    const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
    const observer = new ResizeObserver(() => fit.fit());
    observer.observe(screen);
    session = { ws, term, observer };
    term.onResize(({ cols, rows }) => send({ type: 'resize', cols, rows }));
    term.onData((data) => send({ type: 'input', data }));
    ws.addEventListener('open', () => {
      send({ type: 'execute', command: SHELL, shell: '/bin/sh', timeout_seconds: 0,
        pty: true, cols: term.cols, rows: term.rows, kill_on_disconnect: true, close_stdin: false,
        command_id: crypto.randomUUID().replaceAll('-', '') });
      disconnect.disabled = false;
      replace(state, 'Terminal connected.');
      term.focus();
    });
    ws.addEventListener('message', (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (msg.type === 'stdout' || msg.type === 'stderr') term.write(msg.data);
      else if (msg.type === 'exit') term.write(`\r\n[shell exited with code ${msg.exit_code}]\r\n`);
      else if (msg.type === 'error') term.write(`\r\n[${msg.error_type}: ${msg.error}]\r\n`);
    });
    ws.addEventListener('close', (event) => {
      replace(state, 'Terminal disconnected.');
      if (event.code !== 1000 && event.code !== 1005 && session && session.ws === ws) {
        showError(error, new Error(`The terminal connection closed (code ${event.code}).`));
      }
      if (session && session.ws === ws) close();
    });
  }

  function update() {
    const sb = getSandbox();
    connect.disabled = Boolean(session) || !sb || sb.status !== 'ready';
  }

  connect.addEventListener('click', open);
  disconnect.addEventListener('click', close);
  const element = h('section', { class: 'card', 'aria-labelledby': 'term-title' },
    h('h2', { id: 'term-title' }, 'Terminal'),
    h('div', { class: 'actions' }, connect, disconnect), error, state, screen);
  return { element, update, close };
}
