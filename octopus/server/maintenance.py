"""Database maintenance in a thread of its own, and ``GET /maintenance``.

Retention, forgetting silent agents that never took work (AGENT_FORGET_AFTER)
and a WAL checkpoint run every TASK_CLEANUP_INTERVAL seconds (the first pass
shortly after start-up); VACUUM, REINDEX and PRAGMA optimize run on their cron
schedules (UTC).  A time missed while the server was down
is not caught up, as with cron.  The thread is not the scheduler's: a VACUUM
may hold the write lock for minutes on a big file, and work must still be
handed out meanwhile (hand-outs then wait for the lock, not for the tick).

Steps take ``now`` (epoch seconds) so tests drive time by hand.
"""
import json
import logging
import threading
import time

from octopus.schedule import next_cron
from octopus.server import validate
from octopus.server.errors import bad_request
from octopus.store.guard import DatabaseUnusable
from octopus.store.maintenance import KINDS
from octopus.timeutil import iso, parse_iso

log = logging.getLogger("octopus.maintenance")

TICK = 1.0  # seconds between looks at what is due
FIRST_PASS_DELAY = 30.0  # seconds after start-up: let agents reconnect first
BATCH = 500  # rows per delete transaction: a few milliseconds of write lock
BATCH_PAUSE = 0.005  # seconds between batches, so queued writers get the lock
DAY = 86400.0
CRON_SETTINGS = {"vacuum": "VACUUM_SCHEDULE", "reindex": "REINDEX_SCHEDULE",
                 "optimize": "OPTIMIZE_SCHEDULE"}
# Checkpoint after the deletes; REINDEX before VACUUM when both fall due.
ORDER = ("retention", "forget_agents", "checkpoint", "optimize", "reindex", "vacuum")
SETTINGS = ("RETENTION_DAYS", "TASK_CLEANUP_INTERVAL", "AGENT_FORGET_AFTER", "VACUUM_SCHEDULE",
            "REINDEX_SCHEDULE", "OPTIMIZE_SCHEDULE")


def next_time(config, kind, started, last):
    """When ``kind`` is next due (epoch seconds), or None for never.

    ``started`` is when the loop started, ``last`` when ``kind`` last ran
    (None, or a time before ``started``, if not since then).
    """
    if last is not None and last < started:
        last = None
    if kind in CRON_SETTINGS:
        expr = getattr(config, CRON_SETTINGS[kind])
        return next_cron(expr, started if last is None else last) if expr else None
    if kind == "retention" and not config.RETENTION_DAYS:
        return None  # 0 keeps everything
    if kind == "forget_agents" and not config.AGENT_FORGET_AFTER:
        return None
    if last is None:
        return started + min(FIRST_PASS_DELAY, config.TASK_CLEANUP_INTERVAL)
    return last + config.TASK_CLEANUP_INTERVAL


