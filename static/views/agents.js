// Agents: every agent the server knows, by name, paged and filtered on the
// server (GET /agents: a fleet can be tens of thousands); the filters live in
// the URL hash so a filtered page can be linked to.
import {get} from "../api.js";
import {age, badge, h, note, setAttr, setBadge, setText, syncRows} from "../dom.js";

const PAGE = 50;

export function mount(root, {query, report}) {
  const state = {prefix: query.get("prefix") || "", status: query.get("status") || "",
    offset: Math.max(0, parseInt(query.get("offset") || "0", 10) || 0)};
  const summary = h("p.muted");
  const prefix = h("input", {type: "search", id: "agent-filter", name: "prefix", placeholder: "name starts with…",
    autocomplete: "off", spellcheck: "false"});
  const status = h("select", {id: "agent-status", name: "status"}, h("option", {value: ""}, "Any status"),
    h("option", {value: "online"}, "online"), h("option", {value: "offline"}, "offline"));
  const body = h("tbody");
  const loading = note("Loading…", "loading");
  const empty = note("", "empty");
  empty.hidden = true;
  const range = h("span.muted", {"aria-live": "polite"});
  const prev = h("button", {type: "button"}, "← Previous");
  const next = h("button", {type: "button"}, "Next →");

  root.append(
    h("div.head", null, h("h1", null, "Agents"), summary),
    h("form.filters", {role: "search", onsubmit: (e) => e.preventDefault()},
      h("div.field", null, h("label", {for: "agent-filter"}, "Name"), prefix),
      h("div.field", null, h("label", {for: "agent-status"}, "Status"), status)),
    loading,
    h("div.scroll", null, h("table.grid.agents", null,
      h("thead", null, h("tr", null, h("th", null, "Status"), h("th", null, "Name"), h("th.opt", null, "Host"),
        h("th.opt", null, "IP"), h("th.opt", null, "Version"), h("th.opt", null, "Credential"),
        h("th.num", null, "Running"), h("th", null, "Last heartbeat"))),
      body)),
    empty,
    h("div.pager", null, prev, range, next));

  prefix.value = state.prefix;
  status.value = state.status;
  let debounce = null;
  prefix.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => apply("prefix", prefix.value.trim()), 300);
  });
  status.addEventListener("change", () => apply("status", status.value));
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); changed(); });
  next.addEventListener("click", () => { state.offset += PAGE; changed(); });

  function apply(field, value) {
    if (state[field] === value) return;
    state[field] = value;
    state.offset = 0;
    changed();
  }

  function changed() {
    const q = new URLSearchParams();
    for (const f of ["prefix", "status", "offset"]) if (state[f]) q.set(f, state[f]);
    history.replaceState(null, "", "#/agents" + (q.toString() ? "?" + q : ""));
    refresh().then(() => report(null), report);
  }

  let seq = 0;
  async function refresh() {
    const mine = ++seq;
    const params = {limit: PAGE, offset: state.offset};
    if (state.prefix) params.prefix = state.prefix;
    if (state.status) params.status = state.status;
    // The page, and the fleet's online count (a one-row page: its total).
    const [data, online, all] = await Promise.all([get("/agents", params),
      get("/agents", {status: "online", limit: 1}), get("/agents", {limit: 1})]);
    if (mine !== seq) return; // a newer filter's answer is on its way
    loading.hidden = true;
    if (!data.agents.length && state.offset && data.total) { // the page emptied under us
      state.offset = Math.max(0, Math.floor((data.total - 1) / PAGE) * PAGE);
      return changed();
    }
    setText(summary, `${online.total.toLocaleString()} online, ${(all.total - online.total).toLocaleString()} offline`);
    const filtered = Boolean(state.prefix || state.status);
    empty.hidden = data.agents.length > 0;
    setText(empty, filtered ? "No agent matches the filter." :
      "No agent has connected yet. Start one with: python3 octopus.pyz --agent --server-url URL");
    setText(range, data.total ? `${(state.offset + 1).toLocaleString()}–${(state.offset + data.agents.length).toLocaleString()} of ${data.total.toLocaleString()}` : "");
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + data.agents.length >= data.total;
    syncRows(body, data.agents, (a) => a.name, agentRow, updateRow);
  }
  return {refresh, unmount: () => { seq++; clearTimeout(debounce); }};
}

function agentRow(a) {
  return h("tr", null, h("td", null, badge(a.status)), h("td.strong"), h("td.opt"), h("td.opt.mono"),
    h("td.opt"), h("td.opt"), h("td.num"), h("td", null, h("time")));
}

function updateRow(tr, a) {
  const c = tr.cells;
  tr.classList.toggle("offline", a.status !== "online");
  setBadge(c[0].firstChild, a.status);
  // Online but never asked for work (a script that only heartbeats): it gets no runs.
  setAttr(c[0], "title", a.status === "online" && !a.takes_work ? "Online, but it has not asked for work: it gets no runs" : null);
  setText(c[1], a.name);
  setText(c[2], a.hostname);
  setText(c[3], a.ip);
  setText(c[4], a.version || "—");
  // enrolled: it has its own token; revoked: refused; none: it uses the shared token.
  setText(c[5], a.credential || "none");
  setAttr(c[5], "title", a.revoked_at ? "Revoked " + a.revoked_at : a.enrolled_at ? "Enrolled " + a.enrolled_at : null);
  setText(c[6], a.concurrency ? `${a.running} / ${a.concurrency}` : a.running);
  setAttr(c[6], "title", a.concurrency ? `${a.running} runs going; runs ${a.concurrency} at once` : null);
  const t = c[7].firstChild;
  setText(t, age(a.last_heartbeat));
  setAttr(t, "title", a.last_heartbeat);
  setAttr(t, "datetime", a.last_heartbeat);
}
