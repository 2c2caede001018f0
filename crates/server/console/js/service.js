// The "Open service" widget, as the service-URL guide describes it: type a
// port, click Open to launch the service in a new tab, or Share Link to copy
// a browser_url (with a chosen lifetime) that anyone can open without an
// account until its token expires.

import { api, path } from './api.js';
import { errorBox, field, h, replace, showError, statusLine } from './dom.js';
import { date } from './format.js';

/** Token lifetime of Open: the API's default. */
const OPEN_TTL = 600;
const LIFETIMES = [['600', '10 minutes'], ['3600', '1 hour'], ['28800', '8 hours'], ['86400', '24 hours']];

function serviceUrl(name, port, ttl) {
  return api('POST', path('boxes', name, 'service-url'), { port, expires_in_seconds: ttl });
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

export function serviceWidget(name) {
  const port = field('Port', { type: 'number', min: 1, max: 65535, step: 1, required: true,
    inputmode: 'numeric', placeholder: 'e.g. 3000' });
  const lifetime = field('Share link lifetime', { tag: 'select', options: LIFETIMES });
  const open = h('button', { type: 'submit' }, 'Open');
  const share = h('button', { type: 'button', class: 'secondary' }, 'Share Link');
  const error = errorBox();
  const done = statusLine();
  const linkOut = h('input', { type: 'text', readonly: true, class: 'link', 'aria-label': 'Share link' });
  const linkWrap = h('div', { class: 'share' }, linkOut);
  linkWrap.hidden = true;

  const form = h('form', { class: 'card', 'aria-labelledby': 'svc-title', novalidate: true },
    h('h2', { id: 'svc-title' }, 'Open service'),
    h('p', { class: 'hint' }, 'Reach an HTTP service listening on a port inside this sandbox.'),
    h('div', { class: 'row' }, port.wrap, lifetime.wrap),
    h('div', { class: 'actions' }, open, share),
    error, done, linkWrap);

  /** The typed port; range errors are left to the API, which names them. */
  function chosenPort() {
    const value = Number(port.input.value);
    if (port.input.value.trim() === '' || !Number.isInteger(value)) {
      showError(error, new Error('Enter a port number.'));
      port.input.focus();
      return null;
    }
    return value;
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    replace(done, '');
    const p = chosenPort();
    if (p === null) return;
    try {
      const svc = await serviceUrl(name, p, OPEN_TTL);
      // A new tab with noopener and noreferrer, opened only once the URL is
      // known: the service's page gets no handle on this window, no copy of
      // its sessionStorage (where the API key is) and no Referer. (The API
      // never hands out a browser_url on the console's own origin.)
      window.open(svc.browser_url, '_blank', 'noopener,noreferrer');
      // window.open with noopener returns null whether or not a popup
      // blocker stopped it, so offer the link as well.
      replace(done, `Opened port ${p} in a new tab. Blocked? `,
        h('a', { href: svc.browser_url, target: '_blank', rel: 'noopener noreferrer' }, 'Open it here'), '.');
    } catch (e) {
      showError(error, e);
    }
  });

  share.addEventListener('click', async () => {
    showError(error, null);
    replace(done, '');
    const p = chosenPort();
    if (p === null) return;
    try {
      const svc = await serviceUrl(name, p, Number(lifetime.input.value));
      linkOut.value = svc.browser_url;
      linkWrap.hidden = false;
      const copied = await copy(svc.browser_url);
      replace(done, `${copied ? 'Link copied' : 'Copy the link below'}; it works until ${date(svc.expires_at)}.`);
      if (!copied) linkOut.select();
    } catch (e) {
      showError(error, e);
    }
  });
  return form;
}
