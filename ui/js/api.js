// Talking to kilnd: JSON calls with the session cookie (sent by the browser) and, for calls that
// change state, the session's CSRF token; NDJSON streams read as they arrive.
let csrfToken = '';

export function setCsrf(token) { csrfToken = token || ''; }

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-Kiln-CSRF'] = csrfToken;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    throw new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText);
  }
  return data;
}

// Calls onLines(array of parsed objects) for each batch of whole lines as the response streams.
// Resolves when the stream ends; abort with `signal`.
export async function streamNdjson(path, onLines, signal) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store', signal });
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    throw new ApiError(res.status, data?.error?.code, data?.error?.message || res.statusText);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let carry = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    carry += decoder.decode(value, { stream: true });
    const nl = carry.lastIndexOf('\n');
    if (nl < 0) continue;
    const text = carry.slice(0, nl);
    carry = carry.slice(nl + 1);
    const out = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try { out.push(JSON.parse(line)); } catch { /* a line that is not JSON is skipped */ }
    }
    if (out.length) onLines(out);
  }
}
