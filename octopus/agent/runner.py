"""The agent's side of the run launcher (see zygote.py).

Callers of submit/kill write lines to the launcher's stdin without waiting
(what the pipe cannot take yet is left to a writer thread); one reader thread
reads its stdout.  No lock is held across a blocking read or write, so a
launcher slow to read a large run never stops its results being read (which
would stop it reading).
"""
import collections
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from octopus.agent import isolation
from octopus.constants import run_error

log = logging.getLogger("octopus.agent")

# The folder that holds the octopus package: a checkout, site-packages, or the
# zipapp's extracted copy.  The launcher needs only it and the stdlib.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
# Started in its work folder with -c: its sys.path would begin with '' (that
# folder), so the code takes it out and puts the package's root first.  The
# agent's own PYTHONPATH stays on sys.path (plugins may import from it) but
# leaves the environment runs see.
_LAUNCHER = ("import os, sys\n"
             "sys.path[:] = [%r] + [p for p in sys.path if p not in ('', '.')]\n"
             "os.environ.pop('PYTHONPATH', None)\n"
             "from octopus.agent.zygote import main; main()")
STOP_WAIT = 5.0    # seconds the launcher gets to stop its runs before it is killed
CHUNK = 1 << 16    # bytes per write
# A launcher that exits is started again after RESTART_FIRST seconds if it had
# lived LIVED_LONG, else after twice the last delay (up to RESTART_MAX): one
# that cannot start must not be restarted in a tight loop.
RESTART_FIRST = 0.5
RESTART_MAX = 30.0
LIVED_LONG = 10.0