class Maintenance:
    def __init__(self, config, store, clock=time.time, timer=time.perf_counter,
                 batch=BATCH, pause=BATCH_PAUSE):
        self._config = config
        self._store = store
        self._clock = clock
        self._timer = timer  # a stopwatch for durations; the clock says when
        self._batch = batch
        self._pause = pause
        self._started = clock()
        self._last = {}
        self._stop = threading.Event()
        self._thread = None

    def next_times(self):
        return {kind: next_time(self._config, kind, self._started, self._last.get(kind))
                for kind in ORDER}

    def due(self, now):
        return [kind for kind, at in self.next_times().items() if at is not None and at <= now]

    def step(self, now):
        """Run every kind due at ``now``; returns the kinds run."""
        ran = []
        for kind in self.due(now):
            if self._stop.is_set():
                break
            # Marked first: a run that fails waits for its next time, no retry storm.
            self._last[kind] = now
            self.run_one(kind, now)
            ran.append(kind)
        return ran

    def run_one(self, kind, now):
        """Run one kind, log it with its duration and keep it on record."""
        started = self._clock()
        begin = self._timer()
        detail, error = {}, None
        try:
            detail = getattr(self, kind)(now)
        except Exception as e:  # recorded and logged; the loop goes on
            error = "%s: %s" % (type(e).__name__, e)
            log.exception("Maintenance %s failed", kind)
        duration = round(self._timer() - begin, 6)
        if error is None:
            log.info("Maintenance %s done in %.3fs: %s", kind, duration,
                     json.dumps(detail, sort_keys=True))
        self._store.record_maintenance(kind, iso(started), iso(started + duration), duration,
                                       detail, error)
        return detail, error

    def retention(self, now):
        """Delete finished runs, then finished tasks, then audit entries, older than
        RETENTION_DAYS."""
        cutoff = iso(now - self._config.RETENTION_DAYS * DAY)
        detail = {"cutoff": cutoff, "batches": 0, "longest_batch": 0.0}
        store = self._store
        # A finished task's runs go before the task, so no cascade is big.
        for key, delete in (("executions", store.delete_old_runs),
                            ("task_executions", store.delete_old_task_runs),
                            ("tasks", store.delete_old_tasks),
                            ("orphan_cancels", store.delete_old_orphan_cancels),
                            ("audit", store.delete_old_audit)):
            detail[key] = self._drain(delete, cutoff, detail)
        return detail

    def forget_agents(self, now):
        """Remove agents that never asked for work and were silent for
        AGENT_FORGET_AFTER (a client that only heartbeated, under any name)."""
        cutoff = iso(now - self._config.AGENT_FORGET_AFTER)
        detail = {"cutoff": cutoff, "batches": 0, "longest_batch": 0.0}
        detail["agents"] = self._drain(self._store.forget_silent_agents, cutoff, detail)
        return detail

    def _drain(self, delete, cutoff, detail):
        total = 0
        while True:
            begin = self._timer()
            deleted = delete(cutoff, self._batch)
            detail["batches"] += 1
            detail["longest_batch"] = max(detail["longest_batch"],
                                          round(self._timer() - begin, 6))
            total += deleted
            # threading.Lock is not fair: without a pause this thread could
            # take the write lock back before a waiting request gets it.
            if deleted < self._batch or self._stop.wait(self._pause):
                return total

    def checkpoint(self, now):
        return self._store.checkpoint()

    def vacuum(self, now):
        return self._store.vacuum()

    def reindex(self, now):
        return self._store.reindex()

    def optimize(self, now):
        return self._store.optimize()

    def run(self):
        while not self._stop.wait(TICK):
            try:
                self.step(self._clock())
            except DatabaseUnusable:  # said once in the log, where it was found
                pass
            except Exception:  # e.g. the record could not be written; try next time
                log.exception("Maintenance step failed")

    def start(self):
        self._thread = threading.Thread(target=self.run, name="maintenance", daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        """Stop between batches; a VACUUM under way finishes first (the store's
        close waits for the write lock it holds)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)


class MaintenanceResource:
    """``GET /maintenance``: recent runs, the settings in effect, what is next."""

    def __init__(self, config, store, clock=time.time):
        self._config = config
        self._store = store
        self._clock = clock
        self._started = clock()  # the loop starts with the app

    def on_get(self, req, resp):
        validate.only_params(req, ("kind", "limit", "offset"))
        limit = validate.int_param(req, "limit", 100, 1, 1000)
        offset = validate.int_param(req, "offset", 0, 0, validate.MAX_OFFSET)
        kind = req.get_param("kind")
        if kind is not None and kind not in KINDS:
            raise bad_request("kind must be one of %s" % ", ".join(KINDS), "kind")
        runs = self._store.list_maintenance(kind, limit, offset)
        last = self._store.last_maintenance()
        resp.media = {
            "runs": runs, "limit": limit, "offset": offset,
            "settings": {name: getattr(self._config, name) for name in SETTINGS},
            "next": self._next(last),
            "last": {k: last.get(k) for k in ORDER},
        }

    def _next(self, last):
        times = {}
        for kind in ORDER:
            ran = parse_iso(last[kind]["started_at"]) if kind in last else None
            at = next_time(self._config, kind, self._started, ran)
            times[kind] = None if at is None else iso(max(at, self._clock()))
        return times
