"""The agent's side of the run launcher (see zygote.py)."""
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from octopus.constants import run_error

log = logging.getLogger("octopus.agent")

# The folder that holds the octopus package: a checkout, site-packages, or the
# zipapp's extracted copy.  The launcher needs only it and the stdlib.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_ORIGINAL_PYTHONPATH = "OCTOPUS_ORIGINAL_PYTHONPATH"


class Runner:
    """Starts runs in the launcher process and calls ``on_done(msg)`` as they finish."""

    def __init__(self, workdir, on_done, output_limit=1 << 20, runs_per_worker=100):
        self._workdir = workdir
        self._runs_per_worker = runs_per_worker
        self._on_done = on_done
        self._output_limit = output_limit
        self._lock = threading.Lock()
        self._proc = None
        self._reader = None
        self._active = {}  # run id -> process group of the run, once started
        self._closing = False

    def start(self):
        env = dict(os.environ)
        env[_ORIGINAL_PYTHONPATH] = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = _PACKAGE_ROOT
        code = ("import os; p = os.environ.pop(%r);\n"
                "os.environ.pop('PYTHONPATH');\n"
                "p and os.environ.__setitem__('PYTHONPATH', p)\n"
                "from octopus.agent.zygote import main; main()" % _ORIGINAL_PYTHONPATH)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, self._workdir, str(self._runs_per_worker)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        self._reader = threading.Thread(target=self._read, args=(self._proc,),
                                        name="runner-reader", daemon=True)
        self._reader.start()
        log.info("Run launcher started (pid %d)", self._proc.pid)

    def submit(self, run_id, path, action, args, kwargs, keep_processes=False):
        """Start a run; unless ``keep_processes``, what it leaves running is stopped."""
        msg = {"op": "run", "id": run_id, "path": path, "action": action, "args": args,
               "kwargs": kwargs, "output_limit": self._output_limit}
        if keep_processes:
            msg["keep_processes"] = True
        self._send(msg, run_id)

    def kill(self, run_id, grace=5.0):
        self._send({"op": "kill", "id": run_id, "grace": grace})

    def _send(self, msg, new_run=None):
        line = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            try:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
                if new_run is not None:
                    self._active[new_run] = None
                return
            except (BrokenPipeError, ValueError, OSError):
                log.error("Run launcher is gone; its reader restarts it")
        if new_run is not None:  # never reached the launcher: fail it here
            self._on_done(_failure(new_run, "LauncherDied",
                                   "the agent's run launcher was not running"))

    def _read(self, proc):
        try:
            for line in proc.stdout:
                self._handle(json.loads(line))
        except Exception:  # a garbled line: do not trust this launcher any more
            log.exception("Run launcher sent something unreadable; replacing it")
            proc.kill()
        finally:
            proc.wait()
            self._launcher_died(proc)

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

    def _launcher_died(self, proc):
        """Fail the runs it held and start a new one, unless we are closing."""
        with self._lock:
            lost, self._active = self._active, {}
            closing = self._closing
        for pgid in filter(None, lost.values()):
            try:  # its runs outlive it otherwise: each leads its own process group
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        for run_id in lost:
            self._on_done(_failure(run_id, "LauncherDied", "the agent's run launcher exited "
                                   "(code %s)" % proc.returncode))
        if not closing:
            log.error("Run launcher exited with code %s; restarting it", proc.returncode)
            self.start()

    def close(self):
        """Stop the launcher; runs still going are killed with it."""
        with self._lock:
            self._closing = True
            proc = self._proc
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        # Its last words (runs it stopped) are handled before we return.
        self._reader.join(10)


def _failure(run_id, kind, message):
    return {"op": "done", "id": run_id, "status": "failed", "output": "", "duration": 0.0,
            "result": run_error(kind, message)}
