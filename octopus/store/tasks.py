"""Task rows: create, read, list, change, delete."""
from octopus.constants import TaskStatus, TaskType
from octopus.store.db import dumps, loads
from octopus.store.recurring import first_slot, reschedule
from octopus.timeutil import iso, parse_iso

_JSON = ("args", "kwargs")
FILTERS = ("status", "owner", "type", "executor", "plugin")
MAX_PAGE = 1000  # rows in one page of a listing
SEARCHED = ("id", "plugin", "action", "owner", "executor", "args", "kwargs")
RESCHEDULE = {"type", "interval", "timezone", "execution_start_time", "execution_end_time"}


def task_from_row(row):
    task = dict(row)
    task["args"] = loads(task["args"])
    task["kwargs"] = loads(task["kwargs"])
    task["result"] = loads(task["result"])
    return task


def _encode(fields):
    return {k: (dumps(v) if k in _JSON else v) for k, v in fields.items()}


class TaskQueries:
    def create_task(self, fields, delay=0.0, candidates=()):
        """Insert a task and, if it is due, hand it out (see RunQueries._hand_out).

        Returns ``(task, agents)``: the new task and the agents to wake.
        """
        tasks, agents = self.create_tasks([fields], delay, candidates)
        return tasks[0], agents

    def create_tasks(self, many, delay=0.0, candidates=()):
        """Insert tasks in one transaction (all or none), handing out those due.

        Returns ``(tasks, agents)``: the new tasks and the agents to wake.
        """
        agents = []
        with self._db.write() as conn:
            now = self._clock()  # taken under the lock: times follow commit order
            tasks = []
            for fields in many:
                task, woken = self._insert_task(conn, fields, now, delay, candidates)
                tasks.append(task)
                agents.extend(a for a in woken if a not in agents)
        return tasks, agents

    def _insert_task(self, conn, fields, now, delay, candidates):
        row = dict(_encode(fields), id=self._new_id(), status=TaskStatus.CREATED,
                   created_at=iso(now), updated_at=iso(now),
                   next_run_at=max(fields.get("execution_start_time") or "", iso(now + delay)))
        recurring = row.get("type") in TaskType.RECURRING
        if recurring:
            row["next_run_at"] = iso(first_slot(row, parse_iso(row["created_at"])))
        columns = ", ".join(row)
        marks = ", ".join(":" + k for k in row)
        conn.execute("INSERT INTO tasks (%s) VALUES (%s)" % (columns, marks), row)
        agents = []
        if row["next_run_at"] <= iso(now):
            agents = (self._fire(conn, self._get_task(conn, row["id"]), now, candidates)
                      if recurring else
                      self._hand_out(conn, row["id"], row["owner"], now, candidates))
        return self._get_task(conn, row["id"]), agents

    def get_task(self, task_id, with_executions=False, runs=MAX_PAGE):
        """The task, with its newest ``runs`` executions if ``with_executions``."""
        with self._db.read() as conn:
            conn.execute("BEGIN")
            try:
                task = self._get_task(conn, task_id)
                if task is not None and with_executions:
                    task["executions"] = self._executions_of(conn, task_id, runs)
            finally:
                conn.execute("COMMIT")
        return task

    def _get_task(self, conn, task_id):
        rows = conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchall()
        return task_from_row(rows[0]) if rows else None

    def list_tasks(self, filters=None, limit=100, offset=0, text=None):
        """Newest first. Returns ``(tasks, total)`` where total ignores the page.

        ``text`` keeps tasks with it in their id, plugin, action, owner,
        executor, args or kwargs (case-insensitive for ASCII).
        """
        where, params = [], []
        for name, value in (filters or {}).items():
            if name not in FILTERS:
                raise KeyError(name)
            where.append("%s = ?" % name)
            params.append(value)
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(" + " OR ".join("%s LIKE ? ESCAPE '\\'" % c for c in SEARCHED) + ")")
            params.extend([pattern] * len(SEARCHED))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._db.read() as conn:
            conn.execute("BEGIN")
            try:
                limit = min(limit, MAX_PAGE)
                rows = conn.execute(
                    "SELECT * FROM tasks%s ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?" % clause,
                    params + [limit, offset]).fetchall()
                # A short page that is not past the end already tells the total:
                # no second pass over the matches (a text search scans them all).
                if len(rows) < limit and (rows or not offset):
                    total = offset + len(rows)
                else:
                    total = conn.execute("SELECT count(*) AS n FROM tasks" + clause,
                                         params).fetchall()[0]["n"]
            finally:
                conn.execute("COMMIT")
        return [task_from_row(r) for r in rows], total

    def update_task(self, task_id, fields):
        """Change a task's definition.

        Returns the task, None if it does not exist, or raises ConflictError
        while the task has runs in progress.
        """
        now = iso(self._clock())
        with self._db.write() as conn:
            task = self._get_task(conn, task_id)
            if task is None:
                return None
            if self._open_runs(conn, task_id):
                raise ConflictError("task %s is running; wait for it to finish" % task_id)
            if task["status"] in TaskStatus.FINAL or task["cancelled_at"]:
                raise ConflictError("task %s has ended (%s); create a new one"
                                    % (task_id, task["status"]))
            if "type" in fields and task["status"] != TaskStatus.CREATED:
                raise ConflictError("the type of task %s cannot change once it has run" % task_id)
            changes = dict(_encode(fields), updated_at=now)
            merged = dict(task, **fields)
            if merged["type"] in TaskType.RECURRING and RESCHEDULE.intersection(fields):
                following = reschedule(merged, RESCHEDULE.intersection(fields), self._clock(),
                                       self._last_due(conn, task_id))
                changes["next_run_at"] = None if following is None else iso(following)
            elif "execution_start_time" in fields and task["status"] == TaskStatus.CREATED:
                changes["next_run_at"] = max(fields["execution_start_time"] or "", now)
            sets = ", ".join("%s = :%s" % (k, k) for k in changes)
            conn.execute("UPDATE tasks SET %s WHERE id = :id" % sets, dict(changes, id=task_id))
            task = self._get_task(conn, task_id)
            if (task["type"] in TaskType.RECURRING and task["next_run_at"] is None
                    and not self._pending_runs(conn, task_id)):
                self._end(conn, task, now)  # its new window has closed
                task = self._get_task(conn, task_id)
            return task

    def _last_due(self, conn, task_id):
        rows = conn.execute("SELECT max(due_at) AS due FROM executions WHERE task_id = ?",
                            (task_id,)).fetchall()
        return parse_iso(rows[0]["due"]) if rows[0]["due"] else None

    def delete_task(self, task_id):
        """Delete a task and its executions.  Returns None if there was no
        such task, else the agents of its runs still running: they are to
        stop them (kept in orphan_cancels until each reports)."""
        with self._db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO orphan_cancels (run_id, client, created_at) "
                         "SELECT id, client, ? FROM executions WHERE task_id = ? "
                         "AND status = 'running'", (iso(self._clock()), task_id))
            agents = {r["client"] for r in conn.execute(
                "SELECT client FROM executions WHERE task_id = ? AND status = 'running'",
                (task_id,))}
            conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
            return agents if conn.changes() == 1 else None

    def _open_runs(self, conn, task_id):
        return conn.execute(
            "SELECT count(*) AS n FROM executions WHERE task_id = ? AND status IN "
            "('queued', 'assigned', 'running') AND status IN ('assigned', 'running')",
            (task_id,)).fetchall()[0]["n"]


class ConflictError(Exception):
    """The request is valid but the task's state does not allow it now."""