class Runner:
    """Starts runs in the launcher process and calls ``on_done(msg)`` as they finish."""

    def __init__(self, workdir, on_done, output_limit=1 << 20, runs_per_worker=100,
                 run_as=None):
        self._workdir = workdir
        self._run_as = run_as  # isolation.resolve_run_as(RUN_AS), or None
        self._runs_per_worker = runs_per_worker
        self._on_done = on_done
        self._output_limit = output_limit
        self._lock = threading.Lock()  # guards the three below; never held across I/O
        self._link = None
        self._active = {}  # run id -> process group of the run, once started
        self._closing = False
        self._closed = threading.Event()  # set by close(): a pending restart is dropped
        self._restart_delay = 0.0

    @property
    def _proc(self):
        link = self._link
        return link.proc if link is not None else None

    def start(self):
        """Start a launcher; raises OSError if it cannot be (its RUN_AS folder
        cannot be made, no process to be had)."""
        # Runs are forked from the launcher: what it is started with is all
        # they inherit (no OCTOPUS_* setting, no token, not the agent's folder).
        env = isolation.clean_env(os.environ)
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        os.makedirs(self._workdir, exist_ok=True)
        # Made here, not in the launcher: a failure is one error, not a launcher crash.
        runs_base = isolation.runs_base(self._workdir, self._run_as)
        try:
            link = _Launcher([sys.executable, "-c", _LAUNCHER % _PACKAGE_ROOT, self._workdir,
                              str(self._runs_per_worker), json.dumps(self._run_as), runs_base],
                             env, self._workdir, self._read, runs_base)
        except BaseException:
            self._remove_runs_base(runs_base)
            raise
        with self._lock:
            closing = self._closing
            if not closing:
                self._link = link
        if closing:  # close() came first: this one is not wanted
            link.stop()
            return
        log.info("Run launcher started (pid %d)", link.proc.pid)

    def _remove_runs_base(self, runs_base):
        if runs_base != self._workdir:  # RUN_AS's folder in the system's temp
            isolation.remove_run_dir(runs_base)

    def submit(self, run_id, path, action, args, kwargs, task_id=None, keep_processes=False):
        """Start a run; unless ``keep_processes``, what it leaves running is stopped."""
        msg = {"op": "run", "id": run_id, "task_id": task_id, "path": path, "action": action,
               "args": args, "kwargs": kwargs, "output_limit": self._output_limit}
        if keep_processes:
            msg["keep_processes"] = True
        self._send(msg, run_id)

    def kill(self, run_id, grace=5.0):
        self._send({"op": "kill", "id": run_id, "grace": grace})

    def _send(self, msg, new_run=None):
        line = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            link = self._link
            taken = link is not None and not link.dead and not self._closing
            if taken:
                # Listed before it is written: if the launcher dies first, the
                # run is failed with the others it held.
                if new_run is not None:
                    self._active[new_run] = None
                link.send(line)  # never waits: what the pipe cannot take is buffered
        if not taken and new_run is not None:  # never reached a launcher: fail it here
            self._on_done(_failure(new_run, "LauncherDied",
                                   "the agent's run launcher was not running"))

    def _read(self, link):
        proc = link.proc
        try:
            for line in proc.stdout:
                self._handle(json.loads(line))
        except Exception:  # a garbled line: do not trust this launcher any more
            log.exception("Run launcher sent something unreadable; replacing it")
            proc.kill()
        finally:
            link.stop()
            proc.wait()
            self._launcher_died(link)

    def _handle(self, msg):
        with self._lock:
            if msg["op"] == "started":
                if msg["id"] in self._active:
                    self._active[msg["id"]] = msg["pid"]
                return
            self._active.pop(msg["id"], None)
        try:
            self._on_done(msg)
        except Exception:  # never stop reading the launcher: its runs would stall
            log.exception("Handling the result of run %s failed", msg.get("id"))

    def _launcher_died(self, link):
        """Fail the runs it held and start a new one, unless we are closing."""
        proc = link.proc
        with self._lock:
            link.dead = True
            lost = {}
            if self._link is link:
                lost, self._active = self._active, {}
            closing = self._closing
        for pgid in filter(None, lost.values()):
            try:  # its runs outlive it otherwise: each leads its own process group
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        for run_id in lost:
            if closing:
                self._on_done(_failure(run_id, "AgentStopped", "the agent stopped before this "
                                       "run could start"))
            else:
                self._on_done(_failure(run_id, "LauncherDied", "the agent's run launcher exited "
                                       "(code %s)" % proc.returncode))
        self._remove_runs_base(link.runs_base)  # it removes it itself, unless killed
        if not closing:
            self._restart_later(time.monotonic() - link.started, proc.returncode)

    def _restart_later(self, lived, code):
        delay = (RESTART_FIRST if lived > LIVED_LONG
                 else min(RESTART_MAX, max(RESTART_FIRST, 2 * self._restart_delay)))
        self._restart_delay = delay
        log.error("Run launcher exited with code %s; restarting it in %gs", code, delay)
        threading.Thread(target=self._restart, args=(delay,), name="runner-restart",
                         daemon=True).start()

    def _restart(self, delay):
        """Start a launcher after ``delay``, trying again (longer each time) until one
        starts or we close; runs submitted meanwhile fail at once (LauncherDied)."""
        while not self._closed.wait(delay):
            try:
                return self.start()
            except Exception as e:  # EMFILE, ENOMEM, a full temp folder: try again later
                delay = self._restart_delay = min(RESTART_MAX, 2 * delay)
                log.error("Run launcher could not be started (%s); trying again in %gs",
                          e, delay)

    def close(self, timeout=STOP_WAIT):
        """Stop the launcher; runs still going are killed with it.  Bounded:
        a launcher that has not gone after ``timeout`` is killed, and what it
        said last is waited for only as long as is left of ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closing = True
            link = self._link
        self._closed.set()
        if link is None:
            return
        link.stop()
        try:
            link.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("Run launcher did not stop within %gs: killing it", timeout)
            link.proc.kill()
        # Its last words (runs it stopped) are handled before we return, if in time.
        link.reader.join(max(0.1, deadline - time.monotonic()))


class _Launcher:
    """One launcher process, its reader thread, and a non-blocking send buffer.

    A line is written at once by the caller when the pipe has room (the usual
    case: no thread hop on the way to a run); what does not fit waits in the
    buffer for the writer thread, which waits for room without any lock.
    """

    def __init__(self, argv, env, cwd, read, runs_base):
        self.runs_base = runs_base  # where its workers make run folders
        self.started = time.monotonic()
        stdin_r, self._stdin = os.pipe()
        try:
            self.proc = subprocess.Popen(argv, stdin=stdin_r, stdout=subprocess.PIPE, env=env,
                                         cwd=cwd, close_fds=True)
        except BaseException:
            os.close(self._stdin)
            raise
        finally:
            os.close(stdin_r)
        os.set_blocking(self._stdin, False)  # so no write below can wait
        self.dead = False       # set (under the runner's lock) once its reader saw it end
        self._lock = threading.Lock()  # guards the three below and the fd; only
        self._backlog = collections.deque()  # non-blocking writes happen under it
        self._stopping = False
        self._wake = threading.Event()  # the backlog has data, or we stop
        self._writer = threading.Thread(target=self._write, name="runner-writer", daemon=True)
        self.reader = threading.Thread(target=read, args=(self,), name="runner-reader",
                                       daemon=True)
        self._writer.start()
        self.reader.start()

    def send(self, line):
        with self._lock:
            if self._stopping:
                return
            self._backlog.append(memoryview(line))
            if not self._flush():
                self._wake.set()

    def stop(self):
        """Drop what is not written yet and close its stdin: it stops its runs and exits."""
        with self._lock:
            self._stopping = True
            self._backlog.clear()
            self._wake.set()

    def _flush(self):
        """Write what the pipe takes now (never waits); True once the backlog is empty."""
        while self._backlog:
            try:
                written = os.write(self._stdin, self._backlog[0][:CHUNK])
            except BlockingIOError:
                return False
            except OSError:  # it is gone; the reader sees it end and says why
                self._backlog.clear()
                return True
            rest = self._backlog[0][written:]
            if rest:
                self._backlog[0] = rest
            else:
                self._backlog.popleft()
        return True

    def _write(self):
        while True:
            self._wake.wait()
            with self._lock:
                if self._stopping:
                    break
                if self._flush():
                    self._wake.clear()
                    continue
            # The pipe is full: wait for room with no lock held (or look again).
            select.select([], [self._stdin], [], 0.5)
        with self._lock:  # only this thread closes it, after the last write
            os.close(self._stdin)


def _failure(run_id, kind, message):
    return {"op": "done", "id": run_id, "status": "failed", "output": "", "duration": 0.0,
            "result": run_error(kind, message)}
