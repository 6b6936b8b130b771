"""The only package that runs SQL.

``Store`` joins the query groups (tasks, runs, agents, maintenance, stats) over one Database and
takes its clock and id generator from the caller, so tests control both.
"""
import collections
import time
import uuid

from octopus.constants import RunStatus
from octopus.store.agents import AgentQueries, Heartbeats
from octopus.store.audit import AuditQueries
from octopus.store.db import Database
from octopus.store.guard import DatabaseUnusable
from octopus.store.maintenance import MaintenanceQueries
from octopus.store.migrate import migrate
from octopus.store.runs import RunQueries
from octopus.store.stats import StatsQueries
from octopus.store.tasks import TaskQueries


def new_task_id():
    return uuid.uuid4().hex


class Store(TaskQueries, RunQueries, AgentQueries, MaintenanceQueries, StatsQueries,
            AuditQueries):
    def __init__(self, path, clock=time.time, new_id=new_task_id, client_timeout=30,
                 retry_max_delay=3600.0):
        self._db = Database(path)
        self._clock = clock
        self._new_id = new_id
        self.client_timeout = client_timeout
        self.retry_max_delay = retry_max_delay
        self._heartbeats = Heartbeats(clock())
        # Runs that ended, by status, since start (for /metrics).  Changed only
        # inside write transactions, which one lock serialises.
        # Every key made now, so readers never see the dict change size.
        self.finished_runs = collections.Counter({s: 0 for s in RunStatus.FINAL})
        self.schema_version = migrate(self._db)

    def _count_finished(self, status):
        """Count a run that ended, once its transaction commits (a rolled-back
        one is re-sent by its agent and would be counted twice)."""
        def count():
            self.finished_runs[status] += 1
        self._db.after_commit(count)

    @property
    def clock(self):
        return self._clock

    @property
    def path(self):
        return self._db.path

    def close(self):
        try:
            self.flush_heartbeats()
        except DatabaseUnusable:  # nothing more can be written; said when it was found
            pass
        self._db.close()

    @property
    def unusable(self):
        """Why the database file may no longer be written (gone, replaced, corrupt), or None."""
        return self._db.unusable

    def unusable_lately(self):
        """``unusable``, with the file looked at (one stat) at most once a second."""
        return self._db.looked_at_lately()

    def quick_check(self):
        """``PRAGMA quick_check`` on one snapshot (every page read, so seconds on a
        large file): a problem found marks the database unusable and is returned."""
        with self._db.read() as conn:
            rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        problem = next(iter(rows[0].values())) if rows else "no answer"
        if problem == "ok":
            return None
        self._db.corrupt("quick_check: %s" % problem)
        return problem

    def check(self):
        """Raise if the database cannot be read or its file is gone; used by /health."""
        self._db.check_file()
        with self._db.read() as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
