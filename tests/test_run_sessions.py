"""What a finished run leaves running in its worker's session is stopped, unless kept."""
import os
import queue
import signal
import subprocess
import time

import pytest

from octopus.agent.runner import Runner
from octopus.agent.sessions import Sweeper
from octopus.harness import alive, wait_for

pytestmark = pytest.mark.processes  # real launcher, worker, server or agent processes

PLUGIN = '''
import os, subprocess


def leave_behind():
    # A child never waited for, in a process group of its own (as a shell's job is).
    p = subprocess.Popen(["sleep", "300"], preexec_fn=os.setpgrp)
    return {"child": p.pid, "worker": os.getpid()}


def me():
    return os.getpid()


def orphan():
    # A shell's background job: its shell ends at once, the launcher adopts it.
    out = subprocess.run(["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                         stdout=subprocess.PIPE, check=True).stdout
    return int(out)
'''


@pytest.fixture
def runner(tmp_path):
    done = queue.Queue()
    r = Runner(str(tmp_path / "tmp"), done.put, output_limit=1000)
    r.start()
    (tmp_path / "leaver.py").write_text(PLUGIN)
    r.plugin = str(tmp_path / "leaver.py")
    r.done = done
    yield r
    r.close()


def run(runner, run_id, action, **kwargs):
    runner.submit(run_id, runner.plugin, action, [], {}, **kwargs)
    msg = runner.done.get(timeout=30)
    assert msg["id"] == run_id and msg["status"] == "success", msg
    return msg["result"]


def test_what_a_run_left_running_is_stopped_when_it_ends_and_the_worker_goes_on(runner):
    first = run(runner, 1, "leave_behind")
    wait_for(lambda: not alive(first["child"]), 10, what="the child left behind stopped")
    assert run(runner, 2, "me") == first["worker"]  # the worker itself was spared, and reused


def test_an_orphan_a_run_left_is_stopped_too(runner):
    pid = run(runner, 1, "orphan")
    wait_for(lambda: not alive(pid), 10, what="the orphaned background job stopped")


def test_a_run_that_keeps_its_processes_leaves_them_running(runner):
    kept = run(runner, 1, "leave_behind", keep_processes=True)
    try:
        # Another run ends meanwhile (on a new worker: the kept one's is retired).
        assert run(runner, 2, "me") != kept["worker"]
        # What a later run leaves is still stopped; the kept one is not.
        orphan = run(runner, 3, "orphan")
        wait_for(lambda: not alive(orphan), 10, what="the later run's job stopped")
        assert alive(kept["child"])
    finally:
        os.kill(kept["child"], signal.SIGKILL)


def _session_with_a_child_that_ignores_sigterm():
    """A session like a worker's: ``(leader, pid of a child ignoring SIGTERM)``."""
    leader = subprocess.Popen(
        ["/bin/sh", "-c", "(trap '' TERM; exec sleep 300) & echo $!; exec sleep 300"],
        stdout=subprocess.PIPE, start_new_session=True)
    try:
        child = int(leader.stdout.readline())
        wait_for(lambda: _cmdline(child).startswith(b"sleep"), 10, what="TERM ignored")
    except BaseException:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
        raise
    return leader, child


def test_what_ignores_sigterm_is_killed_after_the_grace_and_the_spared_one_lives():
    # A session like a worker's: its leader is spared, its child ignores SIGTERM.
    leader, child = _session_with_a_child_that_ignores_sigterm()
    try:
        now = [time.monotonic()]
        sweeper = Sweeper(grace=5.0, clock=lambda: now[0])
        sweeper.sweep(leader.pid, spare=leader.pid)
        assert sweeper.next_deadline() == now[0] + 5.0
        sweeper.finish(now[0] + 4.9)  # within the grace: SIGTERM only, which it ignores
        assert alive(child)
        sweeper.finish(now[0] + 5.0)
        wait_for(lambda: not alive(child), 10, what="SIGKILL after the grace")
        assert leader.poll() is None and sweeper.next_deadline() is None
    finally:
        leader.kill()
        leader.wait()


def test_a_stopped_session_is_killed_whole_after_its_grace():
    # A cancelled or timed-out run: its worker (the leader) goes too, and a
    # child that ignores SIGTERM is killed once the grace is over.
    leader, child = _session_with_a_child_that_ignores_sigterm()
    try:
        now = [time.monotonic()]
        sweeper = Sweeper(grace=5.0, clock=lambda: now[0])
        sweeper.stop_session(leader.pid, 2.0)
        assert sweeper.stopping() == [leader.pid] and sweeper.next_deadline() == now[0] + 2.0
        leader.wait(10)  # SIGTERM ended the leader at once
        sweeper.finish(now[0] + 1.9)
        assert alive(child)
        sweeper.finish(now[0] + 2.0)
        wait_for(lambda: not alive(child), 10, what="SIGKILL after the grace")
        assert sweeper.stopping() == [] and sweeper.next_deadline() is None
    finally:
        leader.kill()
        leader.wait()


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""
