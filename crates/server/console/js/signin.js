// Sign-in: the API key is checked against the list API and kept in
// sessionStorage (this tab only, gone when it closes).

import { api, ApiError, path, setApiKey } from './api.js';
import { errorBox, field, h, showError } from './dom.js';

export function signInPage(main) {
  const key = field('API key', { type: 'password', autocomplete: 'current-password', required: true },
    'The key `sandpit serve` printed, or one from `sandpit keys create`. It stays in this browser tab.');
  const error = errorBox();
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    key.wrap, error,
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const value = key.input.value.trim();
    try {
      await api('GET', `${path('boxes')}?limit=1`, undefined, value);
    } catch (e) {
      showError(error, e instanceof ApiError ? e : new Error(String(e)));
      key.input.focus();
      return;
    }
    setApiKey(value);
    if (location.hash === '#/sandboxes') window.dispatchEvent(new HashChangeEvent('hashchange'));
    else location.hash = '#/sandboxes';
  });
  main.append(form);
  key.input.focus();
}
