"""One SQLite file through APSW: pragmas, a write lock, pooled readers.

Every write goes through :meth:`Database.write`, one ``BEGIN IMMEDIATE``
transaction under one process-wide lock, so writers queue here rather than in
SQLite's busy handler.  Readers take a connection from a small pool; WAL lets
them run beside the writer.

The file is 0600 whatever the umask (SQLite gives its -wal and -shm the
database file's mode).  Once the file is found deleted, replaced (see
guard.FileGuard, looked at before every COMMIT) or corrupt, the database is
``unusable``: every later write raises DatabaseUnusable naming the file, so
nothing is acknowledged that is not stored.
"""
import contextlib
import json
import logging
import os
import queue
import threading
import time

import apsw

from octopus.files import make_private, private_opener
from octopus.store.guard import DatabaseUnusable, FileGuard

log = logging.getLogger("octopus.store")
CORRUPT = (apsw.CorruptError, apsw.NotADBError)

BUSY_TIMEOUT_MS = 5000
READERS = 8
# NORMAL in WAL mode: a process crash loses nothing committed; a power loss may
# lose the last transactions but never corrupts the file (see docs/OPERATIONS.md).
PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA temp_store = MEMORY",
)


def dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text):
    return None if text is None else json.loads(text)


def equal_to(filters, allowed):
    """``(conditions, params)`` keeping rows whose columns equal ``filters``
    (None values left out).  Only names in ``allowed`` reach the SQL."""
    where, params = [], []
    for name, value in filters.items():
        if name not in allowed:
            raise KeyError(name)
        if value is not None:
            where.append("%s = ?" % name)
            params.append(value)
    return where, params


def where_clause(conditions):
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def _dict_rows(cursor, row):
    return {d[0]: v for d, v in zip(cursor.getdescription(), row)}


class Database:
    def __init__(self, path, readers=READERS):
        self.path = os.path.abspath(path)
        os.makedirs(os.path.dirname(self.path), 0o700, exist_ok=True)
        os.close(private_opener(self.path, os.O_RDWR | os.O_CREAT))  # 0600 before SQLite
        self._write_lock = threading.Lock()
        self.unusable = None  # why, once the file is found gone or corrupt
        self._writer = self._connect()
        self._readers = queue.LifoQueue()
        self._all = [self._writer]
        for _ in range(readers):
            conn = self._connect()
            self._readers.put(conn)
            self._all.append(conn)
        for suffix in ("-wal", "-shm"):  # left 0644 by an older version
            make_private(self.path + suffix)
        self._guard = FileGuard(self.path)
        self._looked_at = time.monotonic()

    def _connect(self):
        conn = apsw.Connection(self.path, statementcachesize=128)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        conn.row_trace = _dict_rows
        return conn

    def _unusable(self, why):
        """Mark the database unusable (said once in the log); the error to raise."""
        if self.unusable is None:
            self.unusable = "the database file %s %s" % (self.path, why)
            log.critical("%s", self.unusable)
        return DatabaseUnusable(self.unusable)

    def check_file(self):
        """Raise DatabaseUnusable if the file is known bad or is no longer at its path."""
        if self.unusable is not None:
            raise DatabaseUnusable(self.unusable)
        problem = self._guard.problem()
        if problem is not None:
            raise self._unusable("%s while the server was running: nothing is written any "
                                 "more; restore it from a backup and restart the server"
                                 % problem)

    def looked_at_lately(self, every=1.0):
        """``unusable``, after a look at the file unless one was taken in the last
        ``every`` seconds: reads never commit, so this is how they notice."""
        now = time.monotonic()
        if self.unusable is None and now - self._looked_at >= every:
            self._looked_at = now
            try:
                self.check_file()
            except DatabaseUnusable:
                pass
        return self.unusable

    def corrupt(self, error):
        """Mark the database corrupt (``error`` says how it was found); the error to raise."""
        return self._unusable("is corrupt (%s): nothing is written any more; stop the server, "
                              "then restore a backup or see `db check`" % error)

    @contextlib.contextmanager
    def write(self):
        """Yield the writer connection inside one BEGIN IMMEDIATE transaction."""
        with self._write_lock:
            if self.unusable is not None:
                raise DatabaseUnusable(self.unusable)
            conn = self._writer
            self._after_commit = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    self.check_file()  # a commit into a deleted file would be lost
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (a failed COMMIT, I/O
                    # errors); never leave the writer inside a transaction.
                    if not conn.get_autocommit():
                        conn.execute("ROLLBACK")
                    raise
            except CORRUPT as e:
                raise self.corrupt(e) from e
            for action in self._after_commit:
                action()

    def after_commit(self, action):
        """Call ``action`` once the current write transaction has committed
        (never if it rolls back): for in-memory state that must follow it."""
        self._after_commit.append(action)

    @contextlib.contextmanager
    def exclusive(self):
        """Yield the writer connection under the write lock, outside any
        transaction: for VACUUM, which cannot run inside one."""
        with self._write_lock:
            self.check_file()
            try:
                yield self._writer
            except CORRUPT as e:
                raise self.corrupt(e) from e

    @contextlib.contextmanager
    def read(self):
        """Yield a reader connection; wrap multi-statement reads in BEGIN yourself."""
        conn = self._readers.get()
        try:
            yield conn
        except CORRUPT as e:
            raise self.corrupt(e) from e
        finally:
            self._readers.put(conn)

    def close(self):
        with self._write_lock:
            for conn in self._all:
                conn.close()
            self._all = []
