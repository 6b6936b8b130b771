"""The run launcher: a small single-threaded process that keeps run workers.

The agent talks to it over stdin/stdout in JSON lines.  Workers are forked
from here (never from the threaded agent), each leading its own process
group; one is always kept idle, so a run never waits for a fork.  A worker
that crashes, is killed (cancel, timeout) or has done its share of runs is
simply replaced.  When a run ends, what it left running in its worker's
session is stopped, unless the run keeps its processes (see _run_ended).

  agent -> launcher: {"op": "run", "id", "task_id", "path", "action", "args", "kwargs",
                      "output_limit", "keep_processes" (optional)}
                     {"op": "kill", "id", "grace"}
  launcher -> agent: {"op": "started", "id", "pid"}
                     {"op": "done", "id", "status", "result", "output", "duration"}
"""
import json
import os
import selectors
import signal
import sys
import time

from octopus.agent import isolation, worker as worker_code
from octopus.agent.outlet import Outlet
from octopus.agent.sessions import (KILL_GRACE, Sweeper, become_subreaper, signal_pid,
                                    signal_session)
from octopus.constants import run_error

STOP_GRACE = 2.0   # seconds runs get to end on SIGTERM when the agent stops


class Worker:
    __slots__ = ("pid", "cmd_fd", "cmd", "result_fd", "buffer", "run_id", "started",
                 "stopping", "runs_left")

    def __init__(self, pid, cmd_fd, result_fd, runs_left):
        self.pid = pid
        self.cmd_fd = cmd_fd
        self.cmd = Outlet(cmd_fd)  # runs are handed over without waiting for the worker
        self.result_fd = result_fd
        self.buffer = b""
        self.run_id = None      # the run it is doing, if any
        self.started = None
        self.stopping = False   # sent SIGTERM: its result no longer counts as a clean end
        self.runs_left = runs_left


