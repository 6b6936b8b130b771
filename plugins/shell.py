"""Shell plugin: runs a command through /bin/sh on the agent host."""

import os
import signal
import subprocess

_MAX_OUTPUT = 1024 * 1024  # bytes kept of each of stdout and stderr
_TAIL = 4096  # characters of each stream a failed command's result keeps


class CommandFailed(Exception):
    """The command exited with a non-zero status (or was killed by a signal).

    The agent adds ``result`` (the return code and the ends of stdout and
    stderr) to the failed run's result, beside the error.
    """

    def __init__(self, returncode, stdout, stderr):
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = "unknown"
            message = "killed by signal %d (%s)" % (-returncode, name)
        else:
            message = "exit status %d" % returncode
        super().__init__(message)
        self.result = {"returncode": returncode, "stdout": _tail(stdout),
                       "stderr": _tail(stderr)}


def _tail(text):
    """The last _TAIL characters of ``text``, marked when cut."""
    if len(text) <= _TAIL:
        return text
    return "[... %d characters before]\n" % (len(text) - _TAIL) + text[-_TAIL:]


def _decode(data):
    """Decode output as UTF-8, capped at _MAX_OUTPUT bytes with a truncation marker."""
    data = data or b""
    if len(data) <= _MAX_OUTPUT:
        return data.decode("utf-8", errors="replace")
    cut = len(data) - _MAX_OUTPUT
    text = data[:_MAX_OUTPUT].decode("utf-8", errors="replace")
    return text + "\n[... truncated %d bytes]" % cut


def _kill_group(proc):
    """Kill the command's whole process group (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _check_timeout(timeout):
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number, got %s" % type(timeout).__name__)
    if timeout <= 0:
        raise ValueError("timeout must be positive, got %r" % (timeout,))


def run(command, timeout=None, check=True):
    """Run `command` with /bin/sh -c; return {"returncode", "stdout", "stderr"}.

    A non-zero exit status fails the run with error type CommandFailed
    ("exit status 3"), the run's result also holding "returncode" and the
    last 4096 characters of "stdout" and "stderr"; so the task's retries
    apply. With check=False the run succeeds whatever the exit status and
    the caller inspects "returncode". Output is decoded as UTF-8 (invalid
    bytes replaced) and each stream is capped at 1 MiB, with a
    "[... truncated N bytes]" marker appended when cut. The task's own
    timeout limits the command; `timeout` (seconds, default none) is an
    extra limit: past it the command's whole process group is killed and
    TimeoutError is raised.
    """
    if not isinstance(command, str):
        raise TypeError("command must be a string, got %s" % type(command).__name__)
    _check_timeout(timeout)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Its own process group, so a timeout kills the command and its
        # children; the same session, so stopping the run reaches them too.
        preexec_fn=os.setpgrp,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        # The pipes may still be held open by anything that escaped the group;
        # don't wait on them forever.
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise TimeoutError(
            "command timed out after %s seconds and was killed: %r" % (timeout, command)
        ) from None
    except BaseException:
        _kill_group(proc)
        proc.kill()
        proc.wait()
        raise
    result = {
        "returncode": proc.returncode,
        "stdout": _decode(stdout),
        "stderr": _decode(stderr),
    }
    if check and proc.returncode != 0:
        raise CommandFailed(proc.returncode, result["stdout"], result["stderr"])
    return result
