// Overview: tasks by status, agents, runs of the last hour, latest failures.
import {get} from "../api.js";
import {badge, brief, h, note, setAttr, setBadge, setText, shortId, syncRows, timeCell} from "../dom.js";
import {TASK_STATUSES} from "../model.js";

const TASK_ORDER = [...TASK_STATUSES, "completed"];
const RUN_OUTCOMES = ["success", "failed", "timeout", "cancelled", "lost", "skipped"];
const FAILURES = ["failed", "timeout", "lost"];
const SVG = "http://www.w3.org/2000/svg";
const H = 180, PAD_L = 34, PAD_B = 22, PAD_T = 10;

export function mount(root) {
  const taskList = h("ul.counts");
  const totalEl = h("span");
  const online = h("strong.big.ok");
  const offline = h("strong.big");
  const running = h("strong.big");
  const chart = buildChart();
  const failBody = h("tbody");
  const failEmpty = note("No failed, timed-out or lost runs.", "empty");
  const status = note("Loading…", "loading");

  root.append(
    h("div.head", null, h("h1", null, "Overview"), status),
    h("div.cards", null,
      h("section.card", {"aria-labelledby": "ov-tasks"},
        h("h2", {id: "ov-tasks"}, "Tasks ", h("span.muted", null, totalEl)), taskList,
        h("a.more", {href: "#/tasks"}, "All tasks →")),
      h("section.card", {"aria-labelledby": "ov-agents"},
        h("h2", {id: "ov-agents"}, "Agents"),
        h("p.pair", null, online, " online"), h("p.pair", null, offline, " offline"),
        h("a.more", {href: "#/agents"}, "See agents →")),
      h("section.card", {"aria-labelledby": "ov-running"},
        h("h2", {id: "ov-running"}, "Runs going"),
        h("p.pair", null, running, " assigned or running"),
        h("a.more", {href: "#/tasks?status=Active"}, "Active tasks →"))),
    h("section.panel", {"aria-labelledby": "ov-chart"},
      h("h2", {id: "ov-chart"}, "Runs in the last hour, by outcome"), chart.svg, chart.legend),
    h("section.panel", {"aria-labelledby": "ov-fail"},
      h("h2", {id: "ov-fail"}, "Latest failures"),
      h("div.scroll", null, h("table.grid", null,
        h("thead", null, h("tr", null, h("th", null, "Finished"), h("th", null, "Status"),
          h("th", null, "Task"), h("th.opt", null, "Agent"), h("th.grow", null, "Error"))),
        failBody)),
      failEmpty));

  async function refresh() {
    const [stats, ...lists] = await Promise.all([
      get("/stats", {hours: 1, buckets: 12}),
      ...FAILURES.map((s) => get("/executions", {status: s, limit: 5})),
    ]);
    status.hidden = true;
    renderCounts(taskList, totalEl, stats.tasks);
    setText(online, stats.agents.online);
    setText(offline, stats.agents.offline);
    offline.classList.toggle("bad", stats.agents.offline > 0);
    setText(running, stats.running);
    chart.update(stats.runs);
    const when = (r) => r.finished_at || r.updated_at;
    const fails = lists.flatMap((l) => l.executions).sort((a, b) => when(b).localeCompare(when(a))).slice(0, 5);
    failEmpty.hidden = fails.length > 0;
    syncRows(failBody, fails, (r) => r.id, failureRow, (tr, r) => {
      timeCell(tr.cells[0].firstChild, when(r));
      setBadge(tr.cells[1].firstChild, r.status);
      setText(tr.cells[3], r.client);
      const err = r.result?.error?.message ?? r.result?.error?.type ?? brief(r.result);
      setText(tr.cells[4], brief(err, 120));
      setAttr(tr.cells[4], "title", typeof err === "string" ? err : null);
    });
  }
  return {refresh};
}

function failureRow(r) {
  return h("tr", null, h("td", null, h("time")), h("td", null, badge(r.status)),
    h("td", null, h("a.mono", {href: "#/tasks/" + r.task_id}, shortId(r.task_id))),
    h("td.opt"), h("td.wrap"));
}

