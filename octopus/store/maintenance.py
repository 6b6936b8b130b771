"""Maintenance SQL: retention in small batches, checkpoint, VACUUM, REINDEX,
PRAGMA optimize, and the record of each run.

Every delete is one short ``BEGIN IMMEDIATE`` transaction of at most ``batch``
rows, so API writes queue behind a batch for milliseconds, never behind a
whole retention pass.  The caller loops until a batch comes back short.
"""
import os

from octopus.store.db import dumps, loads

# Status lists are spelled out (not imported) because the partial indexes in
# migration 0006 must match these exact terms for SQLite to use them.
OPEN_RUN_STATUSES = "('queued', 'assigned', 'running')"
FINAL_TASK_STATUSES = "('Done', 'success', 'failed', 'completed', 'cancelled')"

# INDEXED BY pins each batch to the partial index of old finished rows: left
# to itself the planner may walk tasks_status (every finished task, old or
# not) on each batch, and a missing index becomes an error, not a slow scan.
# Finished runs older than the cutoff.
OLD_RUNS = ("SELECT id FROM executions INDEXED BY executions_finished WHERE status NOT IN %s "
            "AND coalesce(finished_at, updated_at) < ? LIMIT ?" % OPEN_RUN_STATUSES)
# Every run, finished or not, of a finished task older than the cutoff.
OLD_TASK_RUNS = ("SELECT e.id FROM tasks t INDEXED BY tasks_finished "
                 "JOIN executions e ON e.task_id = t.id "
                 "WHERE t.status IN %s AND t.updated_at < ? LIMIT ?" % FINAL_TASK_STATUSES)
# Finished tasks older than the cutoff.
OLD_TASKS = ("SELECT id FROM tasks INDEXED BY tasks_finished WHERE status IN %s "
             "AND updated_at < ? LIMIT ?" % FINAL_TASK_STATUSES)
RETENTION_QUERIES = (OLD_RUNS, OLD_TASK_RUNS, OLD_TASKS)

KINDS = ("retention", "forget_agents", "checkpoint", "vacuum", "reindex", "optimize")
KEEP_PER_KIND = 200  # six kinds: about 1000 rows; a weekly VACUUM keeps years of history
RUN_COLUMNS = "id, kind, started_at, finished_at, duration, detail, error"


def file_sizes(path):
    """Bytes of the database file at ``path`` plus its WAL."""
    total = 0
    for name in (path, path + "-wal"):
        try:
            total += os.path.getsize(name)
        except OSError:
            pass
    return total


class MaintenanceQueries:
    def delete_old_runs(self, cutoff, batch):
        """Delete up to ``batch`` finished runs last changed before ``cutoff``."""
        return self._delete_batch("executions", OLD_RUNS, cutoff, batch)

    def delete_old_task_runs(self, cutoff, batch):
        """Delete up to ``batch`` runs of finished tasks last changed before ``cutoff``."""
        return self._delete_batch("executions", OLD_TASK_RUNS, cutoff, batch)

    def delete_old_tasks(self, cutoff, batch):
        """Delete up to ``batch`` finished tasks last changed before ``cutoff``.

        Their runs go first (delete_old_task_runs), so the cascade finds none.
        """
        return self._delete_batch("tasks", OLD_TASKS, cutoff, batch)

    def delete_old_orphan_cancels(self, cutoff, batch):
        """Forget stop orders for runs of deleted tasks whose agent never came back."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM orphan_cancels WHERE run_id IN (SELECT run_id FROM "
                         "orphan_cancels WHERE created_at < ? LIMIT ?)", (cutoff, batch))
            return conn.changes()

    def _delete_batch(self, table, select, cutoff, batch):
        with self._db.write() as conn:
            conn.execute("DELETE FROM %s WHERE id IN (%s)" % (table, select), (cutoff, batch))
            return conn.changes()

    def checkpoint(self):
        """PRAGMA wal_checkpoint(PASSIVE) from a reader connection.

        PASSIVE neither waits for nor blocks readers and writers, so it runs
        without the write lock and cannot stall the API.  SQLite's own
        auto-checkpoint already runs after busy commits; this pass catches a
        WAL left long while readers held it open.  TRUNCATE (which waits for
        readers) is kept for after VACUUM, when the WAL is as big as the file.
        """
        with self._db.read() as conn:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        return {"mode": "PASSIVE", "busy": bool(row["busy"]), "wal_pages": row["log"],
                "checkpointed": row["checkpointed"]}

    def vacuum(self):
        """VACUUM, then truncate the WAL it filled; returns sizes before and after."""
        before = self.file_sizes()
        with self._db.exclusive() as conn:
            # VACUUM copies the database into a temporary database; with
            # temp_store = MEMORY that copy would take as much RAM as the file.
            conn.execute("PRAGMA temp_store = FILE")
            try:
                conn.execute("VACUUM")
            finally:
                conn.execute("PRAGMA temp_store = MEMORY")
            # TRUNCATE: VACUUM wrote the whole database through the WAL; give
            # that space back now (it waits for readers, at most the busy timeout).
            row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
        return {"bytes_before": before, "bytes_after": self.file_sizes(),
                "wal_truncated": not row["busy"]}

    def reindex(self):
        with self._db.write() as conn:
            conn.execute("REINDEX")
        return {}

    def optimize(self):
        with self._db.write() as conn:
            conn.execute("PRAGMA optimize")
        return {}

    def file_sizes(self):
        return file_sizes(self.path)

    def record_maintenance(self, kind, started_at, finished_at, duration, detail, error=None):
        """Keep one run on record, and only the last KEEP_PER_KIND of its kind."""
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO maintenance_runs (kind, started_at, finished_at, duration, detail, "
                "error) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, started_at, finished_at, duration, dumps(detail or {}), error))
            conn.execute(
                "DELETE FROM maintenance_runs WHERE kind = ? AND id <= (SELECT id FROM "
                "maintenance_runs WHERE kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (kind, kind, KEEP_PER_KIND))

    def list_maintenance(self, kind=None, limit=100, offset=0):
        where, params = ("WHERE kind = ? ", [kind]) if kind else ("", [])
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT %s FROM maintenance_runs %sORDER BY id DESC LIMIT ? OFFSET ?"
                % (RUN_COLUMNS, where), params + [limit, offset]).fetchall()
        return [dict(r, detail=loads(r["detail"])) for r in rows]

    def last_maintenance(self):
        """The latest run of each kind, by kind."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT %s FROM maintenance_runs WHERE id IN "
                "(SELECT max(id) FROM maintenance_runs GROUP BY kind)" % RUN_COLUMNS).fetchall()
        return {r["kind"]: dict(r, detail=loads(r["detail"])) for r in rows}