class Zygote:
    def __init__(self, infile, outfile, workdir, runs_per_worker=100, run_as=None,
                 runs_base=None):
        self._run_as = run_as
        self._runs_base = runs_base or workdir  # with RUN_AS, a folder the agent made
        self._in = infile
        self._out = Outlet(outfile.fileno())  # to the agent: never waits for it to read
        self._workdir = workdir
        self._runs_per_worker = runs_per_worker
        self._codes = {}      # compiled plugins, inherited by workers forked later
        self._workers = {}    # pid -> Worker
        self._idle = []       # Workers waiting for a run
        self._keep = set()    # ids of runs going on whose processes outlive them
        # Stops what ended runs left running, and stopped runs' sessions.  As a
        # subreaper (Linux) we adopt the orphans of our runs, so _reap collects them.
        self._sweeper = Sweeper(KILL_GRACE, adopts=become_subreaper())
        self._fork_failed_at = None
        self._agent_lost = False  # its pipe to the agent broke: the agent is gone
        self._selector = selectors.DefaultSelector()
        self._buffer = b""

    # -- the loop ---------------------------------------------------------

    def serve(self):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        # The agent decides when we stop (it closes our stdin): a signal to its
        # whole process group (Ctrl-C, systemd's stop, kill -TERM -pgid) must
        # not end us before we have stopped and reported our runs.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.set_blocking(self._in.fileno(), False)
        self._selector.register(self._in.fileno(), selectors.EVENT_READ, "in")
        self._selector.register(wake_r, selectors.EVENT_READ, "wake")
        while not self._agent_lost:
            events = self._selector.select(timeout=self._next_timeout())
            for key, _ in events:
                if key.data == "in":
                    if not self._read_commands():
                        return self._shutdown()
                elif key.data == "wake":
                    _drain(wake_r)
                elif isinstance(key.data, Outlet):
                    self._flush(key.data)
                else:
                    self._read_result(key.data)
            self._reap()
            self._sweeper.finish(time.monotonic())
            if not events and not self._idle:
                self._keep_one_idle()
        return self._shutdown()

    def _next_timeout(self):
        now = time.monotonic()
        if not self._idle and (self._fork_failed_at is None or now - self._fork_failed_at > 1):
            # Fork the next worker once idle, or after 2 ms of runs going on,
            # so the fork never delays a result.
            return 0.002 if self._workers else 0.0
        deadline = self._sweeper.next_deadline()
        return 1.0 if deadline is None else max(0.0, deadline - now)

    def _read_commands(self):
        try:
            data = os.read(self._in.fileno(), 1 << 20)
        except BlockingIOError:
            return True
        if not data:
            return False
        self._buffer += data
        if b"\n" not in data:  # the middle of a large run: wait for its end
            return True
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                msg = json.loads(line)
                if msg["op"] == "run":
                    self._start(msg)
                elif msg["op"] == "kill":
                    self._kill(msg["id"], msg.get("grace", KILL_GRACE))
        return True

    def _send(self, msg):
        self._out.push(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        self._flush(self._out)

    def _flush(self, outlet):
        """Write what ``outlet`` holds as far as its pipe takes it; the selector
        says when it can take more."""
        try:
            outlet.flush()
        except OSError:
            if outlet is self._out:  # the agent is gone: so are its runs (see serve)
                self._agent_lost = True
            outlet.discard()  # a dead worker's pipe: _reap reports its run
        self._watch(outlet)

    def _watch(self, outlet):
        if outlet.pending != outlet.registered:
            if outlet.pending:
                self._selector.register(outlet.fd, selectors.EVENT_WRITE, outlet)
            else:
                self._selector.unregister(outlet.fd)
            outlet.registered = outlet.pending

    # -- workers ----------------------------------------------------------

    def _fork(self):
        cmd_r, cmd_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (cmd_r, cmd_w, result_r, result_w):
                os.close(fd)
            raise
        if pid == 0:  # the worker never returns from here
            for fd in [cmd_w, result_r] + [w.cmd_fd for w in self._workers.values()]:
                os.close(fd)
            worker_code.serve(cmd_r, result_w, self._runs_base, self._runs_per_worker,
                              self._codes, self._run_as)
        os.close(cmd_r)
        os.close(result_w)
        os.set_blocking(result_r, False)
        worker = Worker(pid, cmd_w, result_r, self._runs_per_worker)
        self._workers[pid] = worker
        self._selector.register(result_r, selectors.EVENT_READ, worker)
        return worker

    def _keep_one_idle(self):
        try:
            self._idle.append(self._fork())
            self._fork_failed_at = None
        except OSError:
            self._fork_failed_at = time.monotonic()  # try again in a second, or on demand

    def _start(self, msg):
        self._reap()  # an idle worker may have died since we last looked
        try:
            worker_code.load_code(self._codes, msg["path"])  # workers forked later inherit it
            if self._run_as is not None:  # the plugin cache is closed to RUN_AS's user
                with open(msg["path"], encoding="utf-8", errors="surrogateescape") as f:
                    msg["source"] = f.read()
            worker = self._hand(msg)
        except Exception as e:  # unreadable plugin, or no process to be had: this run fails
            self._send(_done(msg["id"], "failed", worker_code.error(e), "", 0.0))
            return
        worker.run_id, worker.started = msg["id"], time.monotonic()
        worker.runs_left -= 1
        if msg.get("keep_processes"):
            self._keep.add(msg["id"])
        self._send({"op": "started", "id": msg["id"], "pid": worker.pid})

    def _hand(self, msg):
        """Give the run to an idle worker (or a new one); returns that worker."""
        line = json.dumps(msg).encode() + b"\n"
        for _ in range(2):
            worker = self._idle.pop() if self._idle else self._fork()
            try:
                worker.cmd.push(line)
                worker.cmd.flush()  # the rest of a large run follows as it reads
                self._watch(worker.cmd)
                return worker
            except OSError:  # it died while idle: drop it, take a fresh one
                signal_session(worker.pid, signal.SIGKILL)
                worker.runs_left = 0
        raise OSError("no worker process would take the run")

    def _read_result(self, worker):
        """Read what the worker wrote; False once there is nothing more to read now."""
        if worker.result_fd is None:  # reaped earlier in this turn of the loop
            return False
        try:
            data = os.read(worker.result_fd, 1 << 16)
        except BlockingIOError:
            return False
        if not data:  # it exited; _reap reports a run it left unfinished
            self._selector.unregister(worker.result_fd)
            os.close(worker.result_fd)
            worker.result_fd = None
            return False
        worker.buffer += data
        if worker.buffer.endswith(b"\n") and worker.run_id is not None:  # a whole result
            line, worker.buffer = worker.buffer, b""
            try:
                outcome = json.loads(line)
                done = _done(worker.run_id, outcome["status"], outcome["result"],
                             outcome["output"], outcome["duration"])
            except (ValueError, KeyError, TypeError):  # garbled: do not trust this worker again
                done = _done(worker.run_id, "failed", run_error(
                    "BadWorkerReply", "the run's process wrote an unreadable result"), "", 0.0)
                worker.runs_left = 0
                signal_session(worker.pid, signal.SIGKILL)
            self._send(done)
            self._run_ended(worker)
            worker.run_id = None
            if worker.runs_left > 0 and not worker.stopping:
                self._idle.append(worker)
        return True

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            # Its exit can be seen before its last result: read that first.
            while worker.result_fd is not None and self._read_result(worker):
                pass
            if worker in self._idle:
                self._idle.remove(worker)
            if worker.result_fd is not None:
                self._selector.unregister(worker.result_fd)
                os.close(worker.result_fd)
            worker.cmd.discard()
            self._watch(worker.cmd)
            os.close(worker.cmd_fd)
            if worker.run_id is not None:
                duration = time.monotonic() - worker.started
                self._send(_done(worker.run_id, "failed",
                                 _exit_error(status, worker.stopping), "", duration))
                self._run_ended(worker)
            isolation.remove_worker_dirs(self._runs_base, pid)

    def _kill(self, run_id, grace):
        """Stop a run: SIGTERM to everything it started, SIGKILL after ``grace``."""
        for worker in self._workers.values():
            if worker.run_id == run_id and not worker.stopping:
                worker.stopping = True
                self._sweeper.stop_session(worker.pid, grace)

    def _run_ended(self, worker):
        """The run ``worker`` did has ended: stop what it left in the session.

        SIGTERM now and SIGKILL after KILL_GRACE, to the processes found now
        (and any they start meanwhile), never to the worker, which may be
        doing its next run by then.  A run that keeps its processes retires
        its worker instead: a later run stopped in that session would take
        them with it.
        """
        keep = worker.run_id in self._keep
        self._keep.discard(worker.run_id)
        if worker.stopping:  # the whole session is being stopped already
            return
        if not keep:
            self._sweeper.sweep(worker.pid, spare=worker.pid, workers=self._workers)
        elif worker.pid in self._workers:  # not reaped yet: its pid is still its own
            worker.runs_left = 0
            signal_pid(worker.pid, signal.SIGKILL)

    def _shutdown(self):
        """The agent is stopping (or gone): SIGTERM every run, SIGKILL what is
        left after a grace, say which runs were stopped; RUN_AS's folder goes
        whatever happens."""
        try:
            self._stop_all()
        finally:
            if self._runs_base != self._workdir:  # RUN_AS's folder in the system's temp
                isolation.remove_run_dir(self._runs_base)
        return 0

    def _stop_all(self):
        going = [(w.run_id, w.started) for w in self._workers.values() if w.run_id is not None]
        sessions = list(self._workers) + self._sweeper.stopping()
        for sid in sessions:
            signal_session(sid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self._workers and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self._workers.pop(pid, None)
            else:
                time.sleep(0.02)
        for sid in sessions:
            signal_session(sid, signal.SIGKILL)
        self._sweeper.finish(float("inf"))
        for pid in sessions:
            isolation.remove_worker_dirs(self._runs_base, pid)
        if self._agent_lost:  # nobody to tell
            return
        for run_id, started in going:
            self._send(_done(run_id, "failed", run_error(
                "AgentStopped", "the agent stopped while this run was going"), "",
                time.monotonic() - started))
        try:  # the agent reads until we exit; it kills us if we take too long
            self._out.drain(time.monotonic() + STOP_GRACE)
        except OSError:
            pass


def _exit_error(status, stopped):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        how = "stopped" if stopped else "killed"
        return run_error("ProcessKilled", "run process %s by signal %d (%s)"
                         % (how, sig, signal.Signals(sig).name))
    return run_error("ProcessExited", "run process exited with code %d before reporting a "
                     "result" % os.WEXITSTATUS(status))


def _done(run_id, status, result, output, duration):
    return {"op": "done", "id": run_id, "status": status, "result": result,
            "output": output, "duration": round(duration, 6)}


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def main():
    workdir = sys.argv[1]
    runs_per_worker = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    run_as = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    runs_base = sys.argv[4] if len(sys.argv) > 4 else None
    os.makedirs(workdir, exist_ok=True)
    for name in os.listdir(workdir):  # run folders a killed launcher left
        if name.startswith("run-"):
            isolation.remove_run_dir(os.path.join(workdir, name))
    sys.exit(Zygote(sys.stdin.buffer, sys.stdout.buffer, workdir, runs_per_worker,
                    run_as, runs_base).serve())


if __name__ == "__main__":
    main()
