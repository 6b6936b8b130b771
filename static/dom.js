// Small DOM helpers. Server text only ever reaches the page through
// textContent or attribute values, never through innerHTML.

/** h("a.btn", {href: "#/x"}, "text", child) -> element */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** Sets text only when it changed, so a refresh does not touch stable nodes. */
export function setText(el, text) {
  text = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== text) el.textContent = text;
}

export function setAttr(el, name, value) {
  if (value === null || value === undefined) el.removeAttribute(name);
  else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, value);
}

/** A coloured status word; the colour comes from CSS by status name. */
export function badge(status) {
  const el = h("span.badge");
  setBadge(el, status);
  return el;
}

export function setBadge(el, status) {
  setText(el, status || "—");
  const cls = "badge st-" + String(status || "none").replace(/[^A-Za-z]/g, "");
  if (el.className !== cls) el.className = cls;
}

/**
 * Keeps tbody's rows in the order of `items`, keyed by `key(item)`: rows are
 * created once, updated in place and moved only when the order changes, so
 * focus, selection and open details inside them survive a refresh.
 */
export function syncRows(tbody, items, key, create, update) {
  const rows = tbody._rows || (tbody._rows = new Map());
  const seen = new Set();
  let cursor = tbody.firstElementChild;
  for (const item of items) {
    const k = String(key(item));
    seen.add(k);
    let row = rows.get(k);
    if (!row) {
      row = create(item);
      row.dataset.key = k;
      rows.set(k, row);
    }
    update(row, item);
    // A row may carry a companion row (an expanded output panel) right after it.
    for (const el of row._companion ? [row, row._companion] : [row]) {
      if (cursor !== el) tbody.insertBefore(el, cursor);
      cursor = el.nextElementSibling;
    }
  }
  for (const [k, row] of rows) {
    if (seen.has(k)) continue;
    row._companion?.remove();
    row.remove();
    rows.delete(k);
  }
}

/** <option>s whose value is their text. */
export function options(values) {
  return values.map((v) => h("option", {value: v}, v));
}

/** Selects `value`, adding it as an option (shown as `label`) when the select does not have it. */
export function choose(select, value, label = value) {
  if (![...select.options].some((o) => o.value === value)) select.append(h("option", {value}, label));
  select.value = value;
}

// ---- times -------------------------------------------------------------

let clockOffset = 0; // server time minus browser time, when they disagree

export function setClockOffset(ms) {
  clockOffset = Math.abs(ms) > 3000 ? ms : 0; // the Date header is whole seconds
}

export function now() {
  return Date.now() + clockOffset;
}

export function age(iso) {
  if (!iso) return "";
  const s = Math.round((now() - Date.parse(iso)) / 1000);
  const a = Math.abs(s);
  let text;
  if (a < 2) return "just now";
  if (a < 90) text = a + " s";
  else if (a < 90 * 60) text = Math.round(a / 60) + " min";
  else if (a < 36 * 3600) text = Math.round(a / 3600) + " h";
  else text = Math.round(a / 86400) + " d";
  return s >= 0 ? text + " ago" : "in " + text;
}

const sameDay = new Intl.DateTimeFormat(undefined, {hour: "2-digit", minute: "2-digit", second: "2-digit"});
const otherDay = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});

export function localTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return (d.toDateString() === new Date().toDateString() ? sameDay : otherDay).format(d);
}

/** A <time> showing local time and age (after an optional prefix), with the ISO time on hover. */
export function timeCell(el, iso, prefix = "") {
  if (!iso) {
    setText(el, "—");
    setAttr(el, "title", null);
    return;
  }
  setText(el, prefix + localTime(iso) + " · " + age(iso));
  setAttr(el, "title", iso);
  if (el.tagName === "TIME") setAttr(el, "datetime", iso);
}

/** Time since `iso` for a run going on: whole seconds, growing each refresh. */
export function elapsed(iso) {
  const s = Math.max(0, Math.floor((now() - Date.parse(iso)) / 1000));
  return s < 120 ? s + " s" : duration(s);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 0.001) return "< 1 ms";
  if (seconds < 1) return Math.round(seconds * 1000) + " ms";
  if (seconds < 120) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
  const m = Math.floor(seconds / 60);
  return m < 120 ? m + " min " + Math.round(seconds % 60) + " s" : (seconds / 3600).toFixed(1) + " h";
}

/** One-line JSON for tables; the full value goes in a title. */
export function brief(value, max = 80) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

export function pretty(value) {
  return value === null || value === undefined ? "—" : JSON.stringify(value, null, 2);
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

/** A message block for loading / empty / error states. */
export function note(text, kind = "") {
  return h("p.note" + (kind ? "." + kind : ""), null, text);
}
