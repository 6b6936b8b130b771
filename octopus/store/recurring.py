"""Interval and Scheduled tasks: firing a due slot into runs.

A recurring task keeps its next slot in ``next_run_at`` (NULL once its
window has closed or it was cancelled); the scheduler reads due ones through
the ``tasks_recurring`` index.  Firing moves ``next_run_at`` on with a
conditional UPDATE, so a slot fires once however many threads look.

Each slot makes runs by the owner rule: ALL one per online agent, Specific
one waiting for its agent, Anyone one for the least busy agent asking (or
waiting for the first that asks).  A run due while the task's previous one on
the same target is still pending is skipped and recorded as ``skipped``
(overlap ``skip``), queued behind it (``queue``), or started anyway
(``parallel``).
"""
import logging

from octopus.constants import CatchUp, Overlap, RunStatus, TaskOwnership, TaskStatus
from octopus.schedule import ScheduleError, next_fire, next_fire_or_none, zone
from octopus.store.db import dumps
from octopus.timeutil import iso, parse_iso

log = logging.getLogger("octopus.store")

MAX_CATCH_UP = 100   # runs one task makes for missed slots with catch_up "all"
MISFIRE_GRACE = 5    # seconds late a slot may still run with catch_up "none"
QUEUE_LIMIT = 10     # runs waiting behind a running one with overlap "queue"
FIRE_COLUMNS = ("id, owner, type, interval, timezone, execution_start_time, execution_end_time, "
                "created_at, next_run_at, overlap, catch_up, status")


def first_slot(task, now):
    """Epoch of a new recurring task's first slot: its start time, or the
    next slot from now (a start in the past does not make missed runs)."""
    start = (parse_iso(task["execution_start_time"]) if task.get("execution_start_time")
             else None)
    if task["type"] == "Interval":
        anchor = start if start is not None else now
        # The first slot at or after now (a millisecond of slack: times are stored to the ms).
        return anchor if anchor >= now else next_fire("Interval", task["interval"], None,
                                                      anchor, now - 0.001)
    after = max(start - 1, now) if start is not None and start > now else now
    return next_fire(task["type"], task["interval"], zone(task.get("timezone")), None, after)


def _anchor(task):
    return parse_iso(task["execution_start_time"] or task["created_at"])


def reschedule(task, changed, now, last_due):
    """The next slot (epoch, or None) of a recurring task whose schedule
    fields ``changed``: never a slot already fired (``last_due``)."""
    if task["status"] == TaskStatus.CREATED:
        following = first_slot(task, now)
    elif set(changed) == {"execution_end_time"}:
        following = parse_iso(task["next_run_at"]) if task["next_run_at"] else None
    else:
        following = next_fire_or_none(task["type"], task["interval"], zone(task["timezone"]),
                                      _anchor(task), max(now, last_due or now))
    end = task["execution_end_time"]
    return None if following is None or (end and following > parse_iso(end)) else following


def due_slots(task, now):
    """``(slots to fire, next slot or None, missed count)`` for a due task."""
    tz = zone(task["timezone"])
    anchor = _anchor(task)
    end = parse_iso(task["execution_end_time"]) if task["execution_end_time"] else None
    due = [parse_iso(task["next_run_at"])]

    def after(ts):  # None past the last time there is: the window closes there
        return next_fire_or_none(task["type"], task["interval"], tz, anchor, ts)

    following = after(due[-1])
    while following is not None and following <= now and len(due) < MAX_CATCH_UP:
        due.append(following)
        following = after(following)
    if following is not None and following <= now:  # too many missed to list: jump past now
        following = after(now)
    if end is not None:
        due = [s for s in due if s <= end]
        following = following if following is not None and following <= end else None
    if task["catch_up"] == CatchUp.ALL_SLOTS:
        fire = due
    elif task["catch_up"] == CatchUp.NONE:
        fire = due[-1:] if due and now - due[-1] <= MISFIRE_GRACE else []
    else:
        fire = due[-1:]
    return fire, following, len(due) - len(fire)


