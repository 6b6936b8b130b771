"""Counts for the dashboard's overview: tasks by status, runs by outcome over time."""
from octopus.timeutil import iso, parse_iso

MAX_BUCKETS = 288


class StatsQueries:
    def run_outcomes(self, since, bucket, count):
        """Runs finished since epoch ``since``, counted by status in ``count``
        buckets of ``bucket`` seconds.

        Returns ``[{"start": iso, status: count, ...}, ...]`` oldest first, one
        entry per bucket (empty ones included, so a chart needs no gaps logic).
        """
        count = min(MAX_BUCKETS, count)
        buckets = [{"start": iso(since + i * bucket)} for i in range(count)]
        with self._db.read() as conn:
            # Read through executions_updated: finished runs are rarely touched again.
            for row in conn.execute(
                    "SELECT status, finished_at FROM executions INDEXED BY executions_updated "
                    "WHERE updated_at >= ? AND finished_at >= ?", (iso(since), iso(since))):
                index = min(count - 1, int((parse_iso(row["finished_at"]) - since) // bucket))
                slot = buckets[index]
                slot[row["status"]] = slot.get(row["status"], 0) + 1
        return buckets

    def agent_counts(self):
        cutoff = iso(self._clock() - self.client_timeout)
        with self._db.read() as conn:
            row = conn.execute("SELECT count(*) AS total, sum(last_heartbeat >= ?) AS online "
                               "FROM agents", (cutoff,)).fetchall()[0]
        return {"online": row["online"] or 0, "offline": row["total"] - (row["online"] or 0)}

