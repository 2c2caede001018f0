// Live updates: the tenant's sandbox status changes arrive as server-sent
// events (GET /api/v1/console/events). EventSource cannot send X-Api-Key, so
// each stream is opened with a single-use ticket from an ordinary
// authenticated POST; a spent ticket cannot reconnect, so when a stream drops
// (or ends, every 10 minutes) the page polls every 2 s until a new one is open.

import { api } from './api.js';

const POLL_MS = 2000;
const RETRY_MS = 5000;

/** How the page gets updates now ('events' or 'polling'), for tests and styling. */
function mark(mode) {
  document.documentElement.dataset.live = mode;
}

/**
 * Call `refresh` when the stream opens and whenever an event `wanted(kind,
 * data)` arrives (kind: 'sandbox' or 'deleted'); poll with it while no stream
 * is open. Returns a function that stops everything.
 */
export function liveUpdates(refresh, wanted = () => true) {
  let source = null;
  let poll = null;
  let retry = null;
  let stopped = false;

  function startPolling() {
    mark('polling');
    if (!poll) poll = setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
  }
  function stopPolling() {
    clearInterval(poll);
    poll = null;
  }
  function later() {
    if (!stopped) retry = setTimeout(connect, RETRY_MS);
  }

  async function connect() {
    retry = null;
    if (stopped || typeof EventSource === 'undefined') return;
    let ticket;
    try {
      ticket = await api('POST', '/api/v1/console/event-tickets');
    } catch {
      later();
      return;
    }
    if (stopped) return;
    source = new EventSource(ticket.url);
    source.addEventListener('ready', () => {
      stopPolling();
      mark('events');
      refresh();
    });
    for (const kind of ['sandbox', 'deleted']) {
      source.addEventListener(kind, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        if (wanted(kind, data)) refresh();
      });
    }
    source.onerror = () => {
      source.close();
      source = null;
      if (stopped) return;
      startPolling();
      refresh();
      later();
    };
  }

  startPolling();
  connect();
  return () => {
    stopped = true;
    stopPolling();
    clearTimeout(retry);
    if (source) source.close();
  };
}
