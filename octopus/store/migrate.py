"""Schema migrations keyed on ``PRAGMA user_version``.

Migration N is ``migrations/NNNN_*.sql``; a database at version V gets every
file numbered above V, with the version bump, all in one transaction.
"""
import logging
from pathlib import Path

log = logging.getLogger("octopus.store")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def migrations():
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        number = int(path.name.split("_", 1)[0])
        found.append((number, path))
    return found


def latest_version():
    return migrations()[-1][0]


def migrate(db):
    """Bring ``db`` (a Database) up to the latest schema; return the version.

    One transaction reads the version and applies what is missing, so two
    servers starting on one file cannot both apply a migration.
    """
    with db.write() as conn:
        current = conn.execute("PRAGMA user_version").fetchall()[0]["user_version"]
        if current > latest_version():
            raise RuntimeError(
                "database %s has schema version %d, newer than this Octopus knows (%d)"
                % (db.path, current, latest_version()))
        for number, path in migrations():
            if number > current:
                conn.execute(path.read_text(encoding="utf-8"))
                conn.execute("PRAGMA user_version = %d" % number)
                log.info("Database %s migrated to schema version %d", db.path, number)
                current = number
    return current
