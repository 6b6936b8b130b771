"""What a task does when one of its runs ends: try again, wait for its next
slot, or end.  Also runs lost with their agent, and cancel.

Each try is its own executions row with an ``attempt`` number.  A retry is a
``queued`` row due after the task's delay (``retry_delay * retry_backoff **
(attempt - 1)``, capped by RETRY_MAX_DELAY); an Anyone retry may go to any
agent, a Specific one waits for its agent, an ALL one goes to the same agent.
"""
from octopus.constants import RunStatus, TaskOwnership, TaskStatus, TaskType, run_error
from octopus.store.db import dumps
from octopus.store.previews import stored_json
from octopus.store.tasks import ConflictError
from octopus.timeutil import iso

RETRYABLE = (RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.LOST)
CANCEL_NOTE = run_error("Cancelled", "cancelled by an operator")


def lost_note(agent):
    return run_error("AgentLost", "agent %s went away, or no longer had this run, before "
                     "reporting it" % agent)


class SettleQueries:
    def _settle_task(self, conn, task_id, run, res, ts):
        """Move the task on after ``run`` ended with ``res``; True if the task is now final.

        ``run`` has the row's ``id``, ``client`` and ``attempt``.
        """
        task = self._get_task(conn, task_id)
        if task is None or task["status"] in TaskStatus.FINAL:
            return False
        recurring = task["type"] in TaskType.RECURRING
        if self._retry(conn, task, run, res["status"]):
            conn.execute("UPDATE tasks SET result = ?, updated_at = ? WHERE id = ?",
                         (dumps(res.get("result")), ts, task_id))
            return False
        if not recurring and task["owner"] != TaskOwnership.ALL:
            status = (TaskStatus.FAILED if res["status"] in (RunStatus.LOST, RunStatus.TIMEOUT)
                      else res["status"])  # success, failed, cancelled: the same word
            conn.execute("UPDATE tasks SET status = ?, result = ?, executor = ?, updated_at = ? "
                         "WHERE id = ?", (status, dumps(res.get("result")), run["client"], ts,
                                          task_id))
            return True
        if recurring:  # the latest run's outcome shows on the task between runs
            conn.execute("UPDATE tasks SET result = ?, executor = CASE WHEN owner = ? THEN NULL "
                         "ELSE ? END, updated_at = ? WHERE id = ?",
                         (dumps(res.get("result")), TaskOwnership.ALL, run["client"], ts, task_id))
        if self._pending_runs(conn, task_id) or (recurring and task["next_run_at"] is not None):
            conn.execute("UPDATE tasks SET updated_at = ? WHERE id = ?", (ts, task_id))
            return False
        return self._end(conn, task, ts)

    def _end(self, conn, task, ts):
        """A task with nothing left to run: Done (or cancelled), with its result."""
        if task["type"] in TaskType.RECURRING:
            status = TaskStatus.CANCELLED if task["cancelled_at"] else TaskStatus.DONE
            conn.execute("UPDATE tasks SET status = ?, next_run_at = NULL, updated_at = ? "
                         "WHERE id = ?", (status, ts, task["id"]))
            return True
        summary = self._summary(conn, task["id"])
        status = (TaskStatus.CANCELLED if summary.get("cancelled") or task["cancelled_at"]
                  else TaskStatus.DONE)
        conn.execute("UPDATE tasks SET status = ?, result = ?, updated_at = ? WHERE id = ?",
                     (status, dumps(summary), ts, task["id"]))
        return True

    def _retry(self, conn, task, run, status):
        """Queue the next attempt if the task has tries left; True if it did.

        A run lost with its agent is tried again at once, and at least once
        (unless the task is for ALL: that agent's share is lost).
        """
        if status not in RETRYABLE or task["cancelled_at"]:
            return False
        budget = task["max_retries"]
        if status == RunStatus.LOST:
            if task["owner"] == TaskOwnership.ALL:
                return False  # that agent's share is lost: it is gone
            budget = max(budget, 1)
        if run["attempt"] > budget:
            return False
        delay = 0.0 if status == RunStatus.LOST else min(
            task["retry_delay"] * task["retry_backoff"] ** (run["attempt"] - 1),
            self.retry_max_delay)
        now = self._clock()
        client = None if task["owner"] == TaskOwnership.ANYONE else run["client"]
        conn.execute("INSERT INTO executions (task_id, client, status, attempt, due_at, "
                     "updated_at, created_at, retry_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (task["id"], client, RunStatus.QUEUED, run["attempt"] + 1, iso(now + delay),
                      iso(now), iso(now), run["id"]))
        if client is None:
            conn.execute("UPDATE tasks SET executor = NULL WHERE id = ?", (task["id"],))
        return True

    def _pending_runs(self, conn, task_id):
        return conn.execute(  # statuses spelled out for the executions_pending index
            "SELECT count(*) AS n FROM executions WHERE task_id = ? "
            "AND status IN ('queued', 'assigned', 'running')", (task_id,)).fetchall()[0]["n"]

    def _summary(self, conn, task_id):
        """The result of an ALL task: each agent's last try, and counts of them."""
        agents = {}
        for row in conn.execute("SELECT client, status, result, attempt FROM executions "
                                "WHERE task_id = ? ORDER BY id", (task_id,)):
            result = stored_json(row["result"])[0]  # a deep old one: as its text
            agents[row["client"]] = {"status": row["status"], "result": result,
                                     "attempts": row["attempt"]}
        summary = {"total": len(agents), "success": 0, "failed": 0, "timeout": 0,
                   "cancelled": 0, "lost": 0, "agents": agents}
        for outcome in agents.values():
            summary[outcome["status"]] = summary.get(outcome["status"], 0) + 1
        return summary

    # -- agents that went away -------------------------------------------

    def lose_runs(self, agent, keep=None, started_before=None, silent_since=None):
        """Settle ``agent``'s unfinished runs as lost.

        Returns ``(finished, requeued)``: tasks now final, and tasks with a
        run waiting again for any agent (an Anyone run it never picked up,
        or a retry of a lost one).  An ALL task's runs waiting for this agent
        (queued behind another, or a retry) are lost with it.  With ``keep``
        (the run ids the agent says it has), only its running runs that it
        does not have and that started before ``started_before`` are lost: a
        run whose hand-out is still on its way is left alone.  With ``silent_since``, nothing is
        lost if the agent's heartbeat came since (it reconnected meanwhile) and
        it has not said goodbye.
        """
        ts = iso(self._clock())
        finished, requeued = [], []
        if keep is not None and not self._runs_not_kept(agent, keep, started_before):
            return finished, requeued  # every heartbeat asks: answer it without the write lock
        error = lost_note(agent)
        with self._db.write() as conn:
            if silent_since is not None and conn.execute(
                    "SELECT 1 FROM agents WHERE name = ? AND last_heartbeat >= ? "
                    "AND stopped_at IS NULL",
                    (agent, silent_since)).fetchall():
                return finished, requeued
            for run in conn.execute(
                    "SELECT e.id, e.task_id, e.client, e.status, e.attempt, e.started_at, "
                    "e.cancel_requested, t.owner FROM executions e JOIN tasks t "
                    "ON t.id = e.task_id WHERE e.client = ? AND e.status IN "
                    "('queued', 'assigned', 'running')", (agent,)).fetchall():
                if keep is not None and (run["status"] != RunStatus.RUNNING or run["id"] in keep
                                         or run["started_at"] >= started_before):
                    continue
                if run["status"] == RunStatus.QUEUED and run["owner"] != TaskOwnership.ALL:
                    continue  # a named agent's waiting run waits for it to come back
                if run["status"] == RunStatus.ASSIGNED and self._requeue(conn, run, ts):
                    requeued.append(run["task_id"])
                    continue
                # Lost while an operator was cancelling it: that is what it was.
                status = RunStatus.CANCELLED if run["cancel_requested"] else RunStatus.LOST
                res = {"id": run["id"], "status": status, "result": error}
                self._record(conn, res, ts)
                if self._settle_task(conn, run["task_id"], run, res, ts):
                    finished.append(run["task_id"])
                elif self._queued_now(conn, run["task_id"]):
                    requeued.append(run["task_id"])
        return finished, list(dict.fromkeys(requeued))

    def _runs_not_kept(self, agent, keep, started_before):
        with self._db.read() as conn:
            return [r["id"] for r in conn.execute(
                "SELECT id FROM executions WHERE status IN ('assigned', 'running') "
                "AND client = ? AND status = 'running' AND started_at < ?",
                (agent, started_before)) if r["id"] not in keep]

    def _requeue(self, conn, run, ts):
        """An Anyone run its agent never picked up waits for any agent again
        (not a new attempt: it never started)."""
        conn.execute("UPDATE executions SET status = ?, client = NULL, updated_at = ? "
                     "WHERE id = ? AND status = ? AND (SELECT owner FROM tasks WHERE id = ?) = ?",
                     (RunStatus.QUEUED, ts, run["id"], RunStatus.ASSIGNED, run["task_id"],
                      TaskOwnership.ANYONE))
        if conn.changes() != 1:
            return False
        conn.execute("UPDATE tasks SET executor = NULL, updated_at = ? WHERE id = ?",
                     (ts, run["task_id"]))
        return True

    def _queued_now(self, conn, task_id):
        return bool(conn.execute(
            "SELECT 1 FROM executions WHERE task_id = ? AND status IN ('queued', 'assigned', "
            "'running') AND status = 'queued' AND due_at <= ? LIMIT 1",
            (task_id, iso(self._clock()))).fetchall())

    # -- cancel -----------------------------------------------------------

    def cancel_task(self, task_id):
        """Stop a task: it stops recurring, runs not started are cancelled
        here, running ones are flagged for their agents.  Returns ``(task,
        agents)`` - the task (None if there is none) and the agents to tell -
        or raises ConflictError when the task has already ended.
        """
        ts = iso(self._clock())
        agents = set()
        with self._db.write() as conn:
            task = self._get_task(conn, task_id)
            if task is None:
                return None, agents
            if task["status"] in TaskStatus.FINAL:
                raise ConflictError("task %s has already ended (%s)" % (task_id, task["status"]))
            conn.execute("UPDATE tasks SET cancelled_at = ?, next_run_at = CASE WHEN type = ? "
                         "THEN next_run_at END, updated_at = ? WHERE id = ?",
                         (ts, TaskType.ADHOC, ts, task_id))
            for run in conn.execute("SELECT id, client, status, attempt FROM executions "
                                    "WHERE task_id = ? AND status IN ('queued', 'assigned', "
                                    "'running')", (task_id,)).fetchall():
                if run["status"] == RunStatus.RUNNING:
                    conn.execute("UPDATE executions SET cancel_requested = ? WHERE id = ?",
                                 (ts, run["id"]))
                    agents.add(run["client"])
                    continue
                res = {"id": run["id"], "status": RunStatus.CANCELLED, "result": CANCEL_NOTE}
                self._record(conn, res, ts)
                self._settle_task(conn, task_id, run, res, ts)
            task = self._get_task(conn, task_id)
            if not agents and task["status"] not in TaskStatus.FINAL:
                conn.execute("UPDATE tasks SET status = ?, result = ?, next_run_at = NULL, "
                             "updated_at = ? WHERE id = ?",
                             (TaskStatus.CANCELLED, dumps(CANCEL_NOTE), ts, task_id))
            return self._get_task(conn, task_id), agents
