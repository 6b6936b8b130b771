// A run's result as a person reads it: text of several lines (a traceback, a
// command's output) as text with its line breaks, the rest as JSON. Server
// text reaches the page through textContent only (dom.js's h).
import {h, pretty} from "./dom.js";

/** Elements showing ``result``: a JSON block, then one labelled text block per long text. */
export function resultView(result) {
  if (!result || typeof result !== "object" || Array.isArray(result)) return [h("pre.value", null, pretty(result))];
  const rest = {...result};
  const texts = [];
  for (const [key, value] of Object.entries(result)) {
    if (key !== "error" && typeof value === "string" && value.includes("\n")) {
      delete rest[key];
      texts.push([key, value, "text"]);
    }
  }
  const error = result.error;
  if (error && typeof error === "object" && typeof error.traceback === "string") {
    rest.error = {...error};
    delete rest.error.traceback;
    texts.push(["traceback", error.traceback, "traceback"]);
  }
  return [h("pre.value", null, pretty(rest)),
    ...texts.map(([label, text, kind]) => h("div.text-block", null, h("h3", null, label), h(`pre.${kind}`, null, text)))];
}
