// The console's only way to the server: the public JSON API, with the key
// from sessionStorage in the X-Api-Key header. The key never goes into a
// URL, a log line or localStorage.

const KEY = 'sandpit.apiKey';
export const SANDBOXES = '/api/v2/sandboxes';

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetApiKey() {
  sessionStorage.removeItem(KEY);
}

/** An error as the API returned it: HTTP status, `detail.error`, `detail.message`. */
export class ApiError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }

  describe() {
    return `${this.status} ${this.kind}: ${this.message}`;
  }
}

function errorFrom(status, body, text) {
  const detail = body && body.detail;
  if (detail && typeof detail === 'object' && !Array.isArray(detail)) {
    return new ApiError(status, detail.error || 'Error', detail.message || JSON.stringify(detail));
  }
  if (typeof detail === 'string') return new ApiError(status, 'Error', detail);
  return new ApiError(status, 'Error', text || `HTTP ${status}`);
}

/** Call the API; resolves to the parsed body (null for 204), rejects with ApiError. */
export async function api(method, path, body, key = apiKey()) {
  const headers = { 'X-Api-Key': key || '' };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'NetworkError', `Cannot reach the server (${e.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const error = errorFrom(response.status, parsed, text);
    if (response.status === 401 && key === apiKey()) {
      window.dispatchEvent(new CustomEvent('sandpit:unauthorized', { detail: error }));
    }
    throw error;
  }
  return parsed;
}

/** `/api/v2/sandboxes/...` with each path segment escaped. */
export function path(...segments) {
  return [SANDBOXES, ...segments.map(encodeURIComponent)].join('/');
}
