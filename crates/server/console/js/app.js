// The console's router: hash routes keep every page at `/`, so the console
// never shadows an API or service path on the server.

import { apiKey, forgetApiKey } from './api.js';
import { signInPage } from './signin.js';
import { sandboxesPage } from './sandboxes.js';
import { sandboxPage } from './sandbox.js';
import { resourcePage } from './resources.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signOut = document.getElementById('signout');
/** Cleanup of the page on screen (timers, sockets). */
let leave = () => {};

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [section, ...rest] = hash.split('/').map(decodeURIComponent);
  if (!apiKey()) return { section: 'signin', render: signInPage };
  switch (section) {
    case '':
    case 'signin':
    case 'sandboxes':
      return rest.length && rest[0]
        ? { section: 'sandboxes', render: (el) => sandboxPage(el, rest[0]) }
        : { section: 'sandboxes', render: sandboxesPage };
    case 'templates':
    case 'snapshots':
    case 'volumes':
    case 'pools':
      return { section, render: (el) => resourcePage(el, section) };
    default:
      return { section: 'notfound', render: notFound };
  }
}

function notFound(el) {
  el.append(document.createElement('h1'));
  el.firstChild.textContent = 'Page not found';
}

function show() {
  leave();
  leave = () => {};
  const { section, render } = route();
  const signedIn = Boolean(apiKey());
  nav.hidden = !signedIn;
  signOut.hidden = !signedIn;
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main.replaceChildren();
  const cleanup = render(main);
  if (typeof cleanup === 'function') leave = cleanup;
  const heading = main.querySelector('h1');
  document.title = heading ? `${heading.textContent} · Sandpit` : 'Sandpit console';
  main.focus({ preventScroll: true });
}

signOut.addEventListener('click', () => {
  forgetApiKey();
  location.hash = '#/signin';
  show();
});

window.addEventListener('sandpit:unauthorized', () => {
  forgetApiKey();
  show();
});
window.addEventListener('hashchange', show);
show();
