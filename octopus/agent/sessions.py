"""Stopping the processes of a run's session: SIGTERM, then SIGKILL after a grace.

A worker leads its own session (os.setsid) and is reused for the next run, so
when a run ends the session's other members are what that run left behind:
background jobs of a shell, daemons, children never waited for.  They are
swept: SIGTERM at once and SIGKILL after a grace, never the worker itself.  A
run that is cancelled or times out has its whole session stopped, worker
included.  Linux lists sessions in /proc; elsewhere only the worker's process
group can be reached.
"""
import os
import signal
import time

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL, unless the agent says otherwise
PR_SET_CHILD_SUBREAPER = 36


class Sweeper:
    """SIGTERM now, SIGKILL after a grace: what runs left (``sweep``), or whole
    sessions (``stop_session``).  ``adopts``: this process is a subreaper
    (become_subreaper), so what a run leaves is its child or its worker's."""

    def __init__(self, grace, adopts=False, clock=time.monotonic):
        self._grace = grace
        self._clock = clock
        # (when to SIGKILL, session id, {pid: start time} swept, or None: all of it)
        self._due = []
        self._adopts = adopts

    def sweep(self, sid, spare, workers=()):
        """Stop the members of session ``sid`` but ``spare`` (the worker).

        ``workers``: this process's children that are workers, not left behind.
        """
        if self._nothing_left(sid, spare, workers):
            return
        left = {pid: start for pid, (_, start) in session_procs(sid).items() if pid != spare}
        for pid in left:
            signal_pid(pid, signal.SIGTERM)
        if left:
            self._due.append((self._clock() + self._grace, sid, left))

    def _nothing_left(self, sid, spare, workers):
        """True when surely nothing was left, found without reading all of /proc.

        What a run leaves is a child of its worker, or (its parent gone) an
        orphan adopted by this process, a subreaper.  Reading every process's
        stat costs milliseconds per run on a busy host; these lists cost a
        few reads (one more per orphan of another session, such as a kept one).
        """
        if not self._adopts:
            return False
        theirs, mine = children(spare), children(os.getpid())
        if theirs != [] or mine is None:
            return False
        return all(_session_of(pid) not in (sid, None) for pid in set(mine) - set(workers))

    def stop_session(self, sid, grace):
        """SIGTERM everything in session ``sid``, its worker too; SIGKILL after ``grace``.

        Tracked apart from the worker: it may be reaped long before a
        grandchild that ignores SIGTERM is gone."""
        signal_session(sid, signal.SIGTERM)
        self._due.append((self._clock() + grace, sid, None))

    def stopping(self):
        """Session ids being stopped whole (stop_session), not yet past their grace."""
        return [sid for _, sid, left in self._due if left is None]

    def next_deadline(self):
        return min(due[0] for due in self._due) if self._due else None

    def finish(self, now):
        """SIGKILL, past their grace, what SIGTERM did not end (and what those started since)."""
        due = [d for d in self._due if d[0] <= now]
        if not due:
            return
        self._due = [d for d in self._due if d[0] > now]
        for _, sid, left in due:
            if left is None:
                signal_session(sid, signal.SIGKILL)
                continue
            for pid in descendants(session_procs(sid), left):
                signal_pid(pid, signal.SIGKILL)


def signal_session(sid, sig):
    """Signal every process in session ``sid``: a worker and all a run started.

    A run's children may make process groups of their own (as shells do), but
    only setsid() takes them out of the worker's session.  Linux lists
    sessions in /proc; elsewhere the worker's process group has to do.
    """
    try:
        os.killpg(sid, sig)
    except OSError:
        pass
    for pid in session_procs(sid):
        signal_pid(pid, sig)


def become_subreaper():
    """On Linux, adopt the orphans of our runs, so the launcher reaps them; True if so."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:  # gone already
        pass


def children(pid):
    """The pids of ``pid``'s children, or None when Linux cannot tell
    (no CONFIG_PROC_CHILDREN, the process or a thread of it just ended)."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    kids = []
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as f:
                kids.extend(int(k) for k in f.read().split())
        except OSError:
            return None
    return kids


def _session_of(pid):
    """The session id of ``pid``, or None if it cannot be read (it may be ending)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def session_procs(sid):
    """{pid: (parent pid, start time)} of the processes in session ``sid``."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    procs = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                # After the parenthesised command name: fields 3 onwards.
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:  # field 6: the session id; 4: the parent; 22: start time
            procs[int(entry)] = (int(fields[1]), fields[19])
    return procs


def descendants(procs, left):
    """Pids in ``procs`` that are in ``left`` with the same start time (so not a
    reused pid), or were started by one of those."""
    found = []
    for pid in procs:
        ancestor, steps = pid, 0
        while ancestor in procs and steps <= len(procs):
            if left.get(ancestor) == procs[ancestor][1]:
                found.append(pid)
                break
            ancestor, steps = procs[ancestor][0], steps + 1
    return found
