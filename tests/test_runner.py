"""The agent's run launcher: each run in its own forked process group."""
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from octopus.agent import isolation, runner as runner_module
from octopus.agent.runner import Runner
from octopus.harness import alive, wait_for

pytestmark = pytest.mark.processes  # real server, agent or script processes

PLUGIN = '''
import os, sys, time


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def noisy(n):
    sys.stdout.write("x" * n)
    return n


def grandchild(pidfile):
    import subprocess
    p = subprocess.Popen(["sleep", "60"])
    with open(pidfile, "w") as f:
        f.write(str(p.pid))
    time.sleep(60)


def stubborn(readyfile):
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(readyfile, "w").close()
    time.sleep(60)


def unserialisable():
    return {1, 2}


def huge():
    return "x" * (2 << 20)


def bad_text():
    return {"name": b"caf\\xe9".decode("utf-8", "surrogateescape")}  # as os.listdir gives


def shell_stubborn(pidfile):
    import subprocess
    subprocess.run(["/bin/sh", "-c", "trap '' TERM; sleep 60 & echo $! > %s; wait" % pidfile],
                   preexec_fn=os.setpgrp)


COUNTER = []


def mutate():
    COUNTER.append(1)
    os.chdir("/")
    os.environ["OCTOPUS_TEST_LEAK"] = "1"
    return os.getpid()


def probe():
    return {"cwd": os.getcwd(), "leak": os.environ.get("OCTOPUS_TEST_LEAK"),
            "counter": len(COUNTER), "pid": os.getpid(), "env": dict(os.environ),
            "mode": os.stat(".").st_mode & 0o777, "sys_path": sys.path}


def rendezvous(folder, n):
    # Succeeds only if n runs are going at once: each waits for all the others.
    import time
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 10
    while len(os.listdir(folder)) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("alone: runs are not parallel")
        time.sleep(0.01)
    return n
'''


def make_runner(tmp_path, **kwargs):
    done = queue.Queue()
    r = Runner(str(tmp_path / "tmp"), done.put, output_limit=1000, **kwargs)
    r.start()
    plugin = tmp_path / "probe.py"
    plugin.write_text(PLUGIN)
    r.done = done
    r.plugin = str(plugin)
    return r


@pytest.fixture
def runner(tmp_path):
    r = make_runner(tmp_path)
    yield r
    r.close()


def run(runner, run_id, action, *args, timeout=20):
    runner.submit(run_id, runner.plugin, action, list(args), {})
    msg = runner.done.get(timeout=timeout)
    assert msg["id"] == run_id
    return msg


def test_result_and_output_come_back(runner):
    msg = run(runner, 1, "echo", 1, "a")
    assert msg["status"] == "success" and msg["result"] == {"args": [1, "a"], "kwargs": {}}
    assert msg["duration"] >= 0


def test_output_is_capped_and_marked(runner):
    msg = run(runner, 2, "noisy", 5000)
    assert msg["status"] == "success"
    assert msg["output"].startswith("x" * 1000)
    assert "truncated: 1000 of 5000 bytes" in msg["output"]


def test_unserialisable_result_fails_clearly(runner):
    msg = run(runner, 3, "unserialisable")
    assert msg["status"] == "failed"
    assert "not JSON-serialisable" in msg["result"]["error"]["message"]


def test_missing_plugin_file_fails_the_run_only(runner, tmp_path):
    runner.submit(4, str(tmp_path / "gone.py"), "echo", [], {})
    msg = runner.done.get(timeout=20)
    assert msg["status"] == "failed" and msg["result"]["error"]["type"] == "FileNotFoundError"
    assert run(runner, 5, "echo")["status"] == "success"


def test_kill_stops_the_whole_process_group(runner, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    runner.submit(6, runner.plugin, "grandchild", [str(pidfile)], {})
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), 20, what="grandchild"))
    runner.kill(6, grace=2)
    msg = runner.done.get(timeout=10)
    assert msg["status"] == "failed" and "SIGTERM" in msg["result"]["error"]["message"]
    wait_for(lambda: not alive(pid), 5, what="grandchild gone")


