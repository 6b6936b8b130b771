// Tasks: filtered, searched and paged on the server; the filters live in the
// URL hash so a filtered list can be linked to and survives a reload.
import {get} from "../api.js";
import {badge, choose, h, note, options, setAttr, setBadge, setText, shortId, syncRows, timeCell} from "../dom.js";
import {BROADCAST_OWNERS, TASK_STATUSES, TASK_TYPES, showsNextRun, waitingFor} from "../model.js";

const PAGE = 50;
const FILTERS = ["status", "type", "owner", "plugin", "q"];

export function mount(root, {query, report}) {
  const state = Object.fromEntries(FILTERS.map((f) => [f, query.get(f) || ""]));
  state.offset = Math.max(0, parseInt(query.get("offset") || "0", 10) || 0);

  const select = (id, first, values) =>
    h("select", {id, name: id}, h("option", {value: ""}, first), options(values));
  const fields = {
    q: h("input", {type: "search", id: "f-q", name: "q", placeholder: "id, plugin, args…"}),
    status: select("f-status", "Any status", TASK_STATUSES),
    type: select("f-type", "Any type", TASK_TYPES),
    owner: h("input", {type: "text", id: "f-owner", name: "owner", list: "owners", placeholder: "Any owner",
      autocomplete: "off", spellcheck: "false"}),
    plugin: select("f-plugin", "Any plugin", []),
  };
  const owners = h("datalist", {id: "owners"}, BROADCAST_OWNERS.map((o) => h("option", {value: o})));
  const label = (f, text) => h("div.field", null, h("label", {for: fields[f].id}, text), fields[f]);
  const body = h("tbody");
  const loading = note("Loading…", "loading");
  const empty = note("", "empty");
  empty.hidden = true;
  const range = h("span.muted", {"aria-live": "polite"});
  const prev = h("button", {type: "button"}, "← Newer");
  const next = h("button", {type: "button"}, "Older →");
  const clear = h("button.link", {type: "button"}, "Clear filters");

  root.append(
    h("div.head", null, h("h1", null, "Tasks"), h("a.button.primary", {href: "#/tasks/new"}, "New task")),
    h("form.filters", {role: "search", onsubmit: (e) => e.preventDefault()},
      label("q", "Search"), label("status", "Status"), label("type", "Type"), label("owner", "Owner"),
      label("plugin", "Plugin"), clear, owners),
    loading,
    h("div.scroll", null, h("table.grid.tasks", null,
      h("thead", null, h("tr", null, h("th", null, "Status"), h("th", null, "Task"), h("th", null, "Owner"),
        h("th.opt", null, "Type"), h("th.opt", null, "Ran on"), h("th.opt", null, "Next run"),
        h("th", null, "Created"))),
      body)),
    empty,
    h("div.pager", null, prev, range, next));

  // A status from the URL that is not one of ours (a typo, an older link) is shown, not silently dropped.
  if (state.status) choose(fields.status, state.status);
  for (const f of FILTERS) fields[f].value = state[f];
  let debounce = null;
  function apply(f) {
    clearTimeout(debounce);
    if (state[f] === fields[f].value.trim()) return;
    state[f] = fields[f].value.trim();
    state.offset = 0;
    changed();
  }
  // Search: as you type, once you pause. Owner (an exact name): on change or
  // Enter, so half a name never filters the list. Selects: at once.
  fields.q.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => apply("q"), 300);
  });
  fields.q.addEventListener("keydown", (e) => e.key === "Enter" && apply("q"));
  fields.owner.addEventListener("change", () => apply("owner"));
  fields.owner.addEventListener("keydown", (e) => e.key === "Enter" && apply("owner"));
  for (const f of ["status", "type", "plugin"]) fields[f].addEventListener("change", () => apply(f));
  clear.addEventListener("click", () => {
    for (const f of FILTERS) fields[f].value = state[f] = "";
    state.offset = 0;
    changed();
  });
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); changed(); });
  next.addEventListener("click", () => { state.offset += PAGE; changed(); });

  // Choices for the plugin and owner filters, fetched once.
  get("/plugins").then(({plugins}) => {
    fields.plugin.append(...options(plugins.map((p) => p.name)));
    fields.plugin.value = state.plugin;
  }).catch(() => {});
  get("/agents").then(({agents}) => owners.append(...agents.map((a) => h("option", {value: a.name})))).catch(() => {});

  function changed() {
    const q = new URLSearchParams();
    for (const f of FILTERS) if (state[f]) q.set(f, state[f]);
    if (state.offset) q.set("offset", state.offset);
    // replaceState: no hashchange, so the view (and the focused input) stays.
    history.replaceState(null, "", "#/tasks" + (q.toString() ? "?" + q : ""));
    refresh().then(() => report(null), report);
  }

  let seq = 0;
  let inflight = null;
  async function refresh() {
    const mine = ++seq;
    inflight?.abort(); // a newer filter supersedes the request on its way
    const ctrl = inflight = new AbortController();
    const params = {limit: PAGE, offset: state.offset};
    for (const f of FILTERS) if (state[f]) params[f] = state[f];
    let data;
    try {
      data = await get("/tasks", params, ctrl.signal);
    } finally {
      if (inflight === ctrl) inflight = null;
    }
    if (mine !== seq) return; // a newer filter's answer is on its way
    loading.hidden = true;
    if (!data.tasks.length && state.offset && data.total) { // the page emptied under us
      state.offset = Math.max(0, Math.floor((data.total - 1) / PAGE) * PAGE);
      return changed();
    }
    const filtered = FILTERS.some((f) => state[f]);
    empty.hidden = data.tasks.length > 0;
    if (empty.dataset.kind !== String(filtered)) { // rebuilt only when it changes, keeping focus
      empty.dataset.kind = String(filtered);
      empty.replaceChildren(filtered ? "No task matches these filters." :
        h("span", null, "No tasks yet. ", h("a", {href: "#/tasks/new"}, "Create the first one")));
    }
    setText(range, data.total ? `${(state.offset + 1).toLocaleString()}–${(state.offset + data.tasks.length).toLocaleString()} of ${data.total.toLocaleString()}` : "");
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + data.tasks.length >= data.total;
    clear.hidden = !filtered;
    syncRows(body, data.tasks, (t) => t.id, taskRow, updateRow);
  }
  return {refresh, unmount: () => { seq++; clearTimeout(debounce); inflight?.abort(); }};
}

function taskRow(t) {
  const link = h("a", {href: "#/tasks/" + t.id}, h("span.what"), " ", h("span.mono.muted", null, shortId(t.id)));
  return h("tr", null, h("td", null, badge(t.status)), h("td", null, link), h("td"), h("td.opt"), h("td.opt"),
    h("td.opt", null, h("time")), h("td", null, h("time")));
}

function updateRow(tr, t) {
  const c = tr.cells;
  setBadge(c[0].firstChild, t.status);
  setText(c[1].querySelector(".what"), `${t.plugin}.${t.action}`);
  setText(c[2], t.owner);
  setText(c[3], t.type === "Adhoc" ? "Adhoc" : `${t.type} · ${t.type === "Interval" ? t.interval + " s" : t.interval}`);
  setText(c[4], t.executor || "");
  const waiting = waitingFor(t);
  if (waiting) {
    setText(c[5].firstChild, waiting);
    setAttr(c[5].firstChild, "title", "Due " + t.next_run_at);
  } else {
    timeCell(c[5].firstChild, showsNextRun(t) ? t.next_run_at : null);
  }
  timeCell(c[6].firstChild, t.created_at);
}
