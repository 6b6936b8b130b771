"""Runs (rows of ``executions``): hand-out to agents and their results.

Queries meant for a partial index spell its condition out ('Created',
('assigned', 'running')): SQLite uses a partial index only when it can see
the query implies the index's WHERE, which a bound parameter hides.

A task is claimed with ``UPDATE tasks ... WHERE id = ? AND status = 'Created'``
and the claim counts only if exactly one row changed, so no task is ever
handed to two agents however many ask at once.
"""
from octopus.constants import RunStatus, TaskOwnership, TaskStatus
from octopus.store.db import dumps, loads
from octopus.store.tasks import MAX_PAGE, ConflictError
from octopus.timeutil import iso

EXECUTION_LIST_COLUMNS = ("id, task_id, client, status, result, updated_at, created_at, "
                          "started_at, finished_at, duration")


def execution_from_row(row):
    run = dict(row)
    run["result"] = loads(run["result"])
    return run


class RunQueries:
    # -- hand-out ---------------------------------------------------------

    def _online_agents(self, conn, now):
        cutoff = iso(now - self.client_timeout)
        return [r["name"] for r in conn.execute(
            "SELECT name FROM agents WHERE last_heartbeat >= ? ORDER BY name", (cutoff,))]

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
            "FROM agents a WHERE a.last_heartbeat >= ? AND a.name IN (%s)) "
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
        conn.execute("INSERT INTO executions (task_id, client, status, updated_at, created_at, "
                     "started_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (task_id, agent, status, ts, ts,
                      ts if status == RunStatus.RUNNING else None))
        return conn.last_insert_rowid()

    def _hand_out(self, conn, task_id, owner, now, candidates):
        """Assign a due task by its owner rule; returns the agents to wake.

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
        conn.execute("UPDATE agents SET last_assigned = ? WHERE name = ?", (iso(now), agent))
        return [agent]

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
            "INSERT INTO executions (task_id, client, status, updated_at, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(task_id, name, RunStatus.ASSIGNED, ts, ts) for name in agents])
        return agents

    def hand_out(self, task_ids, candidates=()):
        """Hand out the given Created tasks that are due; returns the agents to wake."""
        now = self._clock()
        woken = set()
        with self._db.write() as conn:
            for task_id in task_ids:
                rows = conn.execute(
                    "SELECT owner FROM tasks WHERE id = ? AND status = ? AND next_run_at <= ?",
                    (task_id, TaskStatus.CREATED, iso(now))).fetchall()
                if rows:
                    woken.update(self._hand_out(conn, task_id, rows[0]["owner"], now,
                                                candidates))
        return woken

    def fan_out_due(self):
        """Fan out ALL tasks that were waiting for an agent to come online."""
        now = self._clock()
        with self._db.read() as conn:
            due = [r["id"] for r in conn.execute(
                "SELECT id FROM tasks WHERE owner = ? AND status = 'Created' AND next_run_at <= ?",
                (TaskOwnership.ALL, iso(now)))]
        return self.hand_out(due) if due else set()

    def tasks_due_between(self, after, until):
        """Created tasks whose start time is in (after, until], by the due index."""
        with self._db.read() as conn:
            return [r["id"] for r in conn.execute(
                "SELECT id FROM tasks INDEXED BY tasks_due WHERE status = 'Created' "
                "AND next_run_at > ? AND next_run_at <= ?", (after, until))]

    def claim_runs(self, agent, capacity):
        """Hand ``agent`` up to ``capacity`` runs and mark them running.

        First runs already assigned to it, then Created tasks owned by it or
        by Anyone (work that found every agent busy), oldest due first.
        """
        ts = iso(self._clock())
        if not self._anything_for(agent, ts):
            return []  # the common empty look, without taking the write lock
        claimed = []
        with self._db.write() as conn:
            for row in conn.execute(
                    "SELECT id FROM executions WHERE client = ? AND status = ? ORDER BY id LIMIT ?",
                    (agent, RunStatus.ASSIGNED, capacity)).fetchall():
                conn.execute("UPDATE executions SET status = ?, started_at = ?, updated_at = ? "
                             "WHERE id = ? AND status = ?",
                             (RunStatus.RUNNING, ts, ts, row["id"], RunStatus.ASSIGNED))
                if conn.changes() == 1:
                    claimed.append(row["id"])
            if len(claimed) < capacity:
                for row in conn.execute(
                        "SELECT id FROM tasks WHERE status = 'Created' AND owner IN (?, ?) "
                        "AND next_run_at <= ? ORDER BY next_run_at LIMIT ?",
                        (agent, TaskOwnership.ANYONE, ts, capacity - len(claimed))).fetchall():
                    run_id = self._assign(conn, row["id"], agent, ts, RunStatus.RUNNING)
                    if run_id is not None:
                        claimed.append(run_id)
            return self._run_payloads(conn, claimed)

    def _anything_for(self, agent, ts):
        with self._db.read() as conn:
            return bool(conn.execute(
                "SELECT 1 FROM executions WHERE client = ? AND status = 'assigned' "
                "UNION ALL SELECT 1 FROM tasks WHERE status = 'Created' AND owner IN (?, ?) "
                "AND next_run_at <= ? LIMIT 1",
                (agent, agent, TaskOwnership.ANYONE, ts)).fetchall())

    def _run_payloads(self, conn, run_ids):
        runs = []
        for run_id in run_ids:
            row = conn.execute(
                "SELECT e.id, e.task_id, t.plugin, t.action, t.args, t.kwargs, t.timeout "
                "FROM executions e JOIN tasks t ON t.id = e.task_id WHERE e.id = ?",
                (run_id,)).fetchall()[0]
            row["args"] = loads(row["args"])
            row["kwargs"] = loads(row["kwargs"])
            runs.append(row)
        return runs

    # -- results ----------------------------------------------------------

    def finish_runs(self, agent, results):
        """Record results reported by ``agent``.

        Each result is ``{"id", "status", "result", "output", "duration"}``.
        Returns ``(acked, rejected, finished_tasks)``: ids recorded or already
        recorded, ``(id, reason)`` pairs refused, task ids that reached a
        final state.
        """
        ts = iso(self._clock())
        acked, rejected, finished = [], [], []
        with self._db.write() as conn:
            for res in results:
                reason = self._finish_one(conn, agent, res, ts, finished)
                if reason is None:
                    acked.append(res["id"])
                else:
                    rejected.append((res["id"], reason))
        return acked, rejected, finished

    def _finish_one(self, conn, agent, res, ts, finished):
        rows = conn.execute("SELECT task_id, client, status FROM executions WHERE id = ?",
                            (res["id"],)).fetchall()
        if not rows:
            return "unknown run"
        run = rows[0]
        if run["client"] != agent:
            return "run belongs to another agent"
        if run["status"] in RunStatus.REPORTED:
            return None  # a repeated report: already recorded once
        # Open, or lost (its agent was cut off, then came back): the report stands,
        # and moves the task on unless the task has been given a newer run since.
        if run["status"] == RunStatus.LOST and not self._latest_run(conn, run["task_id"], res["id"]):
            conn.execute("UPDATE executions SET status = ?, result = ?, output = ?, duration = ?, "
                         "finished_at = ?, updated_at = ? WHERE id = ?",
                         (res["status"], dumps(res.get("result")), res.get("output"),
                          res.get("duration"), ts, ts, res["id"]))
            return None
        conn.execute(
            "UPDATE executions SET status = ?, result = ?, output = ?, duration = ?, "
            "finished_at = ?, updated_at = ? WHERE id = ? AND status IN (?, ?, ?)",
            (res["status"], dumps(res.get("result")), res.get("output"), res.get("duration"),
             ts, ts, res["id"]) + RunStatus.OPEN + (RunStatus.LOST,))
        if self._settle_task(conn, run["task_id"], agent, res, ts):
            finished.append(run["task_id"])
        return None

    def _latest_run(self, conn, task_id, run_id):
        """Is ``run_id`` the task's newest run (or is the task an ALL task)?"""
        rows = conn.execute("SELECT t.owner, (SELECT max(id) FROM executions WHERE task_id = t.id) "
                            "AS latest FROM tasks t WHERE t.id = ?", (task_id,)).fetchall()
        return bool(rows) and (rows[0]["owner"] == TaskOwnership.ALL
                               or rows[0]["latest"] == run_id)

    def _settle_task(self, conn, task_id, agent, res, ts):
        """Move the task on after one of its runs finished; True if now final."""
        task = conn.execute("SELECT owner FROM tasks WHERE id = ?", (task_id,)).fetchall()
        if not task:
            return False
        if task[0]["owner"] != TaskOwnership.ALL:
            status = (TaskStatus.FAILED if res["status"] in (RunStatus.LOST, RunStatus.TIMEOUT)
                      else res["status"])  # success, failed, cancelled: the same word
            conn.execute("UPDATE tasks SET status = ?, result = ?, executor = ?, updated_at = ? "
                         "WHERE id = ?", (status, dumps(res.get("result")), agent, ts, task_id))
            return True
        if self._open_runs(conn, task_id):
            conn.execute("UPDATE tasks SET updated_at = ? WHERE id = ?", (ts, task_id))
            return False
        summary = self._summary(conn, task_id)
        status = TaskStatus.CANCELLED if summary.get("cancelled") else TaskStatus.DONE
        conn.execute("UPDATE tasks SET status = ?, result = ?, updated_at = ? WHERE id = ?",
                     (status, dumps(summary), ts, task_id))
        return True

    def _summary(self, conn, task_id):
        """The result of an ALL task: counts and each agent's outcome."""
        summary = {"total": 0, "success": 0, "failed": 0, "timeout": 0, "cancelled": 0, "lost": 0,
                   "agents": {}}
        for row in conn.execute("SELECT client, status, result FROM executions "
                                "WHERE task_id = ? ORDER BY id", (task_id,)):
            summary["total"] += 1
            summary[row["status"]] = summary.get(row["status"], 0) + 1
            summary["agents"][row["client"]] = {"status": row["status"],
                                                "result": loads(row["result"])}
        return summary

    def lose_runs(self, agent, keep=None, started_before=None):
        """Settle ``agent``'s unfinished runs as lost.

        Returns ``(finished, requeued)``: tasks now final, and Anyone tasks
        given back to Created because their run was never picked up.  With
        ``keep`` (the run ids the agent says it has), only its running runs
        that it does not have and that started before ``started_before`` are
        lost: a run whose hand-out is still on its way is left alone.
        """
        ts = iso(self._clock())
        finished, requeued = [], []
        error = {"error": {"type": "AgentLost", "traceback": "", "message":
                           "agent %s went away, or no longer had this run, before reporting it"
                           % agent}}
        with self._db.write() as conn:
            for run in conn.execute(
                    "SELECT id, task_id, status, started_at, cancel_requested FROM executions "
                    "WHERE client = ? AND status IN (?, ?)", (agent,) + RunStatus.OPEN).fetchall():
                if keep is not None and (run["status"] != RunStatus.RUNNING or run["id"] in keep
                                         or run["started_at"] >= started_before):
                    continue
                if run["status"] == RunStatus.ASSIGNED and self._requeue(conn, run, ts):
                    requeued.append(run["task_id"])
                    continue
                # Lost while an operator was cancelling it: that is what it was.
                status = RunStatus.CANCELLED if run["cancel_requested"] else RunStatus.LOST
                res = {"id": run["id"], "status": status, "result": error}
                conn.execute("UPDATE executions SET status = ?, result = ?, finished_at = ?, "
                             "updated_at = ? WHERE id = ?",
                             (status, dumps(error), ts, ts, run["id"]))
                if self._settle_task(conn, run["task_id"], agent, res, ts):
                    finished.append(run["task_id"])
        return finished, requeued

    def _requeue(self, conn, run, ts):
        """Give back an Anyone task whose run its agent never picked up."""
        conn.execute("UPDATE tasks SET status = ?, executor = NULL, updated_at = ? "
                     "WHERE id = ? AND owner = ? AND status = ?",
                     (TaskStatus.CREATED, ts, run["task_id"], TaskOwnership.ANYONE,
                      TaskStatus.ACTIVE))
        if conn.changes() != 1:
            return False
        conn.execute("DELETE FROM executions WHERE id = ?", (run["id"],))
        return True

    def cancel_task(self, task_id):
        """Stop a task: runs not started are cancelled here, running ones are
        flagged for their agents.  Returns ``(task, agents)`` - the task (None
        if there is none) and the agents to tell - or raises ConflictError
        when the task has already ended.
        """
        ts = iso(self._clock())
        agents = set()
        with self._db.write() as conn:
            task = self._get_task(conn, task_id)
            if task is None:
                return None, agents
            if task["status"] in TaskStatus.FINAL:
                raise ConflictError("task %s has already ended (%s)" % (task_id, task["status"]))
            note = {"error": {"type": "Cancelled", "traceback": "",
                              "message": "cancelled by an operator"}}
            for run in conn.execute("SELECT id, client, status FROM executions WHERE task_id = ? "
                                    "AND status IN ('assigned', 'running')", (task_id,)).fetchall():
                if run["status"] == RunStatus.RUNNING:
                    conn.execute("UPDATE executions SET cancel_requested = ? WHERE id = ?",
                                 (ts, run["id"]))
                    agents.add(run["client"])
                    continue
                conn.execute("UPDATE executions SET status = ?, result = ?, finished_at = ?, "
                             "updated_at = ? WHERE id = ?",
                             (RunStatus.CANCELLED, dumps(note), ts, ts, run["id"]))
                self._settle_task(conn, task_id, run["client"], {
                    "status": RunStatus.CANCELLED, "result": note}, ts)
            if not agents and task["status"] == TaskStatus.CREATED:
                conn.execute("UPDATE tasks SET status = ?, result = ?, updated_at = ? "
                             "WHERE id = ?", (TaskStatus.CANCELLED, dumps(note), ts, task_id))
            return self._get_task(conn, task_id), agents

    def cancels_for(self, agent):
        """Runs of ``agent`` an operator asked to stop."""
        with self._db.read() as conn:
            return [r["id"] for r in conn.execute(
                "SELECT id FROM executions WHERE client = ? AND status = 'running' "
                "AND cancel_requested IS NOT NULL", (agent,))]

    def agents_with_open_runs(self):
        """Names of agents that hold runs not yet reported, with their last heartbeat."""
        with self._db.read() as conn:
            return conn.execute(
                "SELECT a.name, a.last_heartbeat FROM agents a WHERE EXISTS (SELECT 1 FROM "
                "executions e WHERE e.client = a.name AND e.status IN ('assigned', 'running'))"
                ).fetchall()

    # -- reading ----------------------------------------------------------

    def _executions_of(self, conn, task_id):
        return [execution_from_row(r) for r in conn.execute(
            "SELECT %s FROM executions WHERE task_id = ? ORDER BY id" % EXECUTION_LIST_COLUMNS,
            (task_id,))]

    def list_executions(self, task_id=None, client=None, status=None, limit=100, offset=0):
        where, params = [], []
        for name, value in (("task_id", task_id), ("client", client), ("status", status)):
            if value is not None:
                where.append("%s = ?" % name)
                params.append(value)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT %s FROM executions%s ORDER BY id DESC LIMIT ? OFFSET ?"
                % (EXECUTION_LIST_COLUMNS, clause),
                params + [min(limit, MAX_PAGE), offset]).fetchall()
        return [execution_from_row(r) for r in rows]

    def get_execution(self, run_id):
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM executions WHERE id = ?", (run_id,)).fetchall()
        return execution_from_row(rows[0]) if rows else None
