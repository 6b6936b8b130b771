// One task: its definition, its runs (output on demand) and actions.
import {api, get} from "../api.js";
import {badge, brief, duration, h, note, pretty, setAttr, setBadge, setText, syncRows, timeCell} from "../dom.js";

const SHOWN_RUNS = 50;
const DEFINITION = ["plugin", "action", "args", "kwargs", "owner", "type", "execution_start_time",
  "execution_end_time", "interval", "timezone", "timeout", "overlap", "catch_up", "max_retries",
  "retry_delay", "retry_backoff"];

export function mount(root, {params: [id]}) {
  const title = h("h1", null, "Task");
  const status = badge("");
  const actionsMsg = h("p.msg", {role: "status"});
  const cancelBtn = h("button", {type: "button"}, "Cancel task");
  const againBtn = h("button", {type: "button"}, "Run again");
  const deleteBtn = h("button.danger", {type: "button", "aria-expanded": "false", "aria-controls": "confirm-delete"}, "Delete…");
  const confirmText = h("span");
  const confirmYes = h("button.danger", {type: "button"}, "Delete task");
  const confirmNo = h("button", {type: "button"}, "Keep it");
  const confirmBox = h("div.confirm", {id: "confirm-delete", role: "group", "aria-label": "Confirm delete", hidden: true},
    confirmText, confirmYes, confirmNo);
  const dl = h("dl.fields");
  const pres = {args: h("pre"), kwargs: h("pre"), result: h("pre")};
  const runsBody = h("tbody");
  const runsNote = note("No runs yet.", "empty");
  const runsMore = h("button.link", {type: "button", hidden: true});
  const loading = note("Loading…", "loading");
  let task = null;
  let showAll = false;

  const content = h("div", {hidden: true},
    h("div.toolbar.actions", null, cancelBtn, againBtn, deleteBtn, confirmBox), actionsMsg,
    h("div.detail", null,
      h("section.panel", {"aria-label": "Definition"}, dl),
      h("section.panel.json", {"aria-label": "Arguments and result"},
        h("h2", null, "Arguments"), pres.args, h("h2", null, "Keyword arguments"), pres.kwargs,
        h("h2", null, "Result"), pres.result)),
    h("section.panel", {"aria-labelledby": "runs-h"},
      h("h2", {id: "runs-h"}, "Runs"),
      h("div.scroll", null, h("table.grid.runs", null,
        h("thead", null, h("tr", null, h("th.num", null, "Run"), h("th.opt.num", null, "Try"), h("th", null, "Started"),
          h("th.opt", null, "Agent"), h("th", null, "Status"), h("th.num", null, "Duration"),
          h("th.opt", null, "Result"), h("th", null, h("span.sr", null, "Output")))),
        runsBody)),
      runsNote, runsMore));
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
    ["Created", "created_at"], ["Updated", "updated_at"], ["Cancelled", "cancelled_at"]].forEach(([l, k]) => row(l, k));
  const TIMES = ["next_run_at", "execution_start_time", "execution_end_time", "created_at", "updated_at", "cancelled_at"];
  for (const k of TIMES) rows[k].dd.append(h("time"));

  function fill(t) {
    const recurring = t.type !== "Adhoc";
    setText(title, `${t.plugin}.${t.action}`);
    setBadge(status, t.status);
    setText(rows.id.dd, t.id);
    rows.id.dd.className = "mono";
    setText(rows.owner.dd, t.owner);
    setText(rows.executor.dd, t.executor || "—");
    setText(rows.type.dd, t.type);
    setText(rows.schedule.dd, t.type === "Interval" ? `every ${t.interval} s` :
      t.type === "Scheduled" ? `${t.interval} (${t.timezone || "UTC"})` : "");
    setText(rows.overlap.dd, t.overlap);
    setText(rows.catch_up.dd, t.catch_up);
    setText(rows.timeout.dd, t.timeout ? duration(t.timeout) : "none");
    setText(rows.retries.dd, t.max_retries ? `${t.max_retries}, first after ${t.retry_delay} s, then ×${t.retry_backoff}` : "none");
    for (const k of TIMES) timeCell(rows[k].dd.firstChild, t[k]);
    const hide = {schedule: !recurring, overlap: !recurring, catch_up: !recurring, execution_end_time: !recurring,
      cancelled_at: !t.cancelled_at, execution_start_time: !t.execution_start_time,
      next_run_at: !t.next_run_at || !(recurring || t.status === "Created")};
    for (const [k, r] of Object.entries(rows)) r.wrap.hidden = !!hide[k];
    setText(pres.args, pretty(t.args));
    setText(pres.kwargs, pretty(t.kwargs));
    setText(pres.result, pretty(t.result));
    cancelBtn.hidden = !["Created", "Active"].includes(t.status);
  }

  // ---- runs ----
  function fillRuns(runs) {
    const newest = runs.slice().reverse();
    const shown = showAll ? newest : newest.slice(0, SHOWN_RUNS);
    runsNote.hidden = runs.length > 0;
    runsMore.hidden = shown.length === newest.length;
    setText(runsMore, `Show all ${runs.length} runs`);
    syncRows(runsBody, shown, (r) => r.id, runRow, updateRun);
  }
  runsMore.addEventListener("click", () => { showAll = true; fillRuns(task.executions); });

  // ---- actions ----
  function say(text, bad = false) {
    actionsMsg.textContent = text;
    actionsMsg.classList.toggle("error", bad);
  }
  cancelBtn.addEventListener("click", () => act(cancelBtn, async () => {
    await api("POST", `/tasks/${id}/cancel`);
    say("Cancel sent: running runs stop within about a second.");
    await refresh();
  }));
  againBtn.addEventListener("click", () => act(againBtn, async () => {
    const body = {};
    for (const k of DEFINITION) if (task[k] !== null && task[k] !== undefined) body[k] = task[k];
    const created = await api("POST", "/tasks", {body});
    location.hash = "#/tasks/" + created.id;
  }));
  deleteBtn.addEventListener("click", () => {
    const n = task.executions.length;
    confirmText.textContent = `Delete this task and its ${n} run${n === 1 ? "" : "s"}?` +
      (task.status === "Active" ? " Its runs will be stopped." : "") + " ";
    confirmBox.hidden = false;
    deleteBtn.hidden = true;
    deleteBtn.setAttribute("aria-expanded", "true");
    confirmNo.focus(); // the safe choice is the default
  });
  confirmNo.addEventListener("click", () => {
    confirmBox.hidden = true;
    deleteBtn.hidden = false;
    deleteBtn.setAttribute("aria-expanded", "false");
    deleteBtn.focus();
  });
  confirmYes.addEventListener("click", () => act(confirmYes, async () => {
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

  async function refresh() {
    try {
      task = await get(`/tasks/${id}?executions=50`);
    } catch (e) {
      if (e.status !== 404) throw e;
      loading.hidden = true;
      content.replaceChildren(note("This task does not exist; it may have been deleted.", "empty"),
        h("p", null, h("a", {href: "#/tasks"}, "Back to the tasks")));
      content.hidden = false;
      return;
    }
    loading.hidden = true;
    content.hidden = false;
    fill(task);
    fillRuns(task.executions);
  }
  return {refresh};
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
  timeCell(c[2].firstChild, r.started_at || r.created_at);
  setText(c[3], r.client || "—");
  setBadge(c[4].firstChild, r.status);
  setText(c[5], duration(r.duration));
  setText(c[6], brief(r.result, 60));
  setAttr(c[6], "title", r.result === null || r.result === undefined ? null : JSON.stringify(r.result));
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
  const reload = h("button.small", {type: "button"}, "Reload");
  const panel = h("tr.output-row", null, h("td", {colSpan: 8}, h("div.output-head", null,
    h("strong", null, `Run #${runId}`), reload), pre));
  tr._companion = panel;
  tr.after(panel);
  button.setAttribute("aria-expanded", "true");
  async function load() {
    try {
      const run = await get(`/executions/${runId}`);
      pre.textContent = (run.output ? run.output : "(no output)") +
        (run.result !== null && run.result !== undefined ? "\n\n— result —\n" + pretty(run.result) : "");
    } catch (e) {
      if (e.status !== 401) pre.textContent = "Could not load the output: " + e.message;
    }
  }
  reload.addEventListener("click", load);
  await load();
}