def test_kill_escalates_to_sigkill_after_the_grace(runner, tmp_path):
    ready = tmp_path / "ready"
    runner.submit(7, runner.plugin, "stubborn", [str(ready)], {})
    wait_for(ready.exists, 20, what="SIGTERM ignored")
    started = time.monotonic()
    runner.kill(7, grace=0.5)
    msg = runner.done.get(timeout=10)
    assert msg["status"] == "failed" and "SIGKILL" in msg["result"]["error"]["message"]
    assert time.monotonic() - started >= 0.5  # the grace was given


def test_runs_go_on_in_parallel(runner, tmp_path):
    folder = tmp_path / "met"
    folder.mkdir()
    for i in range(10, 20):
        runner.submit(i, runner.plugin, "rendezvous", [str(folder), 10], {})
    results = {}
    for _ in range(10):
        msg = runner.done.get(timeout=20)
        results[msg["id"]] = (msg["status"], msg["result"])
    assert results == {i: ("success", 10) for i in range(10, 20)}


def test_launcher_death_fails_its_runs_and_kills_them_and_it_comes_back(runner, tmp_path):
    ready = tmp_path / "ready"
    runner.submit(30, runner.plugin, "stubborn", [str(ready)], {})
    wait_for(ready.exists, 20, what="run started")
    run_pid = wait_for(lambda: runner._active.get(30), 5, what="run pid")
    os.kill(runner._proc.pid, signal.SIGKILL)
    msg = runner.done.get(timeout=10)
    assert msg["id"] == 30 and msg["status"] == "failed"
    wait_for(lambda: not alive(run_pid), 5, what="orphaned run killed")
    wait_for(lambda: runner._proc.poll() is None and runner._proc.pid, 10, what="new launcher")
    assert run(runner, 31, "echo")["status"] == "success"


def test_a_reused_worker_gives_each_run_a_clean_start(runner):
    pid = run(runner, 40, "mutate")["result"]
    seen = run(runner, 41, "probe")["result"]
    assert seen["pid"] == pid  # the same warm worker ran both
    assert seen["leak"] is None and seen["counter"] == 0
    assert os.path.basename(seen["cwd"]).startswith("run-%d-" % pid)  # its own, fresh


def test_a_run_gets_a_clean_environment_and_a_private_folder_removed_after(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("OCTOPUS_AGENT_TOKEN", "agent-secret")
    monkeypatch.setenv("SOME_TOKEN", "other-secret")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.chdir(tmp_path)
    r = make_runner(tmp_path)
    try:
        r.submit(80, r.plugin, "probe", [], {}, task_id="t-80")
        first = r.done.get(timeout=20)["result"]
        second = run(r, 81, "probe")["result"]
    finally:
        r.close()
    env = first["env"]
    assert not [k for k in env if k.startswith("OCTOPUS_")]
    assert "agent-secret" not in str(env) and "other-secret" not in str(env)
    assert set(env) <= {"PATH", "HOME", "LANG", "TZ", "LC_TIME", "RUN_ID", "TASK_ID", "TMPDIR"}
    assert env["RUN_ID"] == "80" and env["TASK_ID"] == "t-80" and env["LC_TIME"] == "C"
    assert env["TMPDIR"] == first["cwd"] and first["mode"] == 0o700
    assert second["cwd"] != first["cwd"] and "TASK_ID" not in second["env"]
    assert not os.path.exists(first["cwd"]) and not os.path.exists(second["cwd"])
    assert str(tmp_path) not in first["sys_path"] and "" not in first["sys_path"]


def test_one_run_per_worker_gives_every_run_a_fresh_process(tmp_path):
    r = make_runner(tmp_path, runs_per_worker=1)
    try:
        pids = [run(r, i, "probe")["result"]["pid"] for i in range(30)]
    finally:
        r.close()
    assert len(set(pids)) == 30  # and no run lost as its worker exited right after it


def test_workers_are_replaced_after_their_share_of_runs(tmp_path):
    r = make_runner(tmp_path, runs_per_worker=3)
    try:
        pids = [run(r, i, "probe")["result"]["pid"] for i in range(9)]
    finally:
        r.close()
    assert len(set(pids)) == 3 and pids[0] == pids[2] != pids[3]


def test_too_large_or_non_unicode_results_fail_or_are_mended_not_lost(runner):
    msg = run(runner, 50, "huge")
    assert msg["status"] == "failed" and msg["result"]["error"]["type"] == "ResultTooLarge"
    msg = run(runner, 51, "bad_text")
    assert msg["status"] == "success" and msg["result"] == {"name": "caf?"}


def test_a_worker_that_died_while_idle_does_not_cost_a_run(runner):
    for i in range(5):
        pid = run(runner, 60 + 2 * i, "probe")["result"]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), 5, what="idle worker dead")
        assert run(runner, 61 + 2 * i, "echo")["status"] == "success"


