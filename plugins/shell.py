"""Shell plugin: runs a command through /bin/sh on the agent host."""

import os
import signal
import subprocess

_MAX_OUTPUT = 1024 * 1024  # bytes kept of each of stdout and stderr


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


def run(command, timeout=60):
    """Run `command` with /bin/sh -c; return {"returncode", "stdout", "stderr"}.

    A non-zero returncode is returned, not raised: the run succeeds and the
    caller inspects "returncode". Output is decoded as UTF-8 (invalid bytes
    replaced) and each stream is capped at 1 MiB, with a
    "[... truncated N bytes]" marker appended when cut. If the command takes
    longer than `timeout` seconds, its whole process group is killed and
    TimeoutError is raised.
    """
    if not isinstance(command, str):
        raise TypeError("command must be a string, got %s" % type(command).__name__)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number, got %s" % type(timeout).__name__)
    if timeout <= 0:
        raise ValueError("timeout must be positive, got %r" % (timeout,))
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
    return {
        "returncode": proc.returncode,
        "stdout": _decode(stdout),
        "stderr": _decode(stderr),
    }
