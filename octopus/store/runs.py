"""Runs (rows of ``executions``): hand-out to agents and their results.

Queries meant for a partial index spell its condition out ('Created',
('assigned', 'running')): SQLite uses a partial index only when it can see
the query implies the index's WHERE, which a bound parameter hides.

A task is claimed with ``UPDATE tasks ... WHERE id = ? AND status = 'Created'``
and the claim counts only if exactly one row changed, so no task is ever
handed to two agents however many ask at once.
"""
import os

from octopus.constants import RunStatus, TaskOwnership, TaskStatus, TaskType
from octopus.store import previews
from octopus.store.agents import TAKES_WORK
from octopus.store.db import dumps, equal_to, loads, where_clause
from octopus.store.recurring import RecurringQueries
from octopus.store.settle import SettleQueries
from octopus.store.tasks import MAX_PAGE
from octopus.timeutil import iso

EXECUTION_LIST_COLUMNS = previews.listing_columns(
    ("id", "task_id", "client", "status", "attempt", "due_at", "result", "updated_at",
     "created_at", "started_at", "finished_at", "duration"), ("result",))
# A waiting run may start unless its task queues runs (overlap "queue") and
# one before it on the same agent (any agent, for an Anyone run) is going.
# ``{run}`` names the waiting run's table in the statement.  The redundant
# status list lets SQLite read the executions_pending index, not the history.
MAY_START = ("(SELECT overlap FROM tasks WHERE id = {run}.task_id) != 'queue' OR NOT EXISTS ("
             "SELECT 1 FROM executions o WHERE o.task_id = {run}.task_id AND o.status IN "
             "('queued', 'assigned', 'running') AND o.status IN ('assigned', 'running') "
             "AND ({run}.client IS NULL OR o.client = {run}.client))")


def new_lease():
    return os.urandom(8).hex()


def execution_from_row(row):
    return previews.from_whole(dict(row), ("result",))


def execution_from_listing(row):
    return previews.from_listing(dict(row), ("result",))


