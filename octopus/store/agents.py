"""Agent rows: heartbeats, asks for work, goodbyes, the fleet as the API shows
it, and per-agent credentials."""
import logging
import threading

from octopus.store.db import where_clause
from octopus.store.guard import DatabaseUnusable
from octopus.timeutil import iso, parse_iso

log = logging.getLogger("octopus.store")

AGENT_FIELDS = ("hostname", "ip", "version", "concurrency")
FLUSH_EVERY = 1.0  # seconds between writes of heartbeat times kept in memory
# Online: heard from within CLIENT_TIMEOUT (``:cutoff``), not stopped, not revoked.
ONLINE = ("(a.last_heartbeat >= :cutoff AND a.stopped_at IS NULL AND a.name NOT IN "
          "(SELECT name FROM agent_credentials WHERE revoked_at IS NOT NULL))")
# Takes work: online, and asked for work since it came online.
TAKES_WORK = "(%s AND a.asked_at >= a.online_since)" % ONLINE
STATUSES = ("online", "offline")


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
        self.asking = set()  # names known to have asked for work since they came online
        self.onlines = 0  # agents come online since start: the scheduler's sweep plans on it
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
                except DatabaseUnusable:  # said once already; the request must not say ok
                    raise
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
            rows = conn.execute("SELECT last_heartbeat, stopped_at FROM agents WHERE name = ?",
                                (name,)).fetchall()
            back = (not rows or rows[0]["stopped_at"] is not None
                    or rows[0]["last_heartbeat"] < iso(now - self.client_timeout))
            conn.execute(
                "INSERT INTO agents (name, hostname, ip, version, concurrency, first_seen, "
                "last_heartbeat, online_since) VALUES (:name, :hostname, :ip, :version, "
                ":concurrency, :ts, :ts, :ts) "
                "ON CONFLICT (name) DO UPDATE SET hostname = :hostname, ip = :ip, "
                "version = :version, concurrency = :concurrency, last_heartbeat = :ts, "
                "online_since = CASE WHEN :back THEN :ts ELSE online_since END, "
                "stopped_at = NULL", dict(fields, name=name, ts=ts, back=back))
        if back:  # it takes work again once it asks for some
            with self._heartbeats.lock:
                self._heartbeats.asking.discard(name)
                self._heartbeats.onlines += 1
        return back

    def ask_for_work(self, name):
        """``name`` asks for work: True if it did not take work until now (it
        came online since its last ask), so ALL tasks waiting may go to it.

        Known askers are kept in memory: every ask checks, few write.
        """
        beats = self._heartbeats
        with beats.lock:
            if name in beats.asking:
                return False
        now = self._clock()
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT %s AS online, coalesce(a.asked_at >= a.online_since, 0) AS asked "
                "FROM agents a WHERE a.name = :name" % ONLINE,
                {"name": name, "cutoff": iso(now - self.client_timeout)}).fetchall()
        if not rows or not rows[0]["online"]:
            return False  # offline: its next heartbeat brings it back first
        first = False
        if not rows[0]["asked"]:
            with self._db.write() as conn:
                conn.execute("UPDATE agents SET asked_at = ? WHERE name = ? AND (asked_at IS NULL "
                             "OR asked_at < online_since)", (iso(now), name))
                first = conn.changes() == 1
        with beats.lock:
            beats.asking.add(name)
        return first

    def agent_stopped(self, name):
        """``name`` said goodbye: offline at once, until its next heartbeat.
        True if the agent is known."""
        ts = iso(self._clock())
        beats = self._heartbeats
        with beats.lock:  # its next heartbeat is written, and brings it online again
            beats.seen.pop(name, None)
            beats.unwritten.discard(name)
            beats.asking.discard(name)
        with self._db.write() as conn:
            conn.execute("UPDATE agents SET stopped_at = ?, last_heartbeat = max(last_heartbeat, "
                         "?) WHERE name = ?", (ts, ts, name))
            return conn.changes() == 1

    def earliest_heartbeat(self, since):
        """Epoch seconds of the oldest heartbeat at or after ISO ``since`` (the
        first online agent to fall silent), or None if there is none."""
        with self._db.read() as conn:
            [row] = conn.execute("SELECT min(last_heartbeat) AS t FROM agents "
                                 "WHERE last_heartbeat >= ?", (since,)).fetchall()
        return None if row["t"] is None else parse_iso(row["t"])

    def agents_came_online(self):
        """How many times an agent came online since start (a counter to compare)."""
        with self._heartbeats.lock:
            return self._heartbeats.onlines

    def forget_silent_agents(self, cutoff, batch):
        """Delete up to ``batch`` rows of agents that never asked for work and
        were last heard before ISO ``cutoff``; returns how many.  Their
        credentials stay (an enrolled name stays enrolled)."""
        with self._db.write() as conn:
            names = [r["name"] for r in conn.execute(
                "SELECT name FROM agents WHERE last_heartbeat < ? AND asked_at IS NULL "
                "LIMIT ?", (cutoff, batch))]
            conn.executemany("DELETE FROM agents WHERE name = ?", [(n,) for n in names])
        with self._heartbeats.lock:
            for name in names:
                self._heartbeats.seen.pop(name, None)
                self._heartbeats.unwritten.discard(name)
        return len(names)

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

    def list_agents(self, status=None, prefix=None, limit=-1, offset=0):
        """Agents by name, with their status; ``status`` (online/offline) and a
        name ``prefix`` filter, ``limit`` (-1: all) and ``offset`` page."""
        return self.agents_page(status, prefix, limit, offset)[0]

    def agents_page(self, status=None, prefix=None, limit=-1, offset=0):
        """``(agents, total)``: a page of the fleet and how many match."""
        where, params = _fleet_filter(status, prefix)
        params["cutoff"] = iso(self._clock() - self.client_timeout)
        with self._db.read() as conn:
            conn.execute("BEGIN")  # the page and its count from one snapshot
            try:
                total = conn.execute("SELECT count(*) AS n FROM agents a" + where_clause(where),
                                     params).fetchall()[0]["n"]
                rows = conn.execute(
                    "SELECT a.name, a.hostname, a.ip, a.version, a.concurrency, a.first_seen, "
                    "a.last_heartbeat, a.last_assigned, a.stopped_at, "
                    "%s AS online, %s AS takes_work, c.token_hash IS NOT NULL AS enrolled, "
                    "c.enrolled_at, c.revoked_at, (SELECT count(*) FROM executions e "
                    "WHERE e.client = a.name AND e.status IN ('assigned', 'running')) AS running "
                    "FROM agents a LEFT JOIN agent_credentials c ON c.name = a.name%s "
                    "ORDER BY a.name LIMIT :limit OFFSET :offset"
                    % (ONLINE, TAKES_WORK, where_clause(where)),
                    dict(params, limit=limit, offset=offset)).fetchall()
            finally:
                conn.execute("COMMIT")
        for row in rows:
            # A revoked agent's requests are refused: it is gone whatever its last heartbeat.
            row["status"] = "online" if row.pop("online") else "offline"
            row["takes_work"] = bool(row["takes_work"])
            revoked, enrolled = row["revoked_at"] is not None, row.pop("enrolled")
            row["credential"] = "revoked" if revoked else "enrolled" if enrolled else None
        return rows, total

    def online_agents(self):
        """Names of agents online now (whether or not they take work)."""
        with self._db.read() as conn:
            return [r["name"] for r in conn.execute(
                "SELECT a.name FROM agents a WHERE %s ORDER BY a.name" % ONLINE,
                {"cutoff": iso(self._clock() - self.client_timeout)})]

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
            self._heartbeats.asking.discard(name)
        return bool(changed)


def _fleet_filter(status, prefix):
    """WHERE terms and named parameters for a listing of agents."""
    where, params = [], {}
    if status is not None:
        where.append(ONLINE if status == "online" else "NOT " + ONLINE)
    if prefix:
        # A range on the primary key, then the exact test (SQLite compares UTF-8 bytes,
        # which is code point order).
        where.append("a.name >= :prefix AND substr(a.name, 1, :plen) = :prefix")
        params.update(prefix=prefix, plen=len(prefix))
        if ord(prefix[-1]) < 0x10FFFF:
            where.append("a.name < :above")
            params["above"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return where, params
