"""The audit log: rows appended as changes are made, read newest first."""
from octopus.store.db import dumps, equal_to, loads, where_clause
from octopus.timeutil import iso

AUDIT_FILTERS = ("action", "target", "actor", "role")


class AuditQueries:
    def add_audit(self, entries):
        """Append ``entries`` (dicts: role, actor, address, action, target, detail)."""
        if not entries:
            return
        at = iso(self._clock())
        with self._db.write() as conn:
            for e in entries:
                conn.execute(
                    "INSERT INTO audit (at, role, actor, address, action, target, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (at, e["role"], e["actor"], e.get("address"), e["action"], e.get("target"),
                     None if e.get("detail") is None else dumps(e["detail"])))

    def list_audit(self, filters=None, limit=100, before=None):
        """Newest first; ``before`` (an entry id) pages back from there.

        Returns ``(entries, more)``: ``more`` says older entries are left.
        """
        where, params = equal_to(filters or {}, AUDIT_FILTERS)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM audit%s ORDER BY id DESC LIMIT ?"
                                % where_clause(where),
                                params + [limit + 1]).fetchall()
        for row in rows:
            row["detail"] = loads(row["detail"])
        return rows[:limit], len(rows) > limit

    def delete_old_audit(self, cutoff, batch):
        """Delete up to ``batch`` entries older than ``cutoff``; returns how many."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? "
                         "ORDER BY id LIMIT ?)", (cutoff, batch))
            return conn.changes()
