"""Guards around the database file: one server per file, and the file it opened
is still the one at its path.

A database deleted or replaced under a running server (``rm octopus.db*``, a
restore copied over it) keeps working through the open descriptors, so every
write would be acknowledged and then lost at restart.  ``FileGuard`` notices:
the path no longer names the file that was opened (device and inode).

The lock is an fcntl (POSIX) lock on ``<database>.lock`` holding the pid:
released by the kernel when the process ends however it ends, and not
inherited by forked children.
"""
import errno
import fcntl
import os


class DatabaseUnusable(Exception):
    """The database file is gone, replaced or corrupt; the message says which file
    and what to do.  Nothing is written once this is raised."""


class FileGuard:
    """Whether ``path`` still names the file that was opened."""

    def __init__(self, path):
        self.path = path
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)

    def problem(self):
        """None while the file is in place, else what happened to it (one stat)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "was deleted"
        except OSError as e:
            return "cannot be looked at (%s)" % (e.strerror or e)
        if (st.st_dev, st.st_ino) != self._identity:
            return "was replaced by another file"
        return None


class Locked(Exception):
    """Another process holds the lock; ``pid`` is the one it wrote (or None)."""

    def __init__(self, path, pid):
        super().__init__(path, pid)
        self.path = path
        self.pid = pid


def lock(path):
    """Hold an exclusive lock on ``path`` (created 0600) for as long as this
    process lives or until the descriptor returned is closed; write our pid in
    it.  Raises Locked when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EAGAIN):
            os.close(fd)
            raise
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise Locked(path, int(holder) if holder.isdigit() else None)
    os.ftruncate(fd, 0)
    os.pwrite(fd, b"%d\n" % os.getpid(), 0)
    return fd
