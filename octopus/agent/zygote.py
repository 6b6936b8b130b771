"""The run launcher: a small single-threaded process that forks one child per run.

The agent talks to it over stdin/stdout in JSON lines.  Forking from this
process (never from the threaded agent) is safe, cheap (no interpreter start
per run) and gives each run its own process group, so a run and everything
it started can be stopped at once.

  agent -> zygote: {"op": "run", "id", "path", "action", "args", "kwargs", "output_limit"}
                   {"op": "kill", "id", "grace"}
  zygote -> agent: {"op": "done", "id", "status", "result", "output", "duration"}
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
                 "started", "exit_status", "eof", "kill_at")

    def __init__(self, run_id, pid, result_fd, output_file, output_limit):
        self.run_id = run_id
        self.pid = pid
        self.result_fd = result_fd
        self.output_file = output_file
        self.output_limit = output_limit
        self.chunks = []
        self.started = time.monotonic()
        self.exit_status = None
        self.eof = False
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
            for key, _ in self._selector.select(timeout=self._next_timeout()):
                if key.data == "in":
                    if not self._read_commands():
                        return self._shutdown()
                elif key.data == "wake":
                    _drain(wake_r)
                else:
                    self._read_result(key.data)
            self._reap()
            self._escalate_kills()

    def _next_timeout(self):
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
            self._codes[key] = code
        return code

    def _start(self, msg):
        try:
            code = self._code(msg["path"])
        except Exception as e:  # unreadable or not Python: the run fails, we go on
            self._send(_done(msg["id"], "failed", _error(e), "", 0.0))
            return
        output = tempfile.TemporaryFile(dir=self._workdir)
        result_r, result_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:  # out of processes or memory: fail this run only
            for fd in (result_r, result_w):
                os.close(fd)
            output.close()
            self._send(_done(msg["id"], "failed", _error(e), "", 0.0))
            return
        if pid == 0:  # the child never returns from here
            os.close(result_r)
            _child(code, msg, result_w, output.fileno())
        os.close(result_w)
        os.set_blocking(result_r, False)
        child = Child(msg["id"], pid, result_r, output, msg.get("output_limit", 1 << 20))
        self._children[pid] = child
        self._selector.register(result_r, selectors.EVENT_READ, child)

    def _read_result(self, child):
        try:
            data = os.read(child.result_fd, 1 << 16)
        except BlockingIOError:
            return
        if data:
            child.chunks.append(data)
        else:
            child.eof = True
            self._selector.unregister(child.result_fd)

    def _reap(self):
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is not None:
                child.exit_status = status
                self._finish(child)

    def _finish(self, child):
        if not child.eof:  # a grandchild may still hold the pipe: take what is there
            try:
                while True:
                    data = os.read(child.result_fd, 1 << 16)
                    if not data:
                        break
                    child.chunks.append(data)
            except BlockingIOError:
                pass
            self._selector.unregister(child.result_fd)
        os.close(child.result_fd)
        duration = time.monotonic() - child.started
        output = _read_output(child.output_file, child.output_limit)
        try:
            outcome = json.loads(b"".join(child.chunks))
            status, result, duration = outcome["status"], outcome["result"], outcome["duration"]
        except (ValueError, KeyError):
            status, result = "failed", {"error": _exit_error(child.exit_status, child.kill_at)}
        self._send(_done(child.run_id, status, result, output, duration))

    def _kill(self, run_id, grace):
        for child in self._children.values():
            if child.run_id == run_id and child.kill_at is None:
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
        return 0


def _child(code, msg, result_fd, output_fd):
    """Run one action in this forked process and write its outcome; never returns."""
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
        started = time.monotonic()
        try:
            module = types.ModuleType(os.path.basename(msg["path"])[:-3])
            module.__file__ = msg["path"]
            exec(code, module.__dict__)
            value = getattr(module, msg["action"])(*msg.get("args", []), **msg.get("kwargs", {}))
            outcome = {"status": "success", "result": value}
            payload = json.dumps(dict(outcome, duration=time.monotonic() - started),
                                 allow_nan=False)
        except BaseException as e:  # the action's failure is the run's result
            payload = json.dumps({"status": "failed", "result": _error(e),
                                  "duration": time.monotonic() - started})
        _write_all(result_fd, payload.encode())
        status = 0
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


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