def test_stop_reaches_a_grandchild_in_its_own_group_that_ignores_sigterm(runner, tmp_path):
    pidfile = tmp_path / "stubborn.pid"
    runner.submit(70, runner.plugin, "shell_stubborn", [str(pidfile)], {})
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20,
                       what="grandchild"))
    runner.kill(70, grace=0.5)
    assert runner.done.get(timeout=10)["status"] == "failed"
    wait_for(lambda: not alive(pid), 10, what="grandchild killed after the grace")


def test_big_results_arrive_whole_even_with_unbuffered_stdio(tmp_path, monkeypatch):
    # Unbuffered stdout lets a signal (a worker exiting) cut a write short.
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    r = make_runner(tmp_path, runs_per_worker=2)
    r._output_limit = 200000
    try:
        for i in range(100):
            r.submit(i, r.plugin, "noisy", [100000], {})
        results = [r.done.get(timeout=60) for _ in range(100)]
    finally:
        r.close()
    assert sorted(m["id"] for m in results) == list(range(100))
    assert all(m["status"] == "success" and len(m["output"]) == 100000 for m in results)


def _within(seconds, fn, *args):
    """``fn(*args)``, failing the test if it has not returned after ``seconds``
    (on a thread: a deadlocked call must not hang the suite)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "%s still blocked after %gs" % (fn.__name__, seconds)
    return out[0]


def _keep_busy(runner, total, concurrency, args, timeout=60):
    """Submit ``total`` echo runs, ``concurrency`` at a time, as the agent does."""
    results, sent = [], 0
    deadline = time.monotonic() + timeout
    while sent < min(concurrency, total):
        runner.submit(sent, runner.plugin, "echo", args, {})
        sent += 1
    while len(results) < total:
        msg = runner.done.get(timeout=max(0.1, deadline - time.monotonic()))
        results.append(msg)
        if sent < total:
            runner.submit(sent, runner.plugin, "echo", args, {})
            sent += 1
    return results


def test_big_arguments_never_deadlock_the_launcher(tmp_path):
    # Each run's arguments come back as its result: both pipes carry ~100 KB
    # per run, in both directions at once.  A sender holding a lock across the
    # write to the launcher deadlocked here after ~25 runs.
    r = make_runner(tmp_path)
    try:
        results = _within(60, _keep_busy, r, 300, 4, ["q" * 100000])
    finally:
        _within(15, r.close)
    assert sorted(m["id"] for m in results) == list(range(300))
    assert all(m["status"] == "success" and m["result"]["args"] == ["q" * 100000]
               for m in results)


def _runs_folders():
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("octopus-runs-")}


def _run_as_nobody():
    return isolation.resolve_run_as("nobody") if os.geteuid() == 0 else None


def test_a_launcher_that_cannot_start_is_restarted_with_backoff(tmp_path, monkeypatch, caplog):
    # Once restarted at once, for ever: 62 starts (and tracebacks, and RUN_AS
    # folders) in 3 s.  Now 0.5 s, then 1 s, then 2 s... between starts.
    monkeypatch.setattr(runner_module, "_LAUNCHER", "import sys; sys.exit(3)  # %r")
    before = _runs_folders()
    caplog.set_level(logging.INFO, logger="octopus.agent")

    def starts():
        return [r.created for r in caplog.records if r.getMessage().startswith(
            "Run launcher started")]

    r = make_runner(tmp_path, run_as=_run_as_nobody())
    try:
        wait_for(lambda: len(starts()) >= 3, 20, what="two restarts")
        r.submit(1, r.plugin, "echo", [], {})
        msg = r.done.get(timeout=5)  # at once: no launcher is up to take it
    finally:
        r.close()
    first, second, third = starts()[:3]
    assert second - first >= 0.4 and third - second >= 0.9, starts()
    assert msg["status"] == "failed" and msg["result"]["error"]["type"] == "LauncherDied"
    wait_for(lambda: _runs_folders() <= before, 10, what="RUN_AS folders removed")


def test_a_launcher_that_fails_to_spawn_is_tried_again(tmp_path, monkeypatch):
    # Popen raising (EMFILE, ENOMEM) once killed the reader thread: no
    # launcher ever again, and nothing said.
    r = make_runner(tmp_path)
    real, failures = runner_module._Launcher, [2]

    def flaky(*args, **kwargs):
        if failures[0]:
            failures[0] -= 1
            raise OSError(24, "Too many open files")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "_Launcher", flaky)
    try:
        old = r._proc.pid
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: r._proc.pid != old and r._proc.poll() is None, 20,
                 what="a launcher again")
        assert failures == [0]
        assert run(r, 2, "echo")["status"] == "success"
    finally:
        r.close()


PLUGIN += '''

def leave_child():
    return os.spawnlp(os.P_NOWAIT, "sleep", "sleep", "60")  # never waited for
'''


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_a_reused_worker_reaps_what_its_runs_left(runner):
    # The sweeper kills what a run left; a child its worker never waited for
    # then stayed a zombie of that worker for good.
    first = run(runner, 90, "leave_child")
    child = first["result"]
    wait_for(lambda: _state(child) in ("Z", None), 20, what="left child stopped by the sweeper")
    second = run(runner, 91, "probe")
    assert second["result"]["pid"] == run(runner, 92, "probe")["result"]["pid"]  # same worker
    wait_for(lambda: _state(child) is None, 10, what="zombie reaped")


def test_sigterm_to_the_launcher_alone_does_not_stop_it(runner, tmp_path):
    # A group-wide SIGTERM (systemd's control-group kill, kill -TERM -pgid)
    # reaches the launcher too: the agent decides when it stops, and then its
    # runs are stopped and reported as such.
    ready = tmp_path / "ready"
    runner.submit(95, runner.plugin, "stubborn", [str(ready)], {})
    wait_for(ready.exists, 20, what="run started")
    launcher = runner._proc.pid
    os.kill(launcher, signal.SIGTERM)
    assert run(runner, 96, "echo")["status"] == "success"
    assert runner._proc.pid == launcher and runner._proc.poll() is None
    runner.close()
    msg = runner.done.get(timeout=10)
    assert msg["id"] == 95 and msg["result"]["error"]["type"] == "AgentStopped", msg


PLUGIN += '''

def nap():
    time.sleep(60)
'''

AGENT_DIES = '''
import json, os, sys, time
sys.path.insert(0, %(root)r)
from octopus.agent import isolation
from octopus.agent.runner import Runner
r = Runner(%(workdir)r, lambda msg: None, run_as=isolation.resolve_run_as("nobody"))
r.start()
r.submit(1, %(plugin)r, "nap", [], {})
deadline = time.monotonic() + 20
while not r._active.get(1) and time.monotonic() < deadline:
    time.sleep(0.02)
print(json.dumps({"launcher": r._proc.pid, "run": r._active.get(1)}), flush=True)
os._exit(0)  # as a crashed (or kill -9ed) agent: no close()
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="RUN_AS needs root")
def test_an_agent_that_dies_mid_run_leaves_no_run_as_folder(tmp_path):
    # The launcher saw its stdin end and stopped its runs, but telling the
    # dead agent so failed, and it exited before removing RUN_AS's folder.
    plugin = tmp_path / "probe.py"
    plugin.write_text(PLUGIN)
    before = _runs_folders()
    script = AGENT_DIES % {"root": str(Path(runner_module.__file__).parents[2]),
                           "workdir": str(tmp_path / "tmp"), "plugin": str(plugin)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    pids = json.loads(out.stdout)
    assert pids["run"], out.stderr
    wait_for(lambda: not alive(pids["launcher"]), 20, what="launcher gone")
    assert not alive(pids["run"])
    assert _runs_folders() <= before


def test_a_run_as_folder_that_cannot_be_given_to_its_user_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", refuse)
    with pytest.raises(PermissionError):
        isolation.runs_base(str(tmp_path / "work"), {"uid": 65534, "gid": 65534})
    assert os.listdir(tmp_path) == []
