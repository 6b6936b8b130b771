"""``octopus.pyz db backup FILE``, ``db check`` and ``db vacuum``.

All find the database as the server does (DB_FILE, or DATA_DIR/octopus.db,
from --config, OCTOPUS_* and --data-dir), never create one, and fail with
one line.  Backup and check are safe beside a running server: WAL lets them
read one consistent snapshot while the server keeps writing.  Vacuum holds
the write lock while it runs, as the server's own weekly VACUUM does.
Progress (pages copied; start and end of check and vacuum) goes to stderr
on a terminal or with --progress, never to stdout (ctl_progress.py).
"""
import argparse
import os
import sys
import tempfile
import time

from octopus import config as settings
from octopus.config import ConfigError
from octopus.ctl_progress import Progress, percent, wanted

STEP_PAGES = 1024  # pages copied per backup step (4 MiB at the default page size)
BUSY_TIMEOUT_MS = 10000


class DbError(Exception):
    """A failure reported as one line."""


def parser():
    p = argparse.ArgumentParser(
        prog="octopus.pyz db",
        description="Back up or check the server's SQLite database (safe while it runs).")
    sub = p.add_subparsers(dest="command", metavar="{backup,check,vacuum}")
    backup = sub.add_parser("backup", help="copy the database to FILE (online backup)")
    backup.add_argument("file", metavar="FILE", help="where to write the copy")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    backup.add_argument("--step-pages", type=int, default=STEP_PAGES, metavar="N",
                        help="pages copied per step (default %d)" % STEP_PAGES)
    check = sub.add_parser("check", help="run integrity_check and foreign_key_check")
    vacuum = sub.add_parser("vacuum", help="VACUUM now: give the free pages back to the disk "
                                           "(writes wait while it runs)")
    for command in (backup, check, vacuum):
        command.add_argument("--data-dir", help="folder holding octopus.db (DATA_DIR)")
        command.add_argument("--config", help="file of NAME = value lines "
                                              "(default: $OCTOPUS_CONFIG)")
        command.add_argument("--progress", action="store_true",
                             help="progress on stderr (pages copied; start and end with the "
                                  "time taken) even when it is not a terminal")
        command.add_argument("--quiet", action="store_true",
                             help="no progress, and no summary line on stdout")
    return p


def main(argv):
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_usage(sys.stderr)
        sys.stderr.write("octopus.pyz db: say backup FILE, check or vacuum\n")
        return 2
    progress = Progress(wanted(args))
    try:
        path = database_path(args)
        if args.command == "backup":
            return backup(path, args.file, args.force, max(1, args.step_pages), progress,
                          args.quiet)
        return timed(vacuum if args.command == "vacuum" else check, path, progress, args.quiet)
    except (ConfigError, DbError) as e:
        progress.close()
        sys.stderr.write("octopus db: %s\n" % e)
        return 2


def timed(command, path, progress, quiet):
    """``command(path)`` between a start and an end line: SQLite gives no steps to count."""
    progress.update("%s of %s started" % (command.__name__, path))
    started = time.monotonic()
    code = command(path, quiet)
    progress.done("%s of %s finished in %.2fs" % (command.__name__, path,
                                                 time.monotonic() - started))
    return code


def database_path(args):
    flags = {"DATA_DIR": args.data_dir} if args.data_dir else None
    config = settings.layered(settings.SERVER_SETTINGS, args.config, flags)[0]
    return config.path(config.DB_FILE or "octopus.db")


def _apsw():
    try:
        import apsw
    except ImportError as e:
        raise DbError("this Python has no SQLite binding (apsw): %s" % e)
    if not hasattr(apsw, "Connection"):  # a pyz without this Python's binding
        raise DbError("this octopus.pyz has no SQLite binding (apsw) for Python %d.%d"
                      % sys.version_info[:2])
    return apsw


def open_existing(path):
    """A connection to the Octopus database at ``path``; never creates one."""
    apsw = _apsw()
    if not os.path.isfile(path):
        raise DbError("no database at %s (set DB_FILE, or --data-dir to the server's DATA_DIR)"
                      % path)
    try:
        # Read-write, not read-only: a WAL reader needs the -shm file, which
        # only a read-write connection may create.  Without OPEN_CREATE.
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        version = conn.execute("PRAGMA user_version").fetchall()[0][0]
    except apsw.Error as e:
        raise DbError("cannot read %s: %s" % (path, e))
    if version == 0:
        conn.close()
        raise DbError("%s is not an Octopus database (schema version 0)" % path)
    return conn


