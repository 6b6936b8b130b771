"""A run worker: a process forked by the launcher that runs actions one at a time.

It leads its own process group, so stopping a run (cancel, timeout) kills the
worker and everything the run started; the launcher then forks another.  A
worker is replaced after ``max_runs`` runs, so a plugin that leaks memory or
threads cannot grow a process for ever.  Each run gets a fresh module object,
its own captured output, a fresh private working directory (made before the
run comes, removed after its result is sent: neither is on the run's way) and
a clean environment (isolation.py).
"""
import json
import os
import signal
import sys
import time
import traceback
import types

from octopus.agent import isolation
from octopus.constants import MAX_RESULT


def serve(cmd_fd, result_fd, workdir, max_runs, codes, run_as=None):
    """Read runs as JSON lines from ``cmd_fd``, answer on ``result_fd``; never returns.
    ``workdir`` is where run folders are made (isolation.runs_base)."""
    status = 1
    try:
        _close_other_fds(cmd_fd, result_fd)
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.chdir("/")  # never the agent's folder: each run gets its own
        if run_as is not None:  # for good, before any run: root is not given back
            isolation.switch_user(run_as)
        home = ("/", isolation.clean_env(os.environ, run_as and run_as["home"]))
        lines = _lines(cmd_fd)
        for number in range(max_runs):
            try:
                run_dir, problem = isolation.make_run_dir(workdir, number), None
            except OSError as e:  # a full disk, say: the run fails, the worker goes on
                run_dir, problem = None, e
            line = next(lines, None)
            if line is None:  # the launcher closed our pipe: stop
                if run_dir is not None:  # made for a run that never came
                    isolation.remove_run_dir(run_dir)
                break
            if problem is not None:
                write_all(result_fd, json.dumps({"status": "failed", "result": error(problem),
                                                 "output": "", "duration": 0.0}).encode() + b"\n")
                continue
            msg = dict(json.loads(line), dir=run_dir)
            reap_children()  # what the sweeper killed after the last run
            outcome = run_one(msg, codes, null, home)
            reap_children()  # so the sweeper's quick look finds no child of ours
            write_all(result_fd, outcome)
            isolation.remove_run_dir(run_dir)
        status = 0
    finally:
        os._exit(status)


def run_one(msg, codes, null, home):
    """Do one run in its folder ``msg["dir"]``; returns its outcome as one JSON line."""
    out_fd = _output_file(msg["dir"])
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    started = time.monotonic()
    try:
        os.chdir(msg["dir"])
        os.environ.clear()
        os.environ.update(isolation.run_env(home[1], msg))
        module = types.ModuleType(os.path.basename(msg["path"])[:-3])
        module.__file__ = msg["path"]
        import_plugin(codes, msg, module)
        value = getattr(module, msg["action"])(*msg.get("args", []), **msg.get("kwargs", {}))
        outcome = {"status": "success", "result": _checked(value)}
    except BaseException as e:  # the action's failure is the run's result
        outcome = {"status": "failed", "result": error(e)}
    finally:
        _flush()
        os.dup2(null, 1)
        os.dup2(null, 2)
        _restore(home)
    outcome["duration"] = round(time.monotonic() - started, 6)
    outcome["output"] = read_output(out_fd, msg.get("output_limit", 1 << 20))
    # Text that is not valid Unicode (a lone surrogate, say from a file name
    # that is not UTF-8) cannot be stored: replace it rather than lose the run.
    return json.dumps(outcome, ensure_ascii=False).encode("utf-8", "replace") + b"\n"


class ResultTooLarge(Exception):
    pass


class PluginImportError(Exception):
    """The plugin's module did not compile, or raised as it was executed."""


def _import_failed(path, exc):
    name = os.path.basename(path)[:-3]
    return PluginImportError("plugin %s failed to import: %s: %s"
                             % (name, type(exc).__name__, exc))


def import_plugin(codes, msg, module):
    """Execute the run's plugin code in ``module``; a failure is a PluginImportError."""
    code = _code(codes, msg)
    try:
        exec(code, module.__dict__)
    except BaseException as e:  # whatever its code raised, the run names the import
        raise _import_failed(msg["path"], e) from e


