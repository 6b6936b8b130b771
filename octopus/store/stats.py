"""Counts for the dashboard's overview: tasks by status, runs by outcome over time."""
from octopus.store.agents import ONLINE
from octopus.timeutil import iso

MAX_BUCKETS = 288


class StatsQueries:
    def counts(self):
        """Tasks by status and runs not yet finished, for /health, /stats and /metrics.

        Tasks come from task_counts, kept by triggers on tasks (migration
        0009), so this does not read the tasks table.
        """
        with self._db.read() as conn:
            conn.execute("BEGIN")
            try:
                tasks = {r["status"]: r["n"] for r in conn.execute(
                    "SELECT status, n FROM task_counts WHERE n > 0")}
                running = conn.execute(
                    "SELECT count(*) AS n FROM executions WHERE status IN ('assigned', 'running')"
                ).fetchall()[0]["n"]
            finally:
                conn.execute("COMMIT")
        return tasks, running

    def run_outcomes(self, since, bucket, count):
        """Runs finished since epoch ``since``, counted by status in ``count``
        buckets of ``bucket`` seconds.

        Returns ``[{"start": iso, status: count, ...}, ...]`` oldest first, one
        entry per bucket (empty ones included, so a chart needs no gaps logic).
        """
        count = min(MAX_BUCKETS, count)
        buckets = [{"start": iso(since + i * bucket)} for i in range(count)]
        with self._db.read() as conn:
            # Read through executions_updated: finished runs are rarely touched
            # again.  SQLite buckets and counts them: one row per bucket and
            # status comes back, not one per run (3,600 an hour at W5's rate).
            for row in conn.execute(
                    "SELECT max(0, min(?, CAST((unixepoch(finished_at, 'subsec') - ?) / ? "
                    "AS INTEGER))) AS slot, status, count(*) AS n "
                    "FROM executions INDEXED BY executions_updated "
                    "WHERE updated_at >= ? AND finished_at >= ? GROUP BY slot, status",
                    (count - 1, since, bucket, iso(since), iso(since))):
                if row["slot"] is not None:  # a finished_at SQLite cannot read
                    buckets[row["slot"]][row["status"]] = row["n"]
        return buckets

    def agent_counts(self):
        with self._db.read() as conn:
            # A revoked or stopped agent is offline however recent its last heartbeat.
            row = conn.execute("SELECT count(*) AS total, sum(%s) AS online FROM agents a"
                               % ONLINE, {"cutoff": iso(self._clock() - self.client_timeout)}
                               ).fetchall()[0]
        return {"online": row["online"] or 0, "offline": row["total"] - (row["online"] or 0)}
