// The one way the dashboard talks to the server: JSON over fetch with the
// admin token. A 401 anywhere hands control back to the sign-in screen.
import {setClockOffset} from "./dom.js";

const KEY = "octopus.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || null;
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/** Fires with true/false as the server becomes unreachable or reachable again. */
let onReachable = () => {};
export function whenReachable(fn) {
  onReachable = fn;
}

export async function api(method, path, {body, params, auth} = {}) {
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    if ([...q].length) path += "?" + q;
  }
  const headers = {Authorization: "Bearer " + (auth ?? token.get() ?? "")};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                              cache: "no-store"});
  } catch (e) {
    onReachable(false);
    throw new ApiError(0, "Cannot reach the server.");
  }
  onReachable(true);
  const date = resp.headers.get("Date");
  if (date) setClockOffset(Date.parse(date) + 500 - Date.now());
  const text = await resp.text();
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

export const get = (path, params) => api("GET", path, {params});
