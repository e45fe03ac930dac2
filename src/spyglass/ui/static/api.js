// The HTTP API as the browser sees it: the key header, problem documents, timing.

const KEY = 'spyglass.apiKey';

export function getKey() {
  return sessionStorage.getItem(KEY) ?? '';
}

/** Keep the key for this tab only (sessionStorage); an empty key forgets it. */
export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

const TITLES = {
  0: 'Network error',
  400: 'Bad request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  413: 'Payload too large',
  422: 'Invalid request',
  429: 'Too many requests',
  500: 'Server error',
  502: 'Bad gateway',
  503: 'Service unavailable',
  504: 'Gateway timeout',
};

/** A refusal: an RFC 9457 problem document (or what the browser could make of one). */
export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    const title = problem.title || TITLES[status] || `HTTP ${status}`;
    super(problem.detail ? `${title}: ${problem.detail}` : title);
    this.name = 'ApiError';
    this.status = status;
    this.title = title;
    this.detail = problem.detail ?? '';
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.retryAfter = retryAfter;
  }
}

/** A mistake caught before sending anything (a filter that is not JSON, a bad color). */
export class InputError extends Error {
  constructor(message, control = null) {
    super(message);
    this.name = 'InputError';
    this.control = control;
  }
}

/** The ApiError that a non-2xx response stands for. */
export async function problemOf(response) {
  let problem = {};
  const type = response.headers.get('content-type') ?? '';
  try {
    if (type.includes('json')) problem = await response.json();
    else {
      const text = (await response.text()).trim();
      if (text) problem = { detail: text.slice(0, 300) };
    }
  } catch {
    problem = {};
  }
  if (typeof problem !== 'object' || problem === null) problem = {};
  return new ApiError(response.status, problem, response.headers.get('retry-after'));
}

/**
 * Send a request with the API key; resolve to the response when it is 2xx, throw an
 * ApiError otherwise. `json` or `form` is the body. `started` is the time it left.
 */
export async function send(path, { method = 'GET', json, form, accept, signal } = {}) {
  const headers = new Headers();
  const key = getKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  if (accept) headers.set('Accept', accept);
  let body;
  if (json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal, credentials: 'omit' });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, { detail: `the server could not be reached (${error.message})` });
  }
  if (!response.ok) throw await problemOf(response);
  return { response, started };
}

/** JSON in, JSON out: {data, roundTripMs} (the round trip includes reading the body). */
export async function request(path, options = {}) {
  const { response, started } = await send(path, { accept: 'application/json', ...options });
  const data = response.status === 204 ? null : await response.json();
  return { data, roundTripMs: performance.now() - started };
}

/** A text answer (Prometheus metrics): {text, roundTripMs}. */
export async function requestText(path, options = {}) {
  const { response, started } = await send(path, options);
  const text = await response.text();
  return { text, roundTripMs: performance.now() - started };
}

/** A binary answer (a stored image). */
export async function requestBlob(path, options = {}) {
  const { response } = await send(path, options);
  return response.blob();
}
