// One task: its definition, its runs (output on demand) and actions.
import {api, get} from "../api.js";
import {badge, brief, duration, elapsed, h, localTime, note, pretty, setAttr, setBadge, setText, syncRows,
  timeCell} from "../dom.js";
import {showsNextRun, waitingFor} from "../model.js";
import {resultView} from "../result-view.js";

const PAGE_RUNS = 50;
// What "Run again" copies: the work and its limits, as one Adhoc run now. The
// window, type and schedule are left out (a copy of a recurring task would be
// a second schedule; a copy of an ended window would be refused).
const AGAIN = ["plugin", "action", "args", "kwargs", "owner", "timeout", "max_retries", "retry_delay", "retry_backoff",
  "keep_processes"];

export function mount(root, {params: [id], setTitle}) {
  const title = h("h1", null, "Task");
  const status = badge("");
  const actionsMsg = h("p.msg", {role: "status"});
  const cancelBtn = h("button", {type: "button", "aria-controls": "confirm"}, "Cancel task");
  const againBtn = h("button", {type: "button"}, "Run again");
  const editBtn = h("a.button", {href: "#/tasks/new?from=" + id}, "Edit as new");
  const deleteBtn = h("button.danger", {type: "button", "aria-expanded": "false", "aria-controls": "confirm"}, "Delete…");
  const confirmText = h("span");
  const confirmYes = h("button.danger", {type: "button"});
  const confirmNo = h("button", {type: "button"});
  const confirmBox = h("div.confirm", {id: "confirm", role: "group", "aria-label": "Confirm", hidden: true},
    confirmText, confirmYes, confirmNo);
  const dl = h("dl.fields");
  const pres = {args: h("pre"), kwargs: h("pre"), result: h("div.result")};
  const runsBody = h("tbody");
  const runsCount = h("span.muted");
  const runsNote = note("No runs yet.", "empty");
  const olderBtn = h("button", {type: "button", hidden: true}, "Older runs");
  const loading = note("Loading…", "loading");
  let task = null;

  const content = h("div", {hidden: true},
    h("div.toolbar.actions", null, cancelBtn, againBtn, editBtn, deleteBtn, confirmBox), actionsMsg,
    h("div.detail", null,
      h("section.panel", {"aria-label": "Definition"}, dl),
      h("section.panel.json", {"aria-label": "Arguments and result"},
        h("h2", null, "Arguments"), pres.args, h("h2", null, "Keyword arguments"), pres.kwargs,
        h("h2", null, "Result"), pres.result)),
    h("section.panel", {"aria-labelledby": "runs-h"},
      h("h2", {id: "runs-h"}, "Runs ", runsCount),
      h("div.scroll", null, h("table.grid.runs", null,
        h("thead", null, h("tr", null, h("th.num", null, "Run"), h("th.opt.num", null, "Try"), h("th", null, "Started"),
          h("th.opt", null, "Agent"), h("th", null, "Status"), h("th.num", null, "Duration"),
          h("th.opt", null, "Result"), h("th", null, h("span.sr", null, "Output")))),
        runsBody)),
      runsNote, h("div.runs-more", null, olderBtn)));
  root.append(h("p.crumb", null, h("a", {href: "#/tasks"}, "← Tasks")),
    h("div.head", null, title, status), loading, content);

  // ---- fields ----
  const rows = {};
  function row(label, key) {
    const dd = h("dd");
    const wrap = h("div", null, h("dt", null, label), dd);
    dl.append(wrap);
    rows[key] = {wrap, dd};
  }
  [["ID", "id"], ["Owner", "owner"], ["Ran on", "executor"], ["Type", "type"], ["Schedule", "schedule"],
    ["Next run", "next_run_at"], ["Start", "execution_start_time"], ["End", "execution_end_time"],
    ["Overlap", "overlap"], ["Catch-up", "catch_up"], ["Timeout", "timeout"], ["Retries", "retries"],
    ["Left running", "keep_processes"],
    ["Created", "created_at"], ["Updated", "updated_at"], ["Cancelled", "cancelled_at"]].forEach(([l, k]) => row(l, k));
  const TIMES = ["next_run_at", "execution_start_time", "execution_end_time", "created_at", "updated_at", "cancelled_at"];
  for (const k of TIMES) rows[k].dd.append(h("time"));
  rows.id.dd.className = "mono";

  function fill(t) {
    const recurring = t.type !== "Adhoc";
    setText(title, `${t.plugin}.${t.action}`);
    setTitle(`${t.plugin}.${t.action}`);
    setBadge(status, t.status);
    setText(rows.id.dd, t.id);
    setText(rows.owner.dd, t.owner);
    setText(rows.executor.dd, t.executor || "—");
    setText(rows.type.dd, t.type);
    setText(rows.schedule.dd, t.type === "Interval" ? `every ${t.interval} s` :
      t.type === "Scheduled" ? `${t.interval} (${t.timezone || "UTC"})` : "");
    setText(rows.overlap.dd, t.overlap);
    setText(rows.catch_up.dd, t.catch_up);
    setText(rows.timeout.dd, t.timeout ? duration(t.timeout) : "none");
    setText(rows.keep_processes.dd, t.keep_processes ? "kept after a run" : "stopped when a run ends");
    setText(rows.retries.dd, t.max_retries ? `${t.max_retries}, first after ${t.retry_delay} s, then ×${t.retry_backoff}` : "none");
    for (const k of TIMES) timeCell(rows[k].dd.firstChild, t[k]);
    const waiting = waitingFor(t);
    if (waiting) setText(rows.next_run_at.dd.firstChild, `${waiting} (due ${localTime(t.next_run_at)})`);
    const hide = {schedule: !recurring, overlap: !recurring, catch_up: !recurring, execution_end_time: !recurring,
      cancelled_at: !t.cancelled_at, execution_start_time: !t.execution_start_time,
      next_run_at: !t.next_run_at || !showsNextRun(t)};
    for (const [k, r] of Object.entries(rows)) r.wrap.hidden = !!hide[k];
    setText(pres.args, pretty(t.args));
    setText(pres.kwargs, pretty(t.kwargs));
    showResult(pres.result, t.result);
    if (confirmBox.hidden) cancelBtn.hidden = !["Created", "Active"].includes(t.status);
  }

  // ---- runs: the newest page, refreshed; older pages on demand ----
  const known = new Map(); // run id -> run, every run seen since the view opened
  let hasMore = false; // more runs than the newest page
  let olderLoaded = false; // the user asked for older runs: show all known ones
  let olderDone = false; // ... and the oldest one is among them

  function fillRuns(newest, more) {
    for (const r of newest) known.set(r.id, r);
    if (!olderLoaded) hasMore = more;
    const shown = olderLoaded ? [...known.values()].sort((a, b) => b.id - a.id) : newest.slice().reverse();
    runsNote.hidden = shown.length > 0;
    const complete = !hasMore || olderDone;
    olderBtn.hidden = complete;
    setText(runsCount, !shown.length ? "" : complete ? `(${shown.length === 1 ? "1" : "all " + shown.length})` :
      `(${shown.length} newest)`);
    syncRows(runsBody, shown, (r) => r.id, runRow, updateRun);
    return shown;
  }
  let shownRuns = [];
  olderBtn.addEventListener("click", () => act(olderBtn, async () => {
    const data = await get("/executions", {task_id: id, limit: PAGE_RUNS, offset: shownRuns.length});
    for (const r of data.executions) if (!known.has(r.id)) known.set(r.id, r);
    olderLoaded = true;
    olderDone = data.executions.length < PAGE_RUNS;
    shownRuns = fillRuns(latest, hasMore);
  }));

  // ---- actions ----
  function say(text, bad = false) {
    actionsMsg.textContent = text;
    actionsMsg.classList.toggle("error", bad);
  }

  // One confirmation box, for delete and for stopping a schedule; Escape or "Keep it" closes it.
  let asking = null; // {trigger, onYes}
  function ask(trigger, text, yes, no, onYes) {
    asking = {trigger, onYes};
    confirmText.textContent = text + " ";
    confirmYes.textContent = yes;
    confirmNo.textContent = no;
    confirmBox.hidden = false;
    trigger.hidden = true;
    trigger.setAttribute("aria-expanded", "true");
    confirmNo.focus(); // the safe choice is the default
  }
  function closeAsk() {
    if (!asking) return;
    const {trigger} = asking;
    asking = null;
    confirmBox.hidden = true;
    trigger.hidden = false;
    trigger.setAttribute("aria-expanded", "false");
    if (task) fill(task);
    trigger.focus();
  }
  confirmNo.addEventListener("click", closeAsk);
  confirmBox.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      e.preventDefault();
      closeAsk();
    }
  });
  confirmYes.addEventListener("click", () => asking && act(confirmYes, asking.onYes));

  async function cancelTask() {
    await api("POST", `/tasks/${id}/cancel`);
    if (asking) { // it was confirmed: close the box, keep focus in the toolbar
      asking.trigger.setAttribute("aria-expanded", "false");
      asking = null;
      confirmBox.hidden = true;
      againBtn.focus();
    }
    say("Cancel sent: running runs stop within about a second.");
    await refresh();
  }
  cancelBtn.addEventListener("click", () => {
    if (task.type === "Adhoc") return act(cancelBtn, cancelTask);
    ask(cancelBtn, `Cancel this ${task.type} task? It makes no more runs, and runs going on are stopped.`,
      "Yes, cancel it", "Keep it", cancelTask);
  });
  againBtn.addEventListener("click", () => act(againBtn, async () => {
    const body = {type: "Adhoc"};
    for (const k of AGAIN) if (task[k] !== null && task[k] !== undefined) body[k] = task[k];
    const created = await api("POST", "/tasks", {body});
    location.hash = "#/tasks/" + created.id;
  }));
  deleteBtn.addEventListener("click", () => ask(deleteBtn,
    "Delete this task and all its runs?" + (task.status === "Active" ? " Its runs going on will be stopped." : ""),
    "Delete task", "Keep it", async () => {
      await api("DELETE", `/tasks/${id}`);
      location.hash = "#/tasks";
    }));

  async function act(button, fn) {
    button.disabled = true;
    say("");
    try {
      await fn();
    } catch (e) {
      if (e.status !== 401) say(e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  // Numbered, so an older answer (a tick that started before a cancel) never overwrites a newer one.
  let seq = 0;
  let latest = [];
  async function refresh() {
    const mine = ++seq;
    let data;
    try {
      data = await get(`/tasks/${id}`, {executions: PAGE_RUNS + 1});
    } catch (e) {
      if (e.status !== 404 || mine !== seq) throw e;
      loading.hidden = true;
      setText(title, "No such task");
      setTitle("No such task");
      status.hidden = true;
      content.replaceChildren(note(`There is no task ${id}; it may have been deleted.`, "empty"),
        h("p", null, h("a", {href: "#/tasks"}, "Back to the tasks")));
      content.hidden = false;
      return;
    }
    if (mine !== seq) return;
    task = data;
    loading.hidden = true;
    content.hidden = false;
    fill(task);
    const runs = task.executions; // oldest first
    latest = runs.length > PAGE_RUNS ? runs.slice(runs.length - PAGE_RUNS) : runs;
    shownRuns = fillRuns(latest, runs.length > PAGE_RUNS);
  }
  return {refresh, ownsTitle: true};
}

/** Redrawn only when the result changed: a refresh keeps what the user selected or scrolled. */
function showResult(box, result) {
  const text = JSON.stringify(result ?? null);
  if (box.dataset.shown === text) return;
  box.dataset.shown = text;
  box.replaceChildren(...resultView(result));
}

function runRow(r) {
  const toggle = h("button.small", {type: "button", "aria-expanded": "false", "aria-label": `Output of run #${r.id}`}, "Output");
  const tr = h("tr", null, h("td.num.mono", null, "#" + r.id), h("td.opt.num"), h("td", null, h("time")), h("td.opt"),
    h("td", null, badge(r.status)), h("td.num"), h("td.opt.wrap.mono"), h("td", null, toggle));
  toggle.addEventListener("click", () => toggleOutput(tr, toggle, r.id));
  return tr;
}

function updateRun(tr, r) {
  const c = tr.cells;
  setText(c[1], r.attempt ?? "");
  const when = c[2].firstChild;
  if (r.started_at) timeCell(when, r.started_at);
  else if (r.status === "queued" || r.status === "assigned") timeCell(when, r.due_at || r.created_at, r.status + ", due ");
  else timeCell(when, r.due_at || r.created_at, r.status === "skipped" ? "slot " : "not started, ");
  setText(c[3], r.client || "—");
  setBadge(c[4].firstChild, r.status);
  // A run going on shows how long it has been going, growing each refresh.
  setText(c[5], r.status === "running" && r.started_at && r.duration == null ? elapsed(r.started_at) + "…" : duration(r.duration));
  // A listed run's big result is a preview of its JSON text (see "truncated");
  // the output panel fetches the run for all of it.
  const cut = (r.truncated || []).includes("result");
  setText(c[6], brief(r.result, 60));
  setAttr(c[6], "title", r.result === null || r.result === undefined ? null : cut ? r.result + "…" : JSON.stringify(r.result));
}

/** Output lives in a companion row; once open it is not refreshed (it may be long, and read). */
async function toggleOutput(tr, button, runId) {
  if (tr._companion) {
    tr._companion.remove();
    tr._companion = null;
    button.setAttribute("aria-expanded", "false");
    return;
  }
  const pre = h("pre.output", {tabindex: "0"}, "Loading output…");
  const result = h("div.result.run-result");
  const reload = h("button.small", {type: "button"}, "Reload");
  const panel = h("tr.output-row", null, h("td", {colSpan: 8}, h("div.output-head", null,
    h("strong", null, `Run #${runId}`), reload), pre, result));
  tr._companion = panel;
  tr.after(panel);
  button.setAttribute("aria-expanded", "true");
  async function load() {
    try {
      const run = await get(`/executions/${runId}`);
      pre.textContent = run.output ? run.output : "(no output)";
      result.replaceChildren(...(run.result !== null && run.result !== undefined ?
        [h("h3", null, "Result"), ...resultView(run.result)] : []));
    } catch (e) {
      if (e.status !== 401) pre.textContent = "Could not load the output: " + e.message;
    }
  }
  reload.addEventListener("click", load);
  await load();
}
