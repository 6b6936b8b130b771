"""Files only this user may read, whatever the umask (stdlib only: the agent uses it too).

Logs, the database and the agent's outbox hold task arguments, outputs and
results: a umask of 022 must not make them readable by every local user.
"""
import os
import stat


def private_opener(path, flags):
    """An ``opener`` for ``open()``: a new file is made 0600; an existing regular file
    open to others (left by an older version) is made 0600 too."""
    fd = os.open(path, flags, 0o600)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except OSError:  # not ours to change (a file of another user): leave it
        pass
    return fd


def make_private(path):
    """Make an existing regular file 0600; a missing one is no error."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        pass
