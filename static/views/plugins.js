// Plugins: what the server serves to agents, with each action's signature and
// docstring. Rebuilt only when the plugins' digest changes (an upload, a file
// changed in the plugins folder), so a refresh costs one small request.
import {get} from "../api.js";
import {h, note, setText} from "../dom.js";

export function mount(root) {
  const summary = h("p.muted");
  const list = h("div.plugins");
  const loading = note("Loading…", "loading");
  let digest = null;

  root.append(h("div.head", null, h("h1", null, "Plugins"), summary), loading, list);

  async function refresh() {
    const listing = await get("/plugins");
    loading.hidden = true;
    if (listing.digest === digest) return;
    digest = listing.digest;
    const plugins = listing.plugins;
    setText(summary, `${plugins.length} plugin${plugins.length === 1 ? "" : "s"}; upload one with ` +
      "python3 octopus.pyz plugins push FILE");
    list.replaceChildren(...plugins.map(pluginCard));
    if (!plugins.length) list.append(note("The server has no plugin.", "empty"));
  }
  return {refresh};
}

function pluginCard(p) {
  const actions = (p.action_docs || []).map((a) => h("tr", null,
    h("td.mono", null, a.name + (a.signature || "")),
    h("td", null, a.doc || "—")));
  return h("section.card.plugin", {id: "plugin-" + p.name},
    h("h2", null, p.name, " ", h("span.mono.muted", {title: "sha256 " + p.sha256}, p.sha256.slice(0, 12))),
    p.doc ? h("p", null, p.doc) : null,
    h("div.scroll", null, h("table.grid", null,
      h("thead", null, h("tr", null, h("th", null, "Action"), h("th", null, "What it does"))),
      h("tbody", null, ...actions))));
}
