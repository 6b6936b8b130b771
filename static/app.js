// Entry point: sign-in, hash routing and the refresh loop.
//
// Each view module exports mount(root, ctx) -> {refresh, unmount?}. The view
// builds its DOM once; refresh() fetches and updates that DOM in place. Only
// the visible view is polled, one request round at a time (the next tick is
// scheduled after the previous one finished, so a slow server never piles
// requests up).
import {api, token, whenReachable, whenUnauthorized} from "./api.js";
import {h, setText} from "./dom.js";
import * as overview from "./views/overview.js";
import * as agents from "./views/agents.js";
import * as tasks from "./views/tasks.js";
import * as newTask from "./views/new-task.js";
import * as detail from "./views/task-detail.js";
import * as plugins from "./views/plugins.js";
import * as audit from "./views/audit.js";

const POLL_MS = 1500;
const STALE_MS = 5000; // "Live" greys out when the last answer is older than this

const routes = [
  [/^\/overview$/, overview, "overview"],
  [/^\/agents$/, agents, "agents"],
  [/^\/tasks$/, tasks, "tasks"],
  [/^\/tasks\/new$/, newTask, "new"],
  [/^\/tasks\/([0-9a-f]{32})$/, detail, "tasks"],
  [/^\/plugins$/, plugins, "plugins"],
  [/^\/audit$/, audit, "audit"],
];

const $ = (id) => document.getElementById(id);
const viewRoot = $("view");
let current = null; // {path, view}
let timer = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/overview";
  const [path, query = ""] = raw.split("?");
  return {path, query: new URLSearchParams(query)};
}

function setTitle(text) {
  document.title = text ? text + " · Octopus" : "Octopus";
}

function route(userNavigated) {
  // In-page anchors (the skip link, "#view") are not routes.
  if (current && location.hash && !location.hash.startsWith("#/")) return;
  const {path, query} = parseHash();
  stop();
  current?.view.unmount?.();
  viewRoot.replaceChildren();
  for (const [re, mod, nav] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const banner = h("p", {class: "banner error", role: "alert"});
    const entry = {path, view: null, banner, fieldError: null};
    // A view's own out-of-tick refresh (a filter changed) reports its outcome here.
    const report = (e) => settle(entry, e);
    const view = entry.view = mod.mount(viewRoot, {params: m.slice(1), query, setTitle, report});
    // The banner goes under the view's heading (before everything when it has none).
    const head = viewRoot.querySelector(".head");
    if (head) head.after(banner);
    else viewRoot.prepend(banner);
    current = entry;
    lastRefresh = Date.now();
    if (!view.ownsTitle) setTitle(viewRoot.querySelector("h1")?.textContent || "");
    if (userNavigated) viewRoot.focus({preventScroll: true});
    tick();
    return;
  }
  location.replace("#/overview");
}

async function tick() {
  timer = null;
  const mine = current;
  if (!mine || mine.busy) return;
  if (!document.hidden) {
    mine.busy = true;
    try {
      await mine.view.refresh?.();
      lastRefresh = Date.now();
      settle(mine, null);
    } catch (e) {
      if (e.status > 0) lastRefresh = Date.now(); // the server answered, if not well
      settle(mine, e);
    } finally {
      mine.busy = false;
    }
  }
  if (current === mine && token.get() && timer === null) timer = setTimeout(tick, POLL_MS);
}

/**
 * The outcome of a refresh of `entry` (e: what it threw, null when it worked),
 * shown while that view is the current one. A 401 goes to sign-in instead, and
 * an aborted request was superseded by a newer one.
 */
function settle(entry, e) {
  if (current === entry && (!e || (e.status !== 401 && !e.aborted))) showRefreshError(entry, e);
}

/**
 * A refresh that failed says so until one succeeds: next to the control the
 * error names (a search too long), else in a banner at the top of the view.
 */
function showRefreshError(view, e) {
  const control = e?.field && viewRoot.querySelector(`[name="${CSS.escape(e.field)}"]`);
  if (view.fieldError && view.fieldError.control !== control) {
    view.fieldError.control.removeAttribute("aria-invalid");
    view.fieldError.slot.remove();
    view.fieldError = null;
  }
  if (control) {
    if (!view.fieldError) {
      const slot = h("p", {class: "field-error", role: "alert", id: (control.id || e.field) + "-error"});
      (control.closest(".field") || control.parentElement).append(slot);
      view.fieldError = {control, slot};
    }
    control.setAttribute("aria-invalid", "true");
    setText(view.fieldError.slot, e.message);
    setText(view.banner, "");
    return;
  }
  setText(view.banner, !e ? "" : e.status === 0 ? "" : // unreachable: the header says so
    `The server answered: ${e.message}`);
}

function stop() {
  clearTimeout(timer);
  timer = null;
}

// ---- sign-in -----------------------------------------------------------

function showSignin(message) {
  const again = !$("signin").hidden; // a second 401 must not wipe what is being typed
  stop();
  current?.view.unmount?.();
  current = null;
  viewRoot.replaceChildren();
  document.querySelector("header.top").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  setTitle("Sign in");
  if (again) return;
  $("token").value = "";
  $("token").focus();
}

function showApp() {
  $("signin").hidden = true;
  document.querySelector("header.top").hidden = false;
  route(false);
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  const err = $("signin-error");
  if (!t) {
    err.textContent = "Enter the admin token.";
    return;
  }
  err.textContent = "";
  const button = ev.target.querySelector("button");
  button.disabled = true;
  try {
    // Check the token on an admin route before keeping it.
    await api("GET", "/stats", {auth: t, params: {buckets: 1}});
    token.set(t);
    showApp();
  } catch (e) {
    err.textContent = e.status === 401 ? "The token was refused." :
      e.status === 403 ? "That is an agent token; the dashboard needs the admin token." : e.message;
    $("token").select();
  } finally {
    button.disabled = false;
  }
});

$("signout").addEventListener("click", () => {
  token.clear();
  showSignin("Signed out.");
});

whenUnauthorized(() => {
  token.clear();
  showSignin("The token was refused; sign in again.");
});

// The indicator's words change only when the state does (it is a live region):
// live, stale (no answer for a while: a hung server) or down.
let lastRefresh = 0;
let liveState = "";
function showLive(state) {
  if (state === liveState) return;
  liveState = state;
  const live = $("live");
  live.textContent = {live: "Live", stale: "Waiting for the server…", down: "Cannot reach the server, retrying…"}[state];
  live.classList.toggle("down", state === "down");
  live.classList.toggle("stale", state === "stale");
}
whenReachable((ok) => showLive(ok ? "live" : "down"));
setInterval(() => {
  if (liveState === "live" && current && !document.hidden && Date.now() - lastRefresh > STALE_MS) showLive("stale");
}, 1000);

$("skip").addEventListener("click", (ev) => {
  ev.preventDefault(); // not a route: keep the view, its filters and what was typed
  viewRoot.focus();
});

window.addEventListener("hashchange", () => token.get() && route(true));
document.addEventListener("visibilitychange", () => {
  // Catch up at once when the tab comes back rather than waiting a tick.
  if (!document.hidden && current) {
    lastRefresh = Date.now();
    stop();
    tick();
  }
});

if (token.get()) showApp();
else showSignin("");
