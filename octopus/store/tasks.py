"""Task rows: create, read, list, change, delete."""
import string

from octopus.constants import TaskStatus, TaskType
from octopus.store import previews
from octopus.store.db import dumps, equal_to, where_clause
from octopus.store.recurring import first_slot, reschedule
from octopus.timeutil import iso, parse_iso

_JSON = ("args", "kwargs")
_VALUES = ("args", "kwargs", "result")  # JSON a listing shows as a preview
FILTERS = ("status", "owner", "type", "executor", "plugin")
MAX_PAGE = 1000  # rows in one page of a listing
SEARCHED = ("id", "plugin", "action", "owner", "executor", "args", "kwargs")
RESCHEDULE = {"type", "interval", "timezone", "execution_start_time", "execution_end_time"}
TRIGRAM = 3  # the search index finds texts of at least this many characters
FEW_FOUND = 4000  # with other filters, a search reads the tasks it found up to this many
# Python's lower() folds all of Unicode; SQLite's lower() and LIKE only ASCII.
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def task_from_row(row):
    return _booleans(previews.from_whole(dict(row), _VALUES))


def task_from_listing(row):
    return _booleans(previews.from_listing(dict(row), _VALUES))


def _booleans(task):
    task["keep_processes"] = bool(task.get("keep_processes"))
    return task


def _like_pattern(text):
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _like_clause():
    return "(" + " OR ".join("%s LIKE ? ESCAPE '\\'" % c for c in SEARCHED) + ")"


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
        where, params = equal_to(filters or {}, FILTERS)
        limit = min(limit, MAX_PAGE)
        with self._db.read() as conn:
            conn.execute("BEGIN")
            try:
                if text and len(text) >= TRIGRAM:
                    rows, total = self._search(conn, where, params, limit, offset, text)
                elif text:  # too short for the index: read every task
                    where.append(_like_clause())
                    params.extend([_like_pattern(text)] * len(SEARCHED))
                    rows, total = self._page(conn, where, params, limit, offset)
                else:
                    rows, total = self._page(conn, where, params, limit, offset,
                                             self._counted(conn, filters or {}))
            finally:
                conn.execute("COMMIT")
        return [task_from_listing(r) for r in rows], total

    def _listed_columns(self, conn):
        """Every column of tasks, the JSON ones as previews (previews.listing_columns)."""
        if getattr(self, "_task_listing", None) is None:
            names = [r["name"] for r in conn.execute("PRAGMA table_info(tasks)")]
            self._task_listing = previews.listing_columns(names, _VALUES)
        return self._task_listing

    def _page(self, conn, where, params, limit, offset, total=None):
        clause = where_clause(where)
        rows = conn.execute(
            "SELECT %s FROM tasks%s ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
            % (self._listed_columns(conn), clause), params + [limit, offset]).fetchall()
        # A short page that is not past the end already tells the total:
        # no second pass over the matches (a text search scans them all).
        if total is None:
            if len(rows) < limit and (rows or not offset):
                total = offset + len(rows)
            else:
                total = conn.execute("SELECT count(*) AS n FROM tasks" + clause,
                                     params).fetchall()[0]["n"]
        return rows, total

    def _search(self, conn, where, params, limit, offset, text):
        """A text search through the task_search index (migration 0009).

        The index tells how many tasks hold the text (``found``) at once.  Few:
        read just those.  Many: walking the tasks newest first meets a page of
        them soon, and with no other filter ``found`` is the total.
        """
        phrase = '"%s"' % text.translate(ASCII_LOWER).replace('"', '""')
        found = conn.execute("SELECT count(*) AS n FROM task_search WHERE task_search MATCH ?",
                             (phrase,)).fetchall()[0]["n"]
        if not found:
            return [], 0
        if where:
            # Other filters: the total counts what passes them too, which the
            # walk learns only by testing every task they keep.
            total, few = None, found <= FEW_FOUND
        else:
            # Reading one found task costs about as much as testing ten while
            # walking the table; the walk meets (offset + limit) matches after
            # about (offset + limit) * everything / found tasks.
            everything = self._task_total(conn)
            total, few = found, found * 10 <= min(everything, (offset + limit) * everything / found)
        if few:
            where = where + ["id IN (SELECT k.task_id FROM task_search s JOIN task_search_keys k "
                             "ON k.key = s.rowid WHERE task_search MATCH ?)"]
            return self._page(conn, where, params + [phrase], limit, offset, total)
        where = where + [_like_clause()]
        params = params + [_like_pattern(text)] * len(SEARCHED)
        return self._page(conn, where, params, limit, offset, total)

    def _counted(self, conn, filters):
        """The total of a listing task_counts already knows (all tasks, or one
        status), else None."""
        if not filters:
            return self._task_total(conn)
        if set(filters) == {"status"}:
            rows = conn.execute("SELECT n FROM task_counts WHERE status = ?",
                                (filters["status"],)).fetchall()
            return rows[0]["n"] if rows else 0
        return None

    def _task_total(self, conn):
        """Every task, from the counts kept by triggers (migration 0009)."""
        return conn.execute("SELECT coalesce(sum(n), 0) AS n FROM task_counts").fetchall()[0]["n"]

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
