"""Agent rows: heartbeats and the fleet as the API shows it."""
from octopus.timeutil import iso

AGENT_FIELDS = ("hostname", "ip", "version", "concurrency")


class AgentQueries:
    def heartbeat(self, name, info):
        """Record a heartbeat; returns True if the agent is new or was offline."""
        now = self._clock()
        ts = iso(now)
        cutoff = iso(now - self.client_timeout)
        fields = {k: info.get(k) for k in AGENT_FIELDS}
        with self._db.write() as conn:
            rows = conn.execute("SELECT last_heartbeat FROM agents WHERE name = ?",
                                (name,)).fetchall()
            conn.execute(
                "INSERT INTO agents (name, hostname, ip, version, concurrency, first_seen, "
                "last_heartbeat) VALUES (:name, :hostname, :ip, :version, :concurrency, :ts, :ts) "
                "ON CONFLICT (name) DO UPDATE SET hostname = :hostname, ip = :ip, "
                "version = :version, concurrency = :concurrency, last_heartbeat = :ts",
                dict(fields, name=name, ts=ts))
        return not rows or rows[0]["last_heartbeat"] < cutoff

    def list_agents(self):
        now = self._clock()
        cutoff = iso(now - self.client_timeout)
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT a.*, (SELECT count(*) FROM executions e WHERE e.client = a.name "
                "AND e.status IN ('assigned', 'running')) AS running FROM agents a "
                "ORDER BY a.name").fetchall()
        for row in rows:
            row["status"] = "online" if row["last_heartbeat"] >= cutoff else "offline"
        return rows

    def online_agents(self):
        with self._db.read() as conn:
            return self._online_agents(conn, self._clock())
