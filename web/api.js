// Requests to Strata's HTTP API. Every request belongs to a "slot"; starting a new request in
// a slot aborts the one before, so a slow answer to an old query never overwrites a newer one.

const controllers = new Map();

/** An API error with the server's message and type, shown to the user where it happened. */
export class ApiError extends Error {
  constructor(message, type, status) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

/**
 * GET `path` with `params` (arrays repeat the key) and return `data` of the Prometheus-shaped
 * reply. Throws ApiError on an error reply; throws an AbortError when superseded.
 */
export async function api(path, params = {}, slot = null) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
    else qs.append(k, String(v));
  }
  let signal;
  if (slot) {
    controllers.get(slot)?.abort();
    const c = new AbortController();
    controllers.set(slot, c);
    signal = c.signal;
  }
  const url = path + (qs.toString() ? '?' + qs : '');
  let res;
  try {
    res = await fetch(url, { signal, headers: { Accept: 'application/json' } });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(`cannot reach the server: ${e.message}`, 'network', 0);
  }
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(`HTTP ${res.status}: ${text.slice(0, 300)}`, 'bad_response', res.status);
  }
  if (!res.ok || body.status === 'error') {
    throw new ApiError(body.error || `HTTP ${res.status}`, body.errorType || 'error', res.status);
  }
  return body.data;
}

/** POST to `path` (no body); returns `data` of a JSON reply, or null for an empty one. */
export async function post(path) {
  const res = await fetch(path, { method: 'POST' });
  const textBody = await res.text();
  let body = null;
  try { body = textBody ? JSON.parse(textBody) : null; } catch { body = null; }
  if (!res.ok || body?.status === 'error') {
    throw new ApiError(body?.error || `HTTP ${res.status}: ${textBody.slice(0, 300)}`, body?.errorType || 'error', res.status);
  }
  return body?.data ?? null;
}

/** GET a text endpoint such as /metrics. */
export async function text(path, slot = null) {
  let signal;
  if (slot) {
    controllers.get(slot)?.abort();
    const c = new AbortController();
    controllers.set(slot, c);
    signal = c.signal;
  }
  const res = await fetch(path, { signal });
  if (!res.ok) throw new ApiError(`HTTP ${res.status}`, 'error', res.status);
  return res.text();
}

/** True for the error thrown when a request was superseded (not worth showing). */
export function isAbort(e) {
  return e && e.name === 'AbortError';
}