def backup(path, target, force=False, step_pages=STEP_PAGES, progress=None, quiet=False):
    """Copy the database at ``path`` to ``target`` through a temporary file."""
    apsw = _apsw()
    target = os.path.abspath(target)
    if os.path.exists(target) and not force:
        raise DbError("%s exists; pass --force to replace it" % target)
    if os.path.isdir(target):
        raise DbError("%s is a folder" % target)
    source = open_existing(path)
    started = time.monotonic()
    try:
        fd, partial = tempfile.mkstemp(prefix=os.path.basename(target) + ".",
                                       suffix=".partial", dir=os.path.dirname(target))
    except OSError as e:
        source.close()
        raise DbError("cannot write in %s: %s" % (os.path.dirname(target), e.strerror or e))
    os.close(fd)
    try:
        pages, steps = _copy(apsw, source, partial, step_pages, progress or Progress(False))
        if os.path.exists(target) and not force:  # appeared while we copied
            raise DbError("%s exists; pass --force to replace it" % target)
        os.replace(partial, target)
        _sync_dir(os.path.dirname(target))
    except (apsw.Error, OSError) as e:
        raise DbError("backup of %s failed: %s" % (path, e))
    finally:
        source.close()
        if os.path.exists(partial):
            os.remove(partial)
    _say(quiet, "Backed up %s to %s: %d bytes, %d pages in %d steps, %.2fs"
         % (path, target, os.path.getsize(target), pages, steps, time.monotonic() - started))
    return 0


def _say(quiet, summary):
    if not quiet:
        print(summary)


def _copy(apsw, source, partial, step_pages, progress):
    """Copy in steps from one read snapshot of ``source``; returns (pages, steps).

    The backup API restarts from the first page whenever another connection
    writes, so under a busy server a stepped backup would never end.  Holding
    a read transaction pins one snapshot (in WAL mode that blocks no writer;
    it only keeps checkpoints from passing it until the copy is done).
    """
    source.execute("BEGIN")
    try:
        source.execute("SELECT count(*) FROM sqlite_master").fetchall()
        dest = apsw.Connection(partial)
        try:
            steps = 0
            with dest.backup("main", source, "main") as copy:
                while not copy.done:
                    copy.step(step_pages)
                    steps += 1
                    pages = copy.page_count
                    progress.update("copied " + percent(pages - copy.remaining, pages, "pages"))
                progress.done()
        finally:
            dest.close()
    finally:
        source.execute("COMMIT")
    return pages, steps


def _sync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check(path, quiet=False):
    """integrity_check and foreign_key_check: 0 when both pass, else 1."""
    apsw = _apsw()
    conn = open_existing(path)
    try:
        conn.execute("BEGIN")  # one snapshot for every check and count
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")
                    if row[0] != "ok"]
        problems += ["foreign key: %s row %s refers to a missing %s row" % (r[0], r[1], r[2])
                     for r in conn.execute("PRAGMA foreign_key_check")]
        counts = {table: conn.execute("SELECT count(*) FROM %s" % table).fetchall()[0][0]
                  for table in ("tasks", "executions", "agents")}
        version = conn.execute("PRAGMA user_version").fetchall()[0][0]
        conn.execute("COMMIT")
    except apsw.Error as e:
        raise DbError("cannot check %s: %s" % (path, e))
    finally:
        conn.close()
    for problem in problems:  # shown even with --quiet: they are the result
        print(problem)
    if problems:
        _say(quiet, "%s: %d problem(s) found" % (path, len(problems)))
        return 1
    _say(quiet, "%s: ok (schema version %d; %s)" % (path, version, ", ".join(
        "%d %s" % (n, table) for table, n in counts.items())))
    return 0


def vacuum(path, quiet=False):
    """VACUUM and truncate the WAL, as the server's maintenance does; prints the sizes."""
    apsw = _apsw()
    from octopus.store.maintenance import file_sizes  # after the check: it needs apsw

    conn = open_existing(path)
    before, started = file_sizes(path), time.monotonic()
    try:
        # On disk, not in memory: the temporary copy is as large as the database.
        conn.execute("PRAGMA temp_store = FILE")
        conn.execute("VACUUM")
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0]
    except apsw.Error as e:
        raise DbError("vacuum of %s failed: %s" % (path, e))  # SQLite rolled it back
    finally:
        conn.close()
    _say(quiet, "Vacuumed %s: %d bytes before, %d after, %.2fs%s" % (
        path, before, file_sizes(path), time.monotonic() - started,
        "" if not busy else " (WAL not truncated: readers held it)"))
    return 0
