// The one way the dashboard talks to the server: JSON over fetch with the
// admin token. A 401 anywhere hands control back to the sign-in screen.
import {setClockOffset} from "./dom.js";

const KEY = "octopus.token";
/** A request the server has not answered by then is given up (and the server called unreachable). */
export const REQUEST_TIMEOUT_MS = 10_000;

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** status 0: no answer (network down or timed out); `aborted`: the caller gave the request up. */
class ApiError extends Error {
  constructor(status, message, field, aborted = false) {
    super(message);
    this.status = status;
    this.field = field || null;
    this.aborted = aborted;
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/** Fires with true after every answer and false after every request that got none. */
let onReachable = () => {};
export function whenReachable(fn) {
  onReachable = fn;
}

/** `signal`: an AbortSignal of the caller's, to drop a request a newer one supersedes. */
export async function api(method, path, {body, params, auth, signal} = {}) {
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    if ([...q].length) path += "?" + q;
  }
  const headers = {Authorization: "Bearer " + (auth ?? token.get() ?? "")};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const ctrl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; ctrl.abort(); }, REQUEST_TIMEOUT_MS);
  const drop = () => ctrl.abort();
  if (signal?.aborted) drop();
  signal?.addEventListener("abort", drop);
  let resp, text;
  try {
    resp = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                              cache: "no-store", signal: ctrl.signal});
    text = await resp.text();
  } catch (e) {
    if (!timedOut && signal?.aborted) throw new ApiError(-1, "Superseded.", null, true);
    onReachable(false);
    throw new ApiError(0, timedOut ? "The server did not answer in time." : "Cannot reach the server.");
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", drop);
  }
  onReachable(true);
  const date = resp.headers.get("Date");
  if (date) setClockOffset(Date.parse(date) + 500 - Date.now());
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (resp.ok) return data;
  const err = data?.error || {};
  const error = new ApiError(resp.status, err.message || `${resp.status} ${resp.statusText}`, err.field);
  if (resp.status === 401 && auth === undefined) onUnauthorized();
  throw error;
}

export const get = (path, params, signal) => api("GET", path, {params, signal});
