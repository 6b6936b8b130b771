// New task: a form built once and never re-rendered by the refresh loop;
// refresh only updates the owner list (when it is not in use) and the
// schedule preview.
import {api, get} from "../api.js";
import {choose, h, localTime, now, options, setAttr, timeCell} from "../dom.js";
import {BROADCAST_OWNERS, TASK_TYPES} from "../model.js";

const LIMITS = ["timeout", "max_retries", "retry_delay", "retry_backoff"]; // copied, checked and sent alike
const AGENTS_EVERY_MS = 10_000; // the owner list: agents come and go rarely
const MY_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "";

export function mount(root, {query}) {
  const controls = {}; // server field name -> control
  const errorSlots = new Map(); // control -> its error <p>
  const ctl = {
    plugin: h("select", {id: "plugin", name: "plugin"}),
    action: h("select", {id: "action", name: "action"}),
    args: h("textarea.mono", {id: "args", name: "args", rows: 3, spellcheck: "false"}),
    kwargs: h("textarea.mono", {id: "kwargs", name: "kwargs", rows: 3, spellcheck: "false"}),
    owner: h("select", {id: "owner", name: "owner"}),
    type: h("select", {id: "type", name: "type"}, options(TASK_TYPES)),
    seconds: h("input", {id: "interval-seconds", name: "interval-seconds", type: "number", min: 1, step: 1,
      inputmode: "numeric", placeholder: "60"}),
    cron: h("input.mono", {id: "cron", name: "cron", type: "text", placeholder: "*/5 * * * *",
      spellcheck: "false", autocomplete: "off"}),
    timezone: h("input", {id: "timezone", name: "timezone", type: "text", list: "zones", autocomplete: "off",
      placeholder: "UTC", spellcheck: "false"}),
    start: h("input", {id: "start", name: "start", type: "datetime-local", step: 1}),
    end: h("input", {id: "end", name: "end", type: "datetime-local", step: 1}),
    overlap: h("select", {id: "overlap", name: "overlap"},
      h("option", {value: "skip"}, "skip: record the slot as skipped"),
      h("option", {value: "queue"}, "queue: run when the previous run ends"),
      h("option", {value: "parallel"}, "parallel: start it anyway")),
    catch_up: h("select", {id: "catch_up", name: "catch_up"},
      h("option", {value: "once"}, "once: one run on start-up"),
      h("option", {value: "all"}, "all: one run per missed slot"),
      h("option", {value: "none"}, "none: skip missed slots")),
    timeout: h("input", {id: "timeout", name: "timeout", type: "number", min: 0, step: "any", placeholder: "no limit"}),
    max_retries: h("input", {id: "max_retries", name: "max_retries", type: "number", min: 0, max: 100, step: 1, value: 0}),
    retry_delay: h("input", {id: "retry_delay", name: "retry_delay", type: "number", min: 0, step: "any", value: 10}),
    retry_backoff: h("input", {id: "retry_backoff", name: "retry_backoff", type: "number", min: 1, max: 10, step: "any", value: 2}),
    keep_processes: h("input", {id: "keep_processes", name: "keep_processes", type: "checkbox"}),
  };
  ctl.args.value = "[]";
  ctl.kwargs.value = "{}";
  const zones = h("datalist", {id: "zones"}, (Intl.supportedValuesOf?.("timeZone") || ["UTC"]).map((z) => h("option", {value: z})));

  // A labelled control with a hint and an error slot; `name` is the server's field name.
  function field(name, text, control, hint, cls = "") {
    const error = h("p.field-error", {id: control.id + "-error", role: "alert"});
    const hintEl = hint ? h("p.hint", {id: control.id + "-hint"}, hint) : null;
    setAttr(control, "aria-describedby", [hintEl && hintEl.id, error.id].filter(Boolean).join(" "));
    errorSlots.set(control, error);
    if (name) controls[name] = control;
    control.addEventListener("input", () => name !== "args" && name !== "kwargs" && clearError(control));
    return h("div.field" + cls, null, h("label", {for: control.id}, text), control, hintEl, error);
  }
  const actionDoc = h("p.hint.doc");
  const preview = h("ol.preview", {id: "preview", "aria-live": "polite"});
  const previewBox = h("div.preview-box", null, h("h3", null, "Next runs"), preview);
  const formError = h("p.error", {role: "alert"});
  let formErrorFromPreview = false;
  function myZoneHint() {
    // Empty means UTC (as on the server); the browser's zone is one click away, never a silent default.
    if (!MY_ZONE || MY_ZONE === "UTC") return h("span", {hidden: true});
    const use = h("button.link", {type: "button", id: "use-my-zone"}, `Use my zone (${MY_ZONE})`);
    use.addEventListener("click", () => {
      ctl.timezone.value = MY_ZONE;
      clearError(ctl.timezone);
      schedulePreview();
    });
    return h("p.hint.zone", null, use);
  }
  const submit = h("button.primary", {type: "submit"}, "Create task");

  const recurringOnly = [];
  const only = (kinds, el) => { el.dataset.only = kinds; recurringOnly.push(el); return el; };
  const form = h("form.task-form", {novalidate: true, id: "new-task"},
    h("fieldset", null, h("legend", null, "What runs"),
      h("div.row", null, field("plugin", "Plugin", ctl.plugin), field("action", "Action", ctl.action)),
      actionDoc,
      field("args", "Arguments (JSON array)", ctl.args, "Passed as action(*args, **kwargs)."),
      field("kwargs", "Keyword arguments (JSON object)", ctl.kwargs)),
    h("fieldset", null, h("legend", null, "Where"),
      field("owner", "Runs on", ctl.owner, "Anyone: the least busy agent. ALL: every agent online. Or one agent by name.")),
    h("fieldset", null, h("legend", null, "When"),
      field("type", "Type", ctl.type),
      only("Interval", field(null, "Every (seconds)", ctl.seconds)),
      only("Scheduled", field(null, "Cron (minute hour day month weekday)", ctl.cron, "For example 30 9 * * MON-FRI")),
      only("Scheduled", field("timezone", "Time zone", ctl.timezone, "The zone the cron is read in; empty: UTC.")),
      only("Scheduled", myZoneHint()),
      h("div.row", null,
        field("execution_start_time", "Start (your local time)", ctl.start, "Empty: now."),
        only("Interval Scheduled", field("execution_end_time", "End (your local time)", ctl.end, "Empty: never."))),
      only("Interval Scheduled", previewBox),
      h("div.row", null,
        only("Interval Scheduled", field("overlap", "If the previous run is still going", ctl.overlap)),
        only("Interval Scheduled", field("catch_up", "Slots missed while the server was down", ctl.catch_up)))),
    h("fieldset", null, h("legend", null, "Limits and retries"),
      h("div.row", null,
        field("timeout", "Timeout (seconds)", ctl.timeout),
        field("max_retries", "Retries", ctl.max_retries),
        field("retry_delay", "First retry after (s)", ctl.retry_delay),
        field("retry_backoff", "Backoff factor", ctl.retry_backoff)),
      field("keep_processes", "Keep processes a run leaves running", ctl.keep_processes,
        "Unchecked: what a run starts in the background is stopped when the run ends.", ".check")),
    formError,
    h("div.actions", null, submit, h("a.button", {href: "#/tasks"}, "Cancel")),
    zones);
  root.append(h("div.head", null, h("h1", null, "New task")), form);

  // The interval field is one on the server and two controls here.
  const intervalControl = () => (ctl.type.value === "Scheduled" ? ctl.cron : ctl.seconds);
  const controlFor = (name) => (name === "interval" ? intervalControl() : controls[name]);

  function markError(control, message) {
    errorSlots.get(control).textContent = message;
    control.setAttribute("aria-invalid", "true");
  }
  /** The error next to the field the server named, else above the buttons; returns the field's control. */
  function showError(name, message) {
    const control = controlFor(name);
    if (!control) {
      formError.textContent = (name ? name + ": " : "") + message;
      formErrorFromPreview = false;
      return null;
    }
    markError(control, message);
    return control;
  }
  function clearError(control) {
    control.removeAttribute("aria-invalid");
    errorSlots.get(control).textContent = "";
  }

  // A number or date input holding what it cannot parse ("1e", half a date) has
  // the value "": without this check it would be silently left out of the request.
  const PARSED = ["seconds", "start", "end", ...LIMITS];
  function checkParsed(names = PARSED) {
    let first = null;
    for (const name of names) {
      const c = ctl[name];
      if (c.closest("[hidden]") || !c.validity.badInput) continue;
      markError(c, c.type === "number" ? "Not a number" : "Incomplete date");
      first ||= c;
    }
    return first;
  }

  // ---- JSON fields: checked as you type, and before sending ----
  function checkJson(name) {
    const control = ctl[name];
    let value;
    try {
      value = JSON.parse(control.value.trim() || (name === "args" ? "[]" : "{}"));
    } catch (e) {
      showError(name, "Not valid JSON: " + e.message);
      return undefined;
    }
    const ok = name === "args" ? Array.isArray(value) : value !== null && typeof value === "object" && !Array.isArray(value);
    if (!ok) {
      showError(name, name === "args" ? 'Must be a JSON array, like [1, "two"].' : 'Must be a JSON object, like {"key": "value"}.');
      return undefined;
    }
    clearError(control);
    return value;
  }
  for (const name of ["args", "kwargs"]) ctl[name].addEventListener("input", () => checkJson(name));

  // The task to copy for "Edit as new", fetched alongside the plugins.
  const from = query?.get("from");
  const copied = !from ? Promise.resolve(null) : get(`/tasks/${encodeURIComponent(from)}`, {executions: 0}).catch((e) => {
    if (e.status !== 401) showError(null, "Could not load the task to copy: " + e.message);
    return null;
  });
  // ---- plugin and action choices ----
  let plugins = [];
  const currentPlugin = () => plugins.find((x) => x.name === ctl.plugin.value);
  function fillActions() {
    const p = currentPlugin();
    const keep = ctl.action.value;
    ctl.action.replaceChildren(...options(p?.actions || []));
    if (p?.actions.includes(keep)) ctl.action.value = keep;
    describeAction();
  }
  function describeAction() {
    const p = currentPlugin();
    const a = p?.action_docs?.find((d) => d.name === ctl.action.value);
    actionDoc.textContent = a ? `${ctl.action.value}${a.signature || ""}: ${a.doc || ""}` : p?.doc || "";
  }
  ctl.plugin.addEventListener("change", fillActions);
  ctl.action.addEventListener("change", describeAction);
  Promise.all([get("/plugins"), copied]).then(([data, t]) => {
    plugins = data.plugins;
    ctl.plugin.replaceChildren(...options(plugins.map((p) => p.name)));
    if (t && plugins.some((p) => p.name === t.plugin)) ctl.plugin.value = t.plugin;
    else if (plugins.some((p) => p.name === "echo")) ctl.plugin.value = "echo";
    fillActions();
    if (t) {
      choose(ctl.action, t.action);
      describeAction();
      fillFrom(t);
    }
  }).catch((e) => e.status !== 401 && showError(null, "Could not load the plugins: " + e.message));

  // ---- "Edit as new": the form starts as a copy of a task ----
  function fillFrom(t) {
    ctl.args.value = JSON.stringify(t.args ?? []);
    ctl.kwargs.value = JSON.stringify(t.kwargs ?? {});
    ctl.type.value = t.type;
    if (t.type === "Interval") ctl.seconds.value = t.interval;
    if (t.type === "Scheduled") {
      ctl.cron.value = t.interval;
      ctl.timezone.value = t.timezone || "";
    }
    if (t.type !== "Adhoc") {
      ctl.overlap.value = t.overlap || "skip";
      ctl.catch_up.value = t.catch_up || "once";
    }
    for (const f of LIMITS) {
      if (t[f] !== null && t[f] !== undefined) ctl[f].value = t[f];
    }
    ctl.keep_processes.checked = t.keep_processes === true;
    wantedOwner = t.owner;
    choose(ctl.owner, t.owner);
    showType();
  }
  let wantedOwner = null;

  // ---- owner: Anyone, ALL and the live agent list ----
  let ownerKey = null;
  function fillOwners(agents) {
    const key = agents.map((a) => a.name + a.status).join();
    // Never rebuild the list while it is in use: an open select would close.
    if (key === ownerKey || document.activeElement === ctl.owner) return;
    ownerKey = key;
    const keep = ctl.owner.value || "Anyone";
    const extra = [keep, wantedOwner].find((o) => o && !BROADCAST_OWNERS.includes(o) && !agents.some((a) => a.name === o));
    ctl.owner.replaceChildren(h("option", {value: "Anyone"}, "Anyone"), h("option", {value: "ALL"}, "ALL agents"),
      agents.length ? h("optgroup", {label: "Agents"}, agents.map((a) =>
        h("option", {value: a.name}, a.name + (a.status === "online" ? "" : " (offline)")))) : null,
      extra ? h("option", {value: extra}, extra + " (not seen)") : null);
    ctl.owner.value = keep;
  }
  fillOwners([]);

  // ---- type-dependent fields and the schedule preview ----
  function showType() {
    for (const el of recurringOnly) el.hidden = !el.dataset.only.split(" ").includes(ctl.type.value);
    schedulePreview();
  }
  ctl.type.addEventListener("change", showType);

  let previewTimer = null;
  let previewSeq = 0;
  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(loadPreview, 300);
  }
  for (const c of [ctl.seconds, ctl.cron, ctl.timezone, ctl.start, ctl.end]) c.addEventListener("input", schedulePreview);

  // The preview is cached by its parameters: a tick with nothing changed only
  // rewrites the "in 3 min" texts and drops times gone by; it asks again when
  // none is left, or after a minute.
  const PREVIEW_TTL_MS = 60_000;
  let previewKey = null;
  let previewAt = 0;
  const previewTimes = () => preview.querySelectorAll("li[data-t]");
  function previewAges() {
    for (const li of previewTimes()) {
      const t = li.dataset.t;
      if (Date.parse(t) <= now()) li.remove();
      else timeCell(li.firstChild, t);
    }
  }
  function previewItem(t) {
    const time = h("time");
    timeCell(time, t);
    return h("li", {"data-t": t}, time);
  }
  function previewNote(text) {
    previewKey = null;
    preview.replaceChildren(h("li.muted", null, text));
  }
  async function loadPreview(fromTick = false) {
    previewTimer = null;
    const kind = ctl.type.value;
    if (kind === "Adhoc") return;
    const interval = intervalControl().value.trim();
    if (!interval) {
      ++previewSeq;
      previewNote(kind === "Scheduled" ? "Enter a cron to see its next runs." : "Enter the seconds between runs.");
      return;
    }
    const bad = checkParsed(["start", "end"].concat(kind === "Interval" ? ["seconds"] : []));
    if (bad) {
      ++previewSeq;
      previewNote("No preview: fix the schedule.");
      return;
    }
    const params = {type: kind, interval, count: 5};
    if (kind === "Scheduled" && ctl.timezone.value.trim()) params.timezone = ctl.timezone.value.trim();
    if (ctl.start.value) params.execution_start_time = isoFromLocal(ctl.start.value);
    const end = ctl.end.value ? Date.parse(isoFromLocal(ctl.end.value)) : null;
    const key = JSON.stringify([params, end]);
    if (fromTick && key === previewKey) {
      const hadTimes = previewTimes().length > 0;
      previewAges();
      if (!hadTimes || (previewTimes().length && Date.now() - previewAt < PREVIEW_TTL_MS)) return;
    }
    const mine = ++previewSeq;
    try {
      const data = await get("/schedule/preview", params);
      if (mine !== previewSeq) return;
      for (const c of [intervalControl(), ctl.timezone, ctl.start]) clearError(c);
      if (formErrorFromPreview) {
        formError.textContent = "";
        formErrorFromPreview = false;
      }
      previewKey = key;
      previewAt = Date.now();
      // The window's end cuts the list short: no run is made after it.
      const times = end === null ? data.next : data.next.filter((t) => Date.parse(t) <= end);
      preview.replaceChildren(...times.map(previewItem),
        times.length < data.next.length ? h("li.muted.end", null, times.length ?
          `Then no more: the window ends ${localTime(new Date(end).toISOString())}.` :
          "No run: the window ends before the first one.") : null);
    } catch (e) {
      if (mine !== previewSeq || e.status === 401 || e.aborted) return;
      if (e.status === 0) { // the form is fine; the server is away for a moment
        previewNote("Preview unavailable (server unreachable).");
        return;
      }
      previewNote("No preview: fix the schedule.");
      previewKey = key; // asked again only when the schedule changes
      const wasFormError = !controlFor(e.field);
      showError(e.field, e.message);
      if (wasFormError) formErrorFromPreview = true;
    }
  }

  // ---- submit ----
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    formError.textContent = "";
    const args = checkJson("args");
    const kwargs = checkJson("kwargs");
    if (args === undefined || kwargs === undefined) {
      (args === undefined ? ctl.args : ctl.kwargs).focus();
      return; // nothing is sent with JSON the server would refuse
    }
    const unparsed = checkParsed();
    if (unparsed) {
      unparsed.focus();
      return; // nor with a field left out because the browser could not read it
    }
    const body = buildBody(args, kwargs);
    submit.disabled = true;
    submit.textContent = "Creating…";
    try {
      const task = await api("POST", "/tasks", {body});
      location.hash = "#/tasks/" + task.id;
    } catch (e) {
      if (e.status === 401) return;
      showError(e.field, e.message)?.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Create task";
    }
  });

  function buildBody(args, kwargs) {
    const kind = ctl.type.value;
    const body = {plugin: ctl.plugin.value, action: ctl.action.value, args, kwargs, owner: ctl.owner.value, type: kind};
    const num = (c) => (c.value.trim() === "" ? undefined : Number(c.value));
    if (kind === "Interval") body.interval = /^\d+$/.test(ctl.seconds.value.trim()) ? Number(ctl.seconds.value) : ctl.seconds.value;
    if (kind === "Scheduled") {
      body.interval = ctl.cron.value.trim();
      if (ctl.timezone.value.trim()) body.timezone = ctl.timezone.value.trim();
    }
    if (ctl.start.value) body.execution_start_time = isoFromLocal(ctl.start.value);
    if (kind !== "Adhoc") {
      if (ctl.end.value) body.execution_end_time = isoFromLocal(ctl.end.value);
      body.overlap = ctl.overlap.value;
      body.catch_up = ctl.catch_up.value;
    }
    for (const f of LIMITS) {
      const v = num(ctl[f]);
      if (v !== undefined) body[f] = v;
    }
    if (ctl.keep_processes.checked) body.keep_processes = true;
    return body;
  }

  showType();
  let agentsAt = 0;
  return {
    async refresh() {
      if (Date.now() - agentsAt >= AGENTS_EVERY_MS) {
        const {agents} = await get("/agents");
        agentsAt = Date.now();
        fillOwners(agents);
      }
      // Keep the preview's "in 3 min" true, unless the user is mid-edit.
      if (ctl.type.value !== "Adhoc" && previewTimer === null) await loadPreview(true);
    },
    unmount() {
      clearTimeout(previewTimer);
      previewSeq++;
    },
  };
}

/** "2026-11-27T14:00" typed in local time -> ISO in UTC. */
function isoFromLocal(value) {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toISOString();
}
