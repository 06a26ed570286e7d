// Requests to the server: every one carries the page's ?token= (the server printed the address with it).
// docs/api.md describes the endpoints.

export const token = new URLSearchParams(location.search).get('token');
const base = new URL('.', location.href);

export function url(path) {
  const u = new URL(String(path).replace(/^\/+/, ''), base);
  if (token) u.searchParams.set('token', token);
  return u;
}

export function wsUrl(path) {
  const u = url(path);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

export const api = (path, opts) => fetch(url(path), opts);

// The JSON answer; an Error with the server's message for any other status.
export async function apiJson(path, opts) {
  const response = await api(path, opts);
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: the status says enough */ }
  if (!response.ok) throw new Error(body?.error || `${response.status} ${response.statusText} (${path})`);
  return body;
}
