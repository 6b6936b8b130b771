"""The run launcher: a small single-threaded process that forks one child per run.

The agent talks to it over stdin/stdout in JSON lines.  Forking from this
process (never from the threaded agent) is safe, cheap (no interpreter start
per run) and gives each run its own process group, so a run and everything
it started can be stopped at once.  One child is always forked ahead and
waits for its run ("the spare"), so a run never waits for a fork, and a run
is reported the moment its result arrives rather than when its process is
reaped.

  agent -> zygote: {"op": "run", "id", "path", "action", "args", "kwargs", "output_limit"}
                   {"op": "kill", "id", "grace"}
  zygote -> agent: {"op": "started", "id", "pid"}
                   {"op": "done", "id", "status", "result", "output", "duration"}
"""
import json
import os
import selectors
import signal
import sys
import tempfile
import time
import traceback
import types

KILL_GRACE = 5.0


class Child:
    __slots__ = ("run_id", "pid", "result_fd", "output_file", "output_limit", "chunks",
                 "started", "exit_status", "reported", "kill_at")

    def __init__(self, run_id, pid, result_fd, output_file, output_limit):
        self.run_id = run_id
        self.pid = pid
        self.result_fd = result_fd
        self.output_file = output_file
        self.output_limit = output_limit
        self.chunks = []
        self.started = time.monotonic()
        self.exit_status = None
        self.reported = False
        self.kill_at = None


class Zygote:
    def __init__(self, infile, outfile, workdir):
        self._in = infile
        self._out = outfile
        self._workdir = workdir
        self._codes = {}      # (path, mtime, size) -> code object
        self._children = {}   # pid -> Child
        self._selector = selectors.DefaultSelector()
        self._buffer = b""
        self._spare = None    # (pid, command fd, result fd, output file) of the next child

    # -- the loop ---------------------------------------------------------

    def serve(self):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent decides when we stop
        os.set_blocking(self._in.fileno(), False)
        self._selector.register(self._in.fileno(), selectors.EVENT_READ, "in")
        self._selector.register(wake_r, selectors.EVENT_READ, "wake")
        while True:
            events = self._selector.select(timeout=self._next_timeout())
            for key, _ in events:
                if key.data == "in":
                    if not self._read_commands():
                        return self._shutdown()
                elif key.data == "wake":
                    _drain(wake_r)
                else:
                    self._read_result(key.data)
            self._reap()
            self._escalate_kills()
            if not events and self._spare is None:
                self._prepare_spare()

    def _prepare_spare(self):
        # Forked when the loop is idle, so the fork never delays a result.
        try:
            self._spare = self._fork_spare()
        except OSError:
            pass  # forked on demand at the next run

    def _next_timeout(self):
        if self._spare is None:
            # Idle now, or after 2 ms of a run going on: time to fork the spare.
            return 0.002 if self._children else 0.0
        deadlines = [c.kill_at for c in self._children.values() if c.kill_at]
        if not deadlines:
            return 1.0
        return max(0.0, min(deadlines) - time.monotonic())

    def _read_commands(self):
        try:
            data = os.read(self._in.fileno(), 1 << 16)
        except BlockingIOError:
            return True
        if not data:
            return False
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._command(json.loads(line))
        return True

    def _command(self, msg):
        if msg["op"] == "run":
            self._start(msg)
        elif msg["op"] == "kill":
            self._kill(msg["id"], msg.get("grace", KILL_GRACE))

    def _send(self, msg):
        self._out.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        self._out.flush()

    # -- starting and finishing runs --------------------------------------

    def _code(self, path):
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        code = self._codes.get(key)
        if code is None:
            with open(path, "rb") as f:
                code = compile(f.read(), path, "exec", dont_inherit=True)
            for old in [k for k in self._codes if k[0] == path]:
                del self._codes[old]  # an older version of the same plugin
            self._codes[key] = code
        return code

    def _fork_spare(self):
        """Fork the child that will take the next run."""
        output = tempfile.TemporaryFile(dir=self._workdir)
        cmd_r, cmd_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (cmd_r, cmd_w, result_r, result_w):
                os.close(fd)
            output.close()
            raise
        if pid == 0:  # the child never returns from here
            os.close(cmd_w)
            os.close(result_r)
            _child(self._codes, cmd_r, result_w, output.fileno())
        os.close(cmd_r)
        os.close(result_w)
        os.set_blocking(result_r, False)
        return pid, cmd_w, result_r, output

    def _start(self, msg):
        try:
            self._code(msg["path"])
            if self._spare is None:
                self._spare = self._fork_spare()
        except Exception as e:  # unreadable plugin, or no process to be had: this run fails
            self._send(_done(msg["id"], "failed", _error(e), "", 0.0))
            return
        pid, cmd_w, result_r, output = self._spare
        self._spare = None
        _write_all(cmd_w, json.dumps(msg).encode())
        os.close(cmd_w)
        child = Child(msg["id"], pid, result_r, output, msg.get("output_limit", 1 << 20))
        self._children[pid] = child
        self._selector.register(result_r, selectors.EVENT_READ, child)
        self._send({"op": "started", "id": msg["id"], "pid": pid})

    def _read_result(self, child):
        try:
            data = os.read(child.result_fd, 1 << 16)
        except BlockingIOError:
            return
        if data:
            child.chunks.append(data)
            if data.endswith(b"\n"):  # the result is complete: report now
                self._finish(child)
        else:  # closed without a full result: the exit status will tell
            self._close_result(child)

    def _close_result(self, child):
        if child.result_fd is not None:
            self._selector.unregister(child.result_fd)
            os.close(child.result_fd)
            child.result_fd = None

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.get(pid)
            if child is not None:
                child.exit_status = status
                if not child.reported:
                    self._finish(child)
                del self._children[pid]
            elif self._spare is not None and self._spare[0] == pid:
                self._spare = None  # killed from outside; forked anew on demand

    def _finish(self, child):
        """Report a run: its result if it sent one, else how its process ended."""
        child.reported = True
        if child.result_fd is not None:
            try:  # take whatever is left; a grandchild may hold the pipe open
                while True:
                    data = os.read(child.result_fd, 1 << 16)
                    if not data:
                        break
                    child.chunks.append(data)
            except BlockingIOError:
                pass
            self._close_result(child)
        output = _read_output(child.output_file, child.output_limit)
        try:
            outcome = json.loads(b"".join(child.chunks))
            status, result, duration = outcome["status"], outcome["result"], outcome["duration"]
        except (ValueError, KeyError):
            status, result = "failed", {"error": _exit_error(child.exit_status, child.kill_at)}
            duration = time.monotonic() - child.started
        self._send(_done(child.run_id, status, result, output, duration))

    def _kill(self, run_id, grace):
        for child in self._children.values():
            if child.run_id == run_id and child.kill_at is None and not child.reported:
                _killpg(child.pid, signal.SIGTERM)
                child.kill_at = time.monotonic() + grace

    def _escalate_kills(self):
        now = time.monotonic()
        for child in self._children.values():
            if child.kill_at and now >= child.kill_at:
                _killpg(child.pid, signal.SIGKILL)
                child.kill_at = now + 3600  # SIGKILL is not refused; do not repeat it

    def _shutdown(self):
        for child in list(self._children.values()):
            _killpg(child.pid, signal.SIGKILL)
        if self._spare is not None:
            _killpg(self._spare[0], signal.SIGKILL)
        return 0


