// What the server's tasks are made of, and rules on them shared by the views.
import {now} from "./dom.js";

export const TASK_STATUSES = ["Created", "Active", "success", "failed", "cancelled", "Done"];
export const TASK_TYPES = ["Adhoc", "Interval", "Scheduled"];
export const BROADCAST_OWNERS = ["Anyone", "ALL"]; // not an agent's name

/** Whether a task of this status and type has a next run to show (a recurring task goes on while Active). */
export function showsNextRun(t) {
  return t.status === "Created" || (t.type !== "Adhoc" && t.status === "Active");
}

/** A Created task past its time waits for an agent, not for a time: say which. */
export function waitingFor(t) {
  if (t.status !== "Created" || !t.next_run_at || Date.parse(t.next_run_at) > now() - 3000) return null;
  return BROADCAST_OWNERS.includes(t.owner) ? "waiting for an agent" : `waiting for ${t.owner}`;
}
