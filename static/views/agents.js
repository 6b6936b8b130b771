// Agents: every agent ever seen; offline ones sorted last and marked.
import {get} from "../api.js";
import {age, badge, h, note, setAttr, setBadge, setText, syncRows} from "../dom.js";

export function mount(root) {
  const summary = h("p.muted");
  const filter = h("input", {type: "search", id: "agent-filter", placeholder: "name, host or IP"});
  const body = h("tbody");
  const loading = note("Loading…", "loading");
  const empty = note("", "empty");
  empty.hidden = true;
  let last = [];

  root.append(
    h("div.head", null, h("h1", null, "Agents"), summary),
    h("div.toolbar", null, h("label", {for: "agent-filter"}, "Filter"), filter),
    loading,
    h("div.scroll", null, h("table.grid.agents", null,
      h("thead", null, h("tr", null, h("th", null, "Status"), h("th", null, "Name"), h("th.opt", null, "Host"),
        h("th.opt", null, "IP"), h("th.opt", null, "Version"), h("th.opt", null, "Credential"),
        h("th.num", null, "Running"), h("th", null, "Last heartbeat"))),
      body)),
    empty);
  filter.addEventListener("input", () => render());

  function render() {
    const q = filter.value.trim().toLowerCase();
    const shown = q ? last.filter((a) => [a.name, a.hostname, a.ip].some((v) => (v || "").toLowerCase().includes(q))) : last;
    empty.hidden = shown.length > 0;
    setText(empty, last.length ? "No agent matches the filter." :
      "No agent has connected yet. Start one with: python3 octopus.pyz --agent --server-url URL");
    syncRows(body, shown, (a) => a.name, agentRow, updateRow);
  }

  async function refresh() {
    const {agents} = await get("/agents");
    loading.hidden = true;
    // Online first, then by name (the server sorts by name).
    last = agents.slice().sort((a, b) => (a.status === "online" ? 0 : 1) - (b.status === "online" ? 0 : 1));
    const on = agents.filter((a) => a.status === "online").length;
    setText(summary, `${on} online, ${agents.length - on} offline`);
    render();
  }
  return {refresh};
}

function agentRow(a) {
  return h("tr", null, h("td", null, badge(a.status)), h("td.strong"), h("td.opt"), h("td.opt.mono"),
    h("td.opt"), h("td.opt"), h("td.num"), h("td", null, h("time")));
}

function updateRow(tr, a) {
  const c = tr.cells;
  tr.classList.toggle("offline", a.status !== "online");
  setBadge(c[0].firstChild, a.status);
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