class RunQueries(SettleQueries, RecurringQueries):
    # -- hand-out ---------------------------------------------------------

    def _online_agents(self, conn, now):
        """Agents an ALL task goes to: online and asking for work since they came
        online (a client that only heartbeats gets none; nor does a revoked or
        stopped agent)."""
        return [r["name"] for r in conn.execute(
            "SELECT a.name FROM agents a WHERE %s ORDER BY a.name" % TAKES_WORK,
            {"cutoff": iso(now - self.client_timeout)})]

    def _least_busy_agent(self, conn, now, candidates):
        """Of ``candidates`` (agents asking for work now), the online one with a
        free slot and the fewest open runs, or None.  Ties go to the one given
        Anyone work longest ago.  Slots are counted here, inside the
        transaction, so hand-outs racing on one list of candidates cannot
        overfill an agent.
        """
        names = sorted(set(candidates))[:1000]
        if not names:
            return None
        rows = conn.execute(
            "SELECT name FROM (SELECT a.name, a.concurrency, a.last_assigned, "
            "(SELECT count(*) FROM executions e WHERE e.client = a.name "
            "AND e.status IN ('assigned', 'running')) AS running "
            "FROM agents a WHERE a.last_heartbeat >= ? AND a.stopped_at IS NULL "
            "AND a.name IN (%s)) "
            "WHERE running < coalesce(concurrency, 1) "
            "ORDER BY running, last_assigned IS NOT NULL, last_assigned, name LIMIT 1"
            % ", ".join("?" * len(names)),
            [iso(now - self.client_timeout)] + names).fetchall()
        return rows[0]["name"] if rows else None

    def _assign(self, conn, task_id, agent, ts, status=RunStatus.ASSIGNED):
        """Give a Created task to ``agent``; returns the run id, or None if it was taken."""
        conn.execute("UPDATE tasks SET status = ?, executor = ?, updated_at = ? "
                     "WHERE id = ? AND status = ?",
                     (TaskStatus.ACTIVE, agent, ts, task_id, TaskStatus.CREATED))
        if conn.changes() != 1:
            return None
        running = status == RunStatus.RUNNING
        # due_at: when the task became due, so dispatch latency counts its wait in Created.
        conn.execute("INSERT INTO executions (task_id, client, status, due_at, updated_at, "
                     "created_at, started_at, lease) VALUES (?, ?, ?, (SELECT next_run_at FROM "
                     "tasks WHERE id = ?), ?, ?, ?, ?)",
                     (task_id, agent, status, task_id, ts, ts, ts if running else None,
                      new_lease() if running else None))
        return conn.last_insert_rowid()

    def _hand_out(self, conn, task_id, owner, now, candidates):
        """Assign a due Adhoc task by its owner rule; returns the agents to wake.

        Anyone goes to the least busy of the agents asking for work now (an
        agent asks only with a free slot), or waits in Created for the first
        agent that asks; a named agent picks its task up when it asks; ALL
        fans out to every online agent.
        """
        if owner == TaskOwnership.ALL:
            return self._fan_out(conn, task_id, now)
        if owner != TaskOwnership.ANYONE:
            return [owner]
        agent = self._least_busy_agent(conn, now, candidates)
        if agent is None or self._assign(conn, task_id, agent, iso(now)) is None:
            return []
        self._given_work(conn, agent, now)
        return [agent]

    def _given_work(self, conn, agent, now):
        """``agent`` was just given Anyone work: it goes last among equally busy ones."""
        conn.execute("UPDATE agents SET last_assigned = ? WHERE name = ?", (iso(now), agent))

    def _fan_out(self, conn, task_id, now):
        """Give an ALL task one run per online agent; returns their names."""
        agents = self._online_agents(conn, now)
        if not agents:
            return []
        ts = iso(now)
        conn.execute(
            "UPDATE tasks SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
            (TaskStatus.ACTIVE, ts, task_id, TaskStatus.CREATED))
        if conn.changes() != 1:
            return []
        conn.executemany(
            "INSERT INTO executions (task_id, client, status, due_at, updated_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(task_id, name, RunStatus.ASSIGNED, ts, ts, ts) for name in agents])
        return agents

    def _hand_out_queued(self, conn, task_id, now, candidates):
        """Offer the task's waiting runs that may start now; returns the agents to wake."""
        woken = set()
        for run in conn.execute(
                "SELECT e.id, e.client FROM executions e WHERE e.task_id = ? AND e.status IN "
                "('queued', 'assigned', 'running') AND e.status = 'queued' AND e.due_at <= ? "
                "AND (%s) ORDER BY e.due_at, e.id" % MAY_START.format(run="e"),
                (task_id, iso(now))).fetchall():
            if run["client"] is not None:
                woken.add(run["client"])  # it claims the run when it asks
                continue
            agent = self._least_busy_agent(conn, now, candidates)
            if agent is None:
                break
            # Checked again: one queued behind another may not start beside it.
            conn.execute("UPDATE executions SET status = 'assigned', client = ?, updated_at = ? "
                         "WHERE id = ? AND status = 'queued' AND (%s)"
                         % MAY_START.format(run="executions"), (agent, iso(now), run["id"]))
            if conn.changes() != 1:
                continue
            self._given_work(conn, agent, now)
            woken.add(agent)
        return woken

    def hand_out(self, task_ids, candidates=()):
        """Hand out what is due of the given tasks (a Created task, a recurring
        task's slot, waiting runs); returns the agents to wake."""
        now = self._clock()
        woken = set()
        with self._db.write() as conn:
            for task_id in task_ids:
                task = self._get_task(conn, task_id)
                if task is None:
                    continue
                due = task["next_run_at"] is not None and task["next_run_at"] <= iso(now)
                if not due:
                    pass
                elif task["type"] != TaskType.ADHOC:
                    if task["status"] in (TaskStatus.CREATED, TaskStatus.ACTIVE):
                        woken.update(self._fire(conn, task, now, candidates))
                elif task["status"] == TaskStatus.CREATED:
                    woken.update(self._hand_out(conn, task_id, task["owner"], now, candidates))
                woken.update(self._hand_out_queued(conn, task_id, now, candidates))
        return woken

    def fan_out_due(self):
        """Fan out ALL tasks that were waiting for an agent to take work."""
        now = self._clock()
        with self._db.read() as conn:
            due = [r["id"] for r in conn.execute(
                "SELECT id FROM tasks WHERE owner = ? AND status = 'Created' AND type = ? "
                "AND next_run_at <= ?", (TaskOwnership.ALL, TaskType.ADHOC, iso(now)))]
        return self.hand_out(due) if due else set()

    def due_between(self, after, until):
        """Tasks with something that became due in (after, until]: a Created
        Adhoc task's start time, or a waiting run's (a retry's) due time."""
        with self._db.read() as conn:
            tasks = [r["id"] for r in conn.execute(
                "SELECT id FROM tasks INDEXED BY tasks_due WHERE status = 'Created' "
                "AND next_run_at > ? AND next_run_at <= ? AND type = ?",
                (after, until, TaskType.ADHOC))]
            # Only runs made to wait (retries): one due when made was offered then.
            runs = [r["task_id"] for r in conn.execute(
                "SELECT DISTINCT task_id FROM executions INDEXED BY executions_queued_due "
                "WHERE status = 'queued' AND due_at > ? AND due_at <= ? AND due_at > created_at",
                (after, until))]
        return list(dict.fromkeys(tasks + runs))

    def claim_runs(self, agent, capacity):
        """Hand ``agent`` up to ``capacity`` runs and mark them running.

        First runs already assigned to it, then waiting runs for it or for
        any agent, then Created Adhoc tasks owned by it or by Anyone (work
        that found every agent busy), oldest due first.  Each claimed run
        gets a new lease the agent reports back with.
        """
        now = self._clock()
        ts = iso(now)
        if not self._anything_for(agent, ts, iso(now - self.client_timeout)):
            return []  # the common empty look, without taking the write lock
        claimed = []
        with self._db.write() as conn:
            for sql, params in (
                    ("SELECT id FROM executions WHERE client = ? AND status = 'assigned' "
                     "ORDER BY id LIMIT ?", (agent,)),
                    ("SELECT id FROM executions e INDEXED BY executions_queued WHERE client = ? "
                     "AND status = 'queued' AND due_at <= ? AND (%s) ORDER BY due_at LIMIT ?"
                     % MAY_START.format(run="e"), (agent, ts)),
                    ("SELECT id FROM executions e INDEXED BY executions_queued WHERE client IS NULL "
                     "AND status = 'queued' AND due_at <= ? AND (%s) ORDER BY due_at LIMIT ?"
                     % MAY_START.format(run="e"), (ts,))):
                if len(claimed) >= capacity:
                    break
                for row in conn.execute(sql, params + (capacity - len(claimed) + 20,)).fetchall():
                    if len(claimed) < capacity and self._start_run(conn, row["id"], agent, ts):
                        claimed.append(row["id"])
            if len(claimed) < capacity:
                for row in conn.execute(
                        "SELECT id FROM tasks WHERE status = 'Created' AND owner IN (?, ?) "
                        "AND next_run_at <= ? AND type = ? ORDER BY next_run_at LIMIT ?",
                        (agent, TaskOwnership.ANYONE, ts, TaskType.ADHOC,
                         capacity - len(claimed))).fetchall():
                    run_id = self._assign(conn, row["id"], agent, ts, RunStatus.RUNNING)
                    if run_id is not None:
                        claimed.append(run_id)
            return self._run_payloads(conn, claimed)

    def _start_run(self, conn, run_id, agent, ts):
        """An assigned or waiting run becomes ``agent``'s running run, if it may start."""
        conn.execute("UPDATE executions SET status = 'running', client = ?, started_at = ?, "
                     "updated_at = ?, lease = ? WHERE id = ? AND (status = 'assigned' OR "
                     "status = 'queued' AND (%s))" % MAY_START.format(run="executions"),
                     (agent, ts, ts, new_lease(), run_id))
        if conn.changes() != 1:
            return False
        conn.execute("UPDATE tasks SET executor = ? WHERE id = (SELECT task_id FROM executions "
                     "WHERE id = ?) AND owner != ?", (agent, run_id, TaskOwnership.ALL))
        return True

    def _anything_for(self, agent, ts, online_since):
        """Is there work for ``agent``?  Never for an agent counted offline: a
        request it left held when it died must not take work."""
        with self._db.read() as conn:
            if conn.execute("SELECT 1 FROM agents WHERE name = ? AND (last_heartbeat < ? "
                            "OR stopped_at IS NOT NULL)", (agent, online_since)).fetchall():
                return False
            return bool(conn.execute(
                "SELECT 1 FROM executions WHERE client = ? AND status = 'assigned' "
                "UNION ALL SELECT 1 FROM executions INDEXED BY executions_queued "
                "WHERE client = ? AND status = 'queued' AND due_at <= ? "
                "UNION ALL SELECT 1 FROM executions INDEXED BY executions_queued "
                "WHERE client IS NULL AND status = 'queued' AND due_at <= ? "
                "UNION ALL SELECT 1 FROM tasks WHERE status = 'Created' AND owner IN (?, ?) "
                "AND next_run_at <= ? AND type = 'Adhoc' LIMIT 1",
                (agent, agent, ts, ts, agent, TaskOwnership.ANYONE, ts)).fetchall())

    def _run_payloads(self, conn, run_ids):
        runs = []
        for run_id in run_ids:
            row = conn.execute(
                "SELECT e.id, e.task_id, e.attempt, e.lease, e.due_at, t.plugin, t.action, t.args, "
                "t.kwargs, t.timeout, t.keep_processes FROM executions e "
                "JOIN tasks t ON t.id = e.task_id WHERE e.id = ?", (run_id,)).fetchall()[0]
            row["keep_processes"] = bool(row["keep_processes"])
            row["args"] = loads(row["args"])
            row["kwargs"] = loads(row["kwargs"])
            runs.append(row)
        return runs

    # -- results ----------------------------------------------------------

    def finish_runs(self, agent, results):
        """Record results reported by ``agent``.

        Each result is ``{"id", "status", "result", "output", "duration"}``,
        with the ``lease`` the run was handed out with.  Returns ``(acked,
        rejected, finished, ready)``: ids recorded or already recorded,
        ``(id, reason)`` pairs refused (fenced: the agent no longer holds the
        run), task ids that reached a final state, task ids with a run that
        may start now (a retry, or one queued behind the run that ended).
        """
        ts = iso(self._clock())
        acked, rejected, finished, ready = [], [], [], []
        with self._db.write() as conn:
            for res in results:
                reason = self._finish_one(conn, agent, res, ts, finished, ready)
                if reason is None:
                    acked.append(res["id"])
                else:
                    rejected.append((res["id"], reason))
        return acked, rejected, finished, list(dict.fromkeys(ready))

    def _finish_one(self, conn, agent, res, ts, finished, ready):
        rows = conn.execute("SELECT id, task_id, client, status, attempt, lease FROM executions "
                            "WHERE id = ?", (res["id"],)).fetchall()
        if not rows:  # its task was deleted: the agent has settled it, no more to stop
            conn.execute("DELETE FROM orphan_cancels WHERE run_id = ? AND client = ?",
                         (res["id"], agent))
            return "unknown run"
        run = rows[0]
        if run["client"] != agent:
            return "fenced: the run belongs to another agent"
        if res.get("lease") is not None and res["lease"] != run["lease"]:
            return "fenced: the run was handed out again since (lease %s)" % str(res["lease"])[:32]
        if run["status"] in RunStatus.REPORTED:
            return None  # a repeated report: already recorded once
        if run["status"] not in RunStatus.OPEN + (RunStatus.LOST,):
            return "fenced: the run is %s" % run["status"]
        if run["status"] == RunStatus.LOST:
            # Its agent was cut off, then came back: the report stands, and
            # withdraws a retry not started yet, unless another try has started.
            if self._superseded(conn, run["task_id"], res["id"]):
                return "fenced: the run was lost and tried again since"
            conn.execute("DELETE FROM executions WHERE retry_of = ? AND status = 'queued'",
                         (res["id"],))
        self._record(conn, res, ts)
        if self._settle_task(conn, run["task_id"], run, res, ts):
            finished.append(run["task_id"])
        elif self._queued_now(conn, run["task_id"]):  # a final task has nothing waiting
            ready.append(run["task_id"])
        return None

    def _record(self, conn, res, ts):
        """Write how a run ended (reported by its agent, or lost, or cancelled here)."""
        self._count_finished(res["status"])
        conn.execute("UPDATE executions SET status = ?, result = ?, output = ?, duration = ?, "
                     "finished_at = ?, updated_at = ? WHERE id = ?",
                     (res["status"], dumps(res.get("result")), res.get("output"),
                      res.get("duration"), ts, ts, res["id"]))

    def _superseded(self, conn, task_id, run_id):
        """Has a retry of ``run_id`` started, or its task ended?"""
        rows = conn.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchall()
        if not rows or rows[0]["status"] in TaskStatus.FINAL:
            return True
        return bool(conn.execute("SELECT 1 FROM executions WHERE retry_of = ? AND status != "
                                 "'queued' LIMIT 1", (run_id,)).fetchall())

    def reported(self, run_ids):
        """Those of these runs that have ended, or are gone with their task and
        stopped (at most 1024 are looked at)."""
        ids = sorted(run_ids)[:1024]
        with self._db.read() as conn:
            marks = ", ".join("?" * len(ids))
            # A run of a deleted task is gone from executions but its agent may
            # still be stopping it: it frees its slot when its stop order goes.
            still_open = {r["id"] for r in conn.execute(
                "SELECT id FROM executions WHERE id IN (%s) AND status IN "
                "('queued', 'assigned', 'running') UNION SELECT run_id FROM orphan_cancels "
                "WHERE run_id IN (%s)" % (marks, marks), ids + ids)}
        return set(ids) - still_open

    def cancels_for(self, agent):
        """Runs of ``agent`` an operator asked to stop (their task cancelled or deleted)."""
        with self._db.read() as conn:
            return [r["id"] for r in conn.execute(
                "SELECT id FROM executions WHERE client = ? AND status = 'running' "
                "AND cancel_requested IS NOT NULL "
                "UNION SELECT run_id FROM orphan_cancels WHERE client = ?", (agent, agent))]

    def agents_with_open_runs(self):
        """Names of agents that hold runs not yet reported (or an ALL task's
        waiting runs), with their last heartbeat and when they said goodbye."""
        with self._db.read() as conn:
            return conn.execute(
                "SELECT a.name, a.last_heartbeat, a.stopped_at FROM agents a WHERE EXISTS (SELECT 1 FROM "
                "executions e WHERE e.client = a.name AND e.status IN ('assigned', 'running')) "
                "OR EXISTS (SELECT 1 FROM executions e WHERE e.client = a.name AND e.status = "
                "'queued' AND (SELECT owner FROM tasks WHERE id = e.task_id) = 'ALL')"
                ).fetchall()

    def agents_with_cancels(self):
        """Agents with runs to stop (asked before a restart, say)."""
        with self._db.read() as conn:
            return [r["client"] for r in conn.execute(
                "SELECT DISTINCT client FROM executions WHERE status = 'running' "
                "AND cancel_requested IS NOT NULL UNION SELECT client FROM orphan_cancels")]

    # -- reading ----------------------------------------------------------

    def _executions_of(self, conn, task_id, limit=MAX_PAGE):
        """The task's newest ``limit`` runs, oldest first."""
        rows = conn.execute(
            "SELECT %s FROM executions WHERE task_id = ? ORDER BY id DESC LIMIT ?"
            % EXECUTION_LIST_COLUMNS, (task_id, limit)).fetchall()
        return [execution_from_listing(r) for r in reversed(rows)]

    def list_executions(self, task_id=None, client=None, status=None, limit=100, offset=0):
        where, params = equal_to({"task_id": task_id, "client": client, "status": status},
                                 ("task_id", "client", "status"))
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT %s FROM executions%s ORDER BY id DESC LIMIT ? OFFSET ?"
                % (EXECUTION_LIST_COLUMNS, where_clause(where)),
                params + [min(limit, MAX_PAGE), offset]).fetchall()
        return [execution_from_listing(r) for r in rows]

    def get_execution(self, run_id):
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM executions WHERE id = ?", (run_id,)).fetchall()
        return execution_from_row(rows[0]) if rows else None
