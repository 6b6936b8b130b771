// Entry point: sign-in, hash routing and the refresh loop.
//
// Each view module exports mount(root, ctx) -> {refresh, unmount?}. The view
// builds its DOM once; refresh() fetches and updates that DOM in place. Only
// the visible view is polled, one request round at a time (the next tick is
// scheduled after the previous one finished, so a slow server never piles
// requests up).
import {api, token, whenReachable, whenUnauthorized} from "./api.js";
import * as overview from "./views/overview.js";
import * as agents from "./views/agents.js";
import * as tasks from "./views/tasks.js";
import * as newTask from "./views/new-task.js";
import * as detail from "./views/task-detail.js";

const POLL_MS = 1500;

const routes = [
  [/^\/overview$/, overview, "overview"],
  [/^\/agents$/, agents, "agents"],
  [/^\/tasks$/, tasks, "tasks"],
  [/^\/tasks\/new$/, newTask, "new"],
  [/^\/tasks\/([0-9a-f]{32})$/, detail, "tasks"],
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

function route(userNavigated) {
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
    const view = mod.mount(viewRoot, {params: m.slice(1), query});
    current = {path, view};
    document.title = (viewRoot.querySelector("h1")?.textContent || "Octopus") + " · Octopus";
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
    } catch (e) {
      if (e.status !== 401) console.warn("refresh failed:", e.message);
    } finally {
      mine.busy = false;
    }
  }
  if (current === mine && token.get() && timer === null) timer = setTimeout(tick, POLL_MS);
}

function stop() {
  clearTimeout(timer);
  timer = null;
}

// ---- sign-in -----------------------------------------------------------

function showSignin(message) {
  stop();
  current?.view.unmount?.();
  current = null;
  viewRoot.replaceChildren();
  document.querySelector("header.top").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  document.title = "Sign in · Octopus";
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

whenReachable((ok) => {
  const live = $("live");
  live.textContent = ok ? "Live" : "Cannot reach the server, retrying…";
  live.classList.toggle("down", !ok);
});

window.addEventListener("hashchange", () => token.get() && route(true));
document.addEventListener("visibilitychange", () => {
  // Catch up at once when the tab comes back rather than waiting a tick.
  if (!document.hidden && current) {
    stop();
    tick();
  }
});

if (token.get()) showApp();
else showSignin("");