def _checked(value):
    """``value`` if it is JSON of a size the server will take, else an exception."""
    size = len(json.dumps(value, allow_nan=False, ensure_ascii=False))
    if size > MAX_RESULT:
        raise ResultTooLarge("the action returned %d bytes of JSON; the limit is %d"
                             % (size, MAX_RESULT))
    return value


def load_code(codes, path):
    """The compiled plugin, cached by file identity (a changed file compiles anew)."""
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    code = codes.get(key)
    if code is None:
        with open(path, "rb") as f:
            code = _compile(f.read(), path)
        for old in [k for k in codes if k[0] == path]:
            del codes[old]
        codes[key] = code
    return code


def _code(codes, msg):
    """The run's compiled plugin: from the source the launcher sent (a worker
    running as RUN_AS cannot read the plugin cache), else from its file."""
    source = msg.get("source")
    if source is None:
        return load_code(codes, msg["path"])
    key = ("source", msg["path"], hash(source))
    if key not in codes:
        codes[key] = _compile(source, msg["path"])
    return codes[key]


def _compile(source, path):
    try:
        return compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte in the source
        raise _import_failed(path, e) from e


def error(exc):
    if (isinstance(exc, TypeError) and "JSON serializable" in str(exc)) or (
            isinstance(exc, ValueError) and "JSON compliant" in str(exc)):
        message = "the action's return value is not JSON-serialisable: %s" % exc
    else:
        message = str(exc)
    outcome = _extras(exc)
    outcome["error"] = {"type": type(exc).__name__, "message": message,
                        "traceback": plugin_traceback(exc)}
    return outcome


_AGENT_CODE = os.path.dirname(os.path.abspath(__file__)) + os.sep
MAX_EXTRAS = 64 * 1024  # characters of JSON an exception may add to a failed run's result


def plugin_traceback(exc):
    """The traceback from the plugin's own frame on, without the agent's frames above it.

    For an import failure it is the original error's: where the plugin raised,
    or the line that does not compile.
    """
    if isinstance(exc, PluginImportError) and exc.__cause__ is not None:
        exc = exc.__cause__
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_AGENT_CODE):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _extras(exc):
    """What the exception's ``result`` dict adds to the failed run's result, if JSON.

    A plugin's exception can carry details (the shell plugin's CommandFailed
    carries the return code and the ends of the output) beside the error.
    """
    try:  # plugin code: whatever it does, the run's error is still reported
        extra = getattr(exc, "result", None)
        if isinstance(extra, dict):
            extra = {k: v for k, v in extra.items() if isinstance(k, str) and k != "error"}
            if len(json.dumps(extra, allow_nan=False)) <= MAX_EXTRAS:
                return extra
    except Exception:
        pass
    return {}


def read_output(fd, limit):
    """What the run printed, cut at ``limit`` bytes with a note; closes ``fd``."""
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while len(data) < min(size, limit):
            chunk = os.read(fd, min(size, limit) - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    text = data.decode("utf-8", "replace")
    if size > limit:
        text += "\n[... output truncated: %d of %d bytes kept]" % (limit, size)
    return text


def _output_file(workdir):
    try:  # an unnamed file: nothing to clean up, even after a crash
        return os.open(workdir, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):
        import tempfile

        fd, path = tempfile.mkstemp(dir=workdir)
        os.unlink(path)
        return fd


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _restore(home):
    """Give the next run the working directory and environment we started with."""
    cwd, env = home
    try:
        if os.getcwd() != cwd:
            os.chdir(cwd)
    except OSError:
        os.chdir(cwd)
    if os.environ != env:
        os.environ.clear()
        os.environ.update(env)


def _close_other_fds(*keep):
    """Drop what the launcher had open (its loop, other workers' pipes)."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _max_fd())


def _max_fd():
    try:
        return min(os.sysconf("SC_OPEN_MAX"), 1 << 16)
    except (ValueError, OSError):
        return 1024


def _lines(fd):
    buffer = b""
    while True:
        while b"\n" not in buffer:
            data = os.read(fd, 1 << 16)
            if not data:
                return
            buffer += data
        line, buffer = buffer.split(b"\n", 1)
        yield line


def reap_children():
    """Collect the exit of every child that has ended: a run's children it never
    waited for would stay zombies of this worker, and the sweeper would then
    search all of /proc after every later run of it."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:  # none left
        pass


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