function renderCounts(list, totalEl, counts) {
  const names = [...TASK_ORDER.filter((s) => s in counts), ...Object.keys(counts).filter((s) => !TASK_ORDER.includes(s))];
  let total = 0;
  for (const n of names) total += counts[n];
  setText(totalEl, total ? total.toLocaleString() : "");
  if (!names.length) {
    list.replaceChildren(h("li.muted", null, "No tasks yet. ", h("a", {href: "#/tasks/new"}, "Create one")));
    list._items = null;
    return;
  }
  const key = names.join();
  if (list._items !== key) { // rebuild only when the set of statuses changes
    list._items = key;
    list.replaceChildren(...names.map((n) =>
      h("li", null, h("a", {href: "#/tasks?status=" + encodeURIComponent(n)}, badge(n), h("span.n")))));
  }
  names.forEach((n, i) => setText(list.children[i].querySelector(".n"), counts[n].toLocaleString()));
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

/** A stacked bar chart whose rects are made once and resized on refresh. */
function buildChart() {
  // Drawn in CSS pixels at the chart's current width, so labels stay legible on any screen.
  const root = svg("svg", {class: "chart", role: "img", height: H});
  const title = svg("title");
  root.append(title);
  const maxLabel = svg("text", {x: PAD_L - 6, y: PAD_T + 4, class: "axis", "text-anchor": "end"});
  const zeroLabel = svg("text", {x: PAD_L - 6, y: H - PAD_B, class: "axis", "text-anchor": "end"});
  zeroLabel.textContent = "0";
  const grid = svg("line", {x1: PAD_L, y1: PAD_T, y2: PAD_T, class: "gridline"});
  const base = svg("line", {x1: PAD_L, y1: H - PAD_B, y2: H - PAD_B, class: "baseline"});
  root.append(grid, base, maxLabel, zeroLabel);
  const bars = [];
  const legend = h("ul.legend", null, RUN_OUTCOMES.map((o) => h("li", null, h("span.swatch.st-" + o), o, h("span.n"))));

  function update(runs) {
    const buckets = runs.buckets;
    const n = buckets.length;
    const W = Math.max(240, root.clientWidth || 600);
    // Attributes are written only when they change: a quiet hour touches nothing.
    setAttr(root, "viewBox", `0 0 ${W} ${H}`);
    setAttr(grid, "x2", W);
    setAttr(base, "x2", W);
    const slot = (W - PAD_L) / n;
    while (bars.length < n) {
      const g = svg("g");
      const tip = svg("title");
      const rects = RUN_OUTCOMES.map((o) => svg("rect", {class: "st-" + o}));
      const label = svg("text", {class: "axis", "text-anchor": "middle", y: H - 6});
      g.append(tip, ...rects, label);
      root.append(g);
      bars.push({g, tip, rects, label});
    }
    const totals = buckets.map((b) => RUN_OUTCOMES.reduce((s, o) => s + (b[o] || 0), 0));
    const max = Math.max(1, ...totals);
    setText(maxLabel, max);
    const scale = (H - PAD_B - PAD_T) / max;
    const sums = Object.fromEntries(RUN_OUTCOMES.map((o) => [o, 0]));
    buckets.forEach((b, i) => {
      const bar = bars[i];
      const x = PAD_L + i * slot + slot * 0.15;
      let y = H - PAD_B;
      RUN_OUTCOMES.forEach((o, j) => {
        const v = b[o] || 0;
        sums[o] += v;
        const hgt = v * scale;
        y -= hgt;
        const r = bar.rects[j];
        setAttr(r, "x", x.toFixed(1));
        setAttr(r, "width", (slot * 0.7).toFixed(1));
        setAttr(r, "y", y.toFixed(1));
        setAttr(r, "height", hgt.toFixed(1));
      });
      const start = new Date(b.start);
      const hm = start.toLocaleTimeString(undefined, {hour: "2-digit", minute: "2-digit"});
      setText(bar.tip, `${hm}: ` + (totals[i] ? RUN_OUTCOMES.filter((o) => b[o]).map((o) => `${b[o]} ${o}`).join(", ") : "no runs"));
      setAttr(bar.label, "x", (PAD_L + (i + 0.5) * slot).toFixed(1));
      setText(bar.label, i % Math.ceil(n / Math.max(1, Math.floor(W / 90))) === 0 ? hm : "");
    });
    const total = totals.reduce((a, b) => a + b, 0);
    setText(title, `Runs finished in the last hour: ${total}. ` +
      RUN_OUTCOMES.map((o) => `${o} ${sums[o]}`).join(", "));
    RUN_OUTCOMES.forEach((o, i) => setText(legend.children[i].querySelector(".n"), sums[o]));
  }
  return {svg: root, legend, update};
}