class RecurringQueries:
    def recurring_due(self, until, limit=1000):
        """Recurring tasks (rows as stored) whose next slot is at or before ``until``."""
        with self._db.read() as conn:
            return conn.execute(
                "SELECT %s FROM tasks INDEXED BY tasks_recurring "
                "WHERE status IN ('Created', 'Active') AND type != 'Adhoc' AND next_run_at <= ? "
                "ORDER BY next_run_at LIMIT ?" % FIRE_COLUMNS, (until, limit)).fetchall()

    def fire(self, tasks, candidates=()):
        """Fire the slots of ``tasks`` (rows from recurring_due) in one
        transaction; returns the agents to wake.  A row read before the
        transaction is safe to use: _fire moves a slot on only if it is
        still the one read."""
        now = self._clock()
        woken = set()
        with self._db.write() as conn:
            for task in tasks:
                woken.update(self._fire(conn, task, now, candidates))
        return woken

    def _fire(self, conn, task, now, candidates):
        """Fire a due recurring task's slots; returns the agents to wake."""
        try:
            fire, following, missed = due_slots(task, now)
            following = None if following is None else iso(following)
        except (ScheduleError, ValueError, OverflowError) as e:  # e.g. its zone left the host
            log.error("Task %s cannot be scheduled (%s): it stops recurring", task["id"], e)
            fire, following, missed = [], None, 0
        ts = iso(now)
        conn.execute("UPDATE tasks SET status = ?, next_run_at = ?, updated_at = ? "
                     "WHERE id = ? AND next_run_at = ? AND status IN (?, ?)",
                     (TaskStatus.ACTIVE, following, ts,
                      task["id"], task["next_run_at"], TaskStatus.CREATED, TaskStatus.ACTIVE))
        if conn.changes() != 1:
            return set()  # fired by someone else meanwhile
        if missed:
            log.warning("Task %s missed %d slot(s) while the server was down or busy "
                        "(catch_up=%s)", task["id"], missed, task["catch_up"])
        woken = set()
        # Runs made by this call for earlier missed slots are not "the previous
        # run still going": catch_up "all" makes one per slot whatever the overlap.
        before = conn.execute("SELECT coalesce(max(id), 0) AS n FROM executions").fetchall()[0]["n"]
        for slot in fire:
            woken.update(self._fire_slot(conn, task, iso(slot), now, candidates, before))
        if following is None and not self._pending_runs(conn, task["id"]):
            self._end(conn, self._get_task(conn, task["id"]), ts)
        return woken

    def _fire_slot(self, conn, task, slot, now, candidates, before):
        """Make one slot's runs by the owner rule; returns the agents to wake."""
        owner = task["owner"]
        if owner == TaskOwnership.ALL:
            targets = self._online_agents(conn, now)
            if not targets:
                self._insert_run(conn, task["id"], None, RunStatus.SKIPPED, slot, now,
                                 "no agent was online")
                return set()
        else:
            targets = [None if owner == TaskOwnership.ANYONE else owner]
        woken = set()
        for target in targets:
            woken.update(self._fire_target(conn, task, target, slot, now, candidates, before))
        return woken

    def _fire_target(self, conn, task, target, slot, now, candidates, before):
        waiting = self._pending_on(conn, task["id"], target, before)
        if waiting and task["overlap"] == Overlap.SKIP:
            self._insert_run(conn, task["id"], target, RunStatus.SKIPPED, slot, now,
                             "the previous run was still going")
            return []
        if task["overlap"] == Overlap.QUEUE:  # behind this call's catch-up runs too
            waiting = self._pending_on(conn, task["id"], target, None)
        if waiting > QUEUE_LIMIT and task["overlap"] == Overlap.QUEUE:
            self._insert_run(conn, task["id"], target, RunStatus.SKIPPED, slot, now,
                             "%d runs were already queued" % QUEUE_LIMIT)
            return []
        if task["owner"] == TaskOwnership.ALL and not waiting:
            self._insert_run(conn, task["id"], target, RunStatus.ASSIGNED, slot, now)
            return [target]
        if target is not None:  # Specific (or ALL behind a run): waits for its agent
            self._insert_run(conn, task["id"], target, RunStatus.QUEUED, slot, now)
            return [target]
        agent = None if waiting else self._least_busy_agent(conn, now, candidates)
        self._insert_run(conn, task["id"], agent,
                         RunStatus.QUEUED if agent is None else RunStatus.ASSIGNED, slot, now)
        if agent is None:
            return []
        self._given_work(conn, agent, now)
        return [agent]

    def _pending_on(self, conn, task_id, target, before):
        """Unfinished runs of the task on ``target`` (None: on any agent) made
        up to run id ``before`` (None: any)."""
        return conn.execute(
            "SELECT count(*) AS n FROM executions WHERE task_id = ? AND status IN "
            "('queued', 'assigned', 'running') AND id <= ?%s"
            % ("" if target is None else " AND client = ?"),
            (task_id, 2 ** 63 - 1 if before is None else before)
            + (() if target is None else (target,))).fetchall()[0]["n"]

    def _insert_run(self, conn, task_id, client, status, slot, now, skipped=None):
        ts = iso(now)
        final = status == RunStatus.SKIPPED
        if final:
            self._count_finished(status)
        conn.execute(
            "INSERT INTO executions (task_id, client, status, due_at, result, updated_at, "
            "created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (task_id, client, status, slot, dumps({"skipped": skipped}) if final else None,
             ts, ts, ts if final else None))