def _child(codes, cmd_fd, result_fd, output_fd):
    """Wait for one run, do it, write its outcome as one line; never returns."""
    status = 1
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        msg = _read_all(cmd_fd)
        if not msg:  # the launcher stopped before giving us a run
            status = 0
            return
        msg = json.loads(msg)
        started = time.monotonic()
        try:
            code = _load_code(codes, msg["path"])
            module = types.ModuleType(os.path.basename(msg["path"])[:-3])
            module.__file__ = msg["path"]
            exec(code, module.__dict__)
            value = getattr(module, msg["action"])(*msg.get("args", []), **msg.get("kwargs", {}))
            payload = json.dumps({"status": "success", "result": value,
                                  "duration": time.monotonic() - started}, allow_nan=False)
        except BaseException as e:  # the action's failure is the run's result
            payload = json.dumps({"status": "failed", "result": _error(e),
                                  "duration": time.monotonic() - started})
        sys.stdout.flush()
        sys.stderr.flush()
        _write_all(result_fd, payload.encode() + b"\n")
        status = 0
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def _load_code(codes, path):
    """The compiled plugin: from the launcher's cache if it had it when we forked."""
    st = os.stat(path)
    code = codes.get((path, st.st_mtime_ns, st.st_size))
    if code is None:
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec", dont_inherit=True)
    return code


def _read_all(fd):
    chunks = []
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _error(exc):
    if (isinstance(exc, TypeError) and "JSON serializable" in str(exc)) or (
            isinstance(exc, ValueError) and "JSON compliant" in str(exc)):
        message = "the action's return value is not JSON-serialisable: %s" % exc
    else:
        message = str(exc)
    return {"error": {"type": type(exc).__name__, "message": message,
                      "traceback": "".join(traceback.format_exception(type(exc), exc,
                                                                      exc.__traceback__))}}


def _exit_error(status, killed):
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        how = "stopped" if killed else "killed"
        return {"type": "ProcessKilled", "message": "run process %s by signal %d (%s)"
                % (how, sig, signal.Signals(sig).name), "traceback": ""}
    code = os.WEXITSTATUS(status) if status is not None else -1
    return {"type": "ProcessExited", "message": "run process exited with code %d before "
            "reporting a result" % code, "traceback": ""}


def _read_output(f, limit):
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    text = f.read(limit).decode("utf-8", "replace")
    f.close()
    if size > limit:
        text += "\n[... output truncated: %d of %d bytes kept]" % (limit, size)
    return text


def _done(run_id, status, result, output, duration):
    return {"op": "done", "id": run_id, "status": status, "result": result,
            "output": output, "duration": round(duration, 6)}


def _killpg(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def main():
    workdir = sys.argv[1] if len(sys.argv) > 1 else None
    if workdir:
        os.makedirs(workdir, exist_ok=True)
    zygote = Zygote(sys.stdin.buffer, sys.stdout.buffer, workdir)
    sys.exit(zygote.serve())


if __name__ == "__main__":
    main()
