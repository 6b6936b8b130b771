// Audit: who changed what, newest first; paged back with the server's cursor
// (next_before), filtered by action and by who did it. The filters live in the
// URL hash like the task list's.
import {get} from "../api.js";
import {brief, h, note, options, setText, timeCell, syncRows} from "../dom.js";

const PAGE = 50;
const ACTIONS = ["task.create", "task.update", "task.cancel", "task.delete", "plugin.upload",
  "agent.enroll", "agent.renew", "agent.revoke", "agent.forget"];

export function mount(root, {query, report}) {
  const state = {action: query.get("action") || "", actor: query.get("actor") || ""};
  const pages = []; // cursors of the pages before this one (undefined: the newest)
  let before = undefined;
  const action = h("select", {id: "a-action", name: "action"}, h("option", {value: ""}, "Any action"),
    options(ACTIONS));
  const actor = h("input", {type: "text", id: "a-actor", name: "actor", placeholder: "admin, an agent…",
    autocomplete: "off", spellcheck: "false"});
  const body = h("tbody");
  const loading = note("Loading…", "loading");
  const empty = note("", "empty");
  empty.hidden = true;
  const newer = h("button", {type: "button"}, "← Newer");
  const older = h("button", {type: "button"}, "Older →");
  const field = (el, text) => h("div.field", null, h("label", {for: el.id}, text), el);

  root.append(
    h("div.head", null, h("h1", null, "Audit log"),
      h("p.muted", null, "Every change made through the API: who, from where, when.")),
    h("form.filters", {role: "search", onsubmit: (e) => e.preventDefault()},
      field(action, "Action"), field(actor, "By")),
    loading,
    h("div.scroll", null, h("table.grid.audit", null,
      h("thead", null, h("tr", null, h("th", null, "When"), h("th", null, "Action"), h("th", null, "What"),
        h("th", null, "By"), h("th.opt", null, "From"), h("th.opt", null, "Detail"))),
      body)),
    empty,
    h("div.pager", null, newer, older));

  action.value = state.action;
  actor.value = state.actor;
  function apply() {
    if (state.action === action.value && state.actor === actor.value.trim()) return;
    state.action = action.value;
    state.actor = actor.value.trim();
    pages.length = 0;
    before = undefined;
    changed();
  }
  action.addEventListener("change", apply);
  actor.addEventListener("change", apply);
  actor.addEventListener("keydown", (e) => e.key === "Enter" && apply());
  older.addEventListener("click", () => { pages.push(before); before = older.dataset.before; changed(); });
  newer.addEventListener("click", () => { before = pages.pop(); changed(); });

  function changed() {
    const q = new URLSearchParams();
    for (const f of ["action", "actor"]) if (state[f]) q.set(f, state[f]);
    history.replaceState(null, "", "#/audit" + (q.toString() ? "?" + q : ""));
    refresh().then(() => report(null), report);
  }

  let seq = 0;
  async function refresh() {
    const mine = ++seq;
    const params = {limit: PAGE};
    if (before) params.before = before;
    for (const f of ["action", "actor"]) if (state[f]) params[f] = state[f];
    const data = await get("/audit", params);
    if (mine !== seq) return;
    loading.hidden = true;
    empty.hidden = data.entries.length > 0;
    setText(empty, state.action || state.actor ? "No entry matches these filters." :
      "Nothing has been changed yet.");
    newer.disabled = before === undefined;
    older.disabled = !data.next_before;
    older.dataset.before = data.next_before || "";
    syncRows(body, data.entries, (e) => String(e.id), entryRow, updateRow);
  }
  return {refresh, unmount: () => { seq++; }};
}

function entryRow() {
  return h("tr", null, h("td", null, h("time")), h("td.mono"), h("td"), h("td"), h("td.opt.mono"),
    h("td.opt.muted"));
}

function updateRow(tr, e) {
  const c = tr.cells;
  timeCell(c[0].firstChild, e.at);
  setText(c[1], e.action);
  const isTask = e.action.startsWith("task.") && /^[0-9a-f]{32}$/.test(e.target || "");
  if (isTask && e.action !== "task.delete") {
    if (!c[2].firstChild || c[2].firstChild.tagName !== "A") c[2].replaceChildren(h("a.mono"));
    c[2].firstChild.href = "#/tasks/" + e.target;
    setText(c[2].firstChild, e.target);
  } else {
    setText(c[2], e.target || "—");
  }
  setText(c[3], e.actor === e.role ? e.actor : `${e.actor} (${e.role})`);
  setText(c[4], e.address || "—");
  setText(c[5], e.detail == null ? "" : brief(e.detail, 120));
}
