"""Agent rows: heartbeats, the fleet as the API shows it, and per-agent credentials."""
import logging
import threading

from octopus.timeutil import iso

log = logging.getLogger("octopus.store")

AGENT_FIELDS = ("hostname", "ip", "version", "concurrency")
FLUSH_EVERY = 1.0  # seconds between writes of heartbeat times kept in memory


class Heartbeats:
    """The last heartbeat of each agent, kept in memory between writes.

    A heartbeat that changes nothing but the time (the agent was online and
    says the same about itself) is not a write transaction of its own: the
    times are written together by ``AgentQueries.flush_heartbeats`` once a
    second (by the first heartbeat after the second is up, and by the
    scheduler when heartbeats stop).  With thousands of agents heartbeating,
    one transaction a second replaces a thousand.  Readers of ``last_heartbeat`` see it at most
    a flush late, against a CLIENT_TIMEOUT of many seconds.
    """

    def __init__(self, now):
        self.lock = threading.Lock()
        self.seen = {}      # agent name -> (time of its last heartbeat, its fields)
        self.unwritten = set()  # names whose time in ``seen`` is newer than the database's
        self.next_flush = now + FLUSH_EVERY


class AgentQueries:
    def heartbeat(self, name, info):
        """Record a heartbeat; returns True if the agent is new or was offline."""
        now = self._clock()
        fields = tuple(info.get(k) for k in AGENT_FIELDS)
        beats = self._heartbeats
        with beats.lock:
            last = beats.seen.get(name)
            quiet = (last is not None and last[1] == fields
                     and last[0] >= now - self.client_timeout)
            beats.seen[name] = (now, fields)
            if quiet:
                beats.unwritten.add(name)
            else:
                beats.unwritten.discard(name)
            flush = quiet and now >= beats.next_flush
        if quiet:
            if flush:  # the first heartbeat of each second carries everyone's to the database
                try:
                    self.flush_heartbeats()
                except Exception:  # kept for the next flush; this agent's request is fine
                    log.exception("Writing heartbeat times failed")
            return False
        try:
            return self._write_heartbeat(name, dict(zip(AGENT_FIELDS, fields)), now)
        except BaseException:
            with beats.lock:
                beats.seen.pop(name, None)
            raise

    def _write_heartbeat(self, name, fields, now):
        ts = iso(now)
        with self._db.write() as conn:
            rows = conn.execute("SELECT last_heartbeat FROM agents WHERE name = ?",
                                (name,)).fetchall()
            conn.execute(
                "INSERT INTO agents (name, hostname, ip, version, concurrency, first_seen, "
                "last_heartbeat) VALUES (:name, :hostname, :ip, :version, :concurrency, :ts, :ts) "
                "ON CONFLICT (name) DO UPDATE SET hostname = :hostname, ip = :ip, "
                "version = :version, concurrency = :concurrency, last_heartbeat = :ts",
                dict(fields, name=name, ts=ts))
        return not rows or rows[0]["last_heartbeat"] < iso(now - self.client_timeout)

    def flush_heartbeats(self):
        """Write the heartbeat times kept in memory; returns how many."""
        beats = self._heartbeats
        with beats.lock:
            times = {n: beats.seen[n][0] for n in beats.unwritten}
            beats.unwritten.clear()
            beats.next_flush = self._clock() + FLUSH_EVERY
        if not times:
            return 0
        gone = []
        try:
            with self._db.write() as conn:
                for name, when in times.items():
                    conn.execute("UPDATE agents SET last_heartbeat = max(last_heartbeat, ?) "
                                 "WHERE name = ?", (iso(when), name))
                    if not conn.changes():
                        gone.append(name)
        except BaseException:
            with beats.lock:  # not lost: the next flush writes them
                beats.unwritten.update(times)
            raise
        if gone:  # rows deleted meanwhile: their next heartbeat writes them again
            with beats.lock:
                for name in gone:
                    beats.seen.pop(name, None)
        return len(times)

    def list_agents(self):
        now = self._clock()
        cutoff = iso(now - self.client_timeout)
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT a.*, (SELECT count(*) FROM executions e WHERE e.client = a.name "
                "AND e.status IN ('assigned', 'running')) AS running FROM agents a "
                "ORDER BY a.name").fetchall()
        creds = {c["name"]: c for c in self.credentials()}
        for row in rows:
            cred = creds.get(row["name"])
            revoked = cred is not None and cred["revoked_at"] is not None
            # A revoked agent's requests are refused: it is gone whatever its last heartbeat.
            row["status"] = ("online" if row["last_heartbeat"] >= cutoff and not revoked
                             else "offline")
            row["credential"] = None if cred is None else "revoked" if revoked else "enrolled"
            row["enrolled_at"] = cred["enrolled_at"] if cred else None
            row["revoked_at"] = cred["revoked_at"] if cred else None
        return rows

    def online_agents(self):
        with self._db.read() as conn:
            return self._online_agents(conn, self._clock())

    # -- credentials (see octopus/server/credentials.py) --------------------

    def credentials(self):
        """Every agent credential: name, token_hash, enrolled_at, revoked_at."""
        with self._db.read() as conn:
            return conn.execute("SELECT name, token_hash, enrolled_at, revoked_at "
                                "FROM agent_credentials").fetchall()

    def enroll_agent(self, name, token_hash, replacing=None):
        """Give ``name`` the credential ``token_hash``; returns its row.

        Refused (returns None) when the name has a credential already, unless
        it is the live one whose hash is ``replacing`` (the agent proved it
        holds that token: a rotation), or the live one is ``token_hash`` itself
        (a repeat).  A revoked name stays refused until
        ``forget_agent``.
        """
        ts = iso(self._clock())
        with self._db.write() as conn:
            rows = conn.execute("SELECT token_hash, enrolled_at, revoked_at FROM "
                                "agent_credentials WHERE name = ?", (name,)).fetchall()
            if rows and rows[0]["revoked_at"] is None and rows[0]["token_hash"] == token_hash:
                # The same token again: its agent did not hear the first answer.
                return dict(rows[0], name=name, token_hash=token_hash)
            if rows and (replacing is None or rows[0]["revoked_at"] is not None
                         or rows[0]["token_hash"] != replacing):
                return None
            if conn.execute("SELECT 1 FROM agent_credentials WHERE token_hash = ? AND name != ?",
                            (token_hash, name)).fetchall():
                return None  # a proposed token that is another agent's
            conn.execute("INSERT INTO agent_credentials (name, token_hash, enrolled_at) "
                         "VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                         "token_hash = excluded.token_hash, enrolled_at = excluded.enrolled_at",
                         (name, token_hash, ts))
        return {"name": name, "token_hash": token_hash, "enrolled_at": ts, "revoked_at": None}

    def revoke_agent(self, name):
        """Revoke ``name``'s credential (or bar the shared token from a name that
        never enrolled); returns its row, or None if no such agent is known."""
        ts = iso(self._clock())
        with self._db.write() as conn:
            known = conn.execute("SELECT 1 FROM agents WHERE name = ? UNION ALL SELECT 1 FROM "
                                 "agent_credentials WHERE name = ?", (name, name)).fetchall()
            if not known:
                return None
            conn.execute("INSERT INTO agent_credentials (name, revoked_at) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET "
                         "revoked_at = coalesce(revoked_at, excluded.revoked_at)", (name, ts))
            return conn.execute("SELECT name, token_hash, enrolled_at, revoked_at FROM "
                                "agent_credentials WHERE name = ?", (name,)).fetchall()[0]

    def forget_agent(self, name):
        """Delete the agent's row and its credential (its runs stay on record under
        its name); True if there was anything to delete."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM agent_credentials WHERE name = ?", (name,))
            changed = conn.changes()
            conn.execute("DELETE FROM agents WHERE name = ?", (name,))
            changed += conn.changes()
        with self._heartbeats.lock:  # its next heartbeat is a new agent's
            self._heartbeats.seen.pop(name, None)
            self._heartbeats.unwritten.discard(name)
        return bool(changed)
