"""End to end: a real server process and real agent processes on 127.0.0.1."""
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from octopus.harness import REPO_ROOT, Api, Process, alive, free_port, wait_for

pytestmark = pytest.mark.processes  # real server, agent or script processes


@pytest.fixture
def three(cluster):
    cluster.start_server()
    for name in ("a1", "a2", "a3"):
        cluster.start_agent(name)
    return cluster


def test_anyone_specific_and_all_tasks_complete_with_their_executions(three):
    api = three.api()
    anyone = three.run_task(api, {"plugin": "echo", "action": "echo", "args": [1, "x"],
                                  "kwargs": {"k": [True, None]}})
    assert anyone["status"] == "success"
    assert anyone["result"] == {"args": [1, "x"], "kwargs": {"k": [True, None]}}
    assert anyone["executor"] in ("a1", "a2", "a3")
    [run] = anyone["executions"]
    assert run["client"] == anyone["executor"] and run["status"] == "success"

    specific = three.run_task(api, {"plugin": "echo", "action": "echo", "args": [2], "owner": "a2"})
    assert specific["status"] == "success" and specific["executor"] == "a2"
    assert [e["client"] for e in specific["executions"]] == ["a2"]

    everyone = three.run_task(api, {"plugin": "system", "action": "info", "owner": "ALL"})
    assert everyone["status"] == "Done"
    assert everyone["result"]["total"] == 3 and everyone["result"]["success"] == 3
    assert sorted(e["client"] for e in everyone["executions"]) == ["a1", "a2", "a3"]
    assert all(e["status"] == "success" for e in everyone["executions"])
    status, listed = api.call("GET", "/executions?task_id=" + everyone["id"])
    assert status == 200 and len(listed["executions"]) == 3


def test_anyone_goes_to_the_least_busy_agent(three):
    api = three.api()
    # a1 is busy; a2 and a3 then finish quick runs, so they ask for work
    # after a1 did: first come, first served would pick a1.
    _, busy = api.call("POST", "/tasks", {"plugin": "sleep", "action": "sleep", "args": [3],
                                          "owner": "a1"})
    wait_for(lambda: api.call("GET", "/tasks/" + busy["id"])[1]["status"] == "Active", 10,
             what="a1 busy")
    for name in ("a2", "a3"):
        assert three.run_task(api, {"plugin": "echo", "action": "echo", "owner": name})
    executors = {three.run_task(api, {"plugin": "echo", "action": "echo"})["executor"]
                 for _ in range(4)}
    assert executors <= {"a2", "a3"}
    assert api.call("GET", "/tasks/%s?wait=10" % busy["id"])[1]["status"] == "success"


def test_tasks_posted_together_start_together_on_idle_agents(cluster, tmp_path):
    cluster.start_server()
    for name in ("b1", "b2", "b3"):
        cluster.start_agent(name, env={"OCTOPUS_CONCURRENCY": "1"})
    api = cluster.api()
    # Each run waits until all three are going, for at most 10 s (under the
    # 25 s long-poll): one handed out a long-poll late, or after another, fails.
    ids = [api.call("POST", "/tasks", _rendezvous(tmp_path / "met", 3, 10))[1]["id"]
           for _ in range(3)]
    finals = [_final_within(api, i, 20) for i in ids]
    assert [t["status"] for t in finals] == ["success"] * 3, finals
    assert sorted(t["executor"] for t in finals) == ["b1", "b2", "b3"]


def _rendezvous(folder, n, seconds):
    """A shell task that succeeds only if ``n`` such runs go at once."""
    folder.mkdir(exist_ok=True)
    script = ("touch %s/$$; i=0; while [ $(ls %s | wc -l) -lt %d ]; do "
              "i=$((i+1)); [ $i -gt %d ] && exit 1; sleep 0.05; done"
              % (folder, folder, n, seconds * 20))
    return {"plugin": "shell", "action": "run", "args": [script]}


def test_failures_are_recorded_and_a_crashing_plugin_does_not_take_the_agent_down(cluster, tmp_path):
    plugins = tmp_path / "plugins"
    shutil.copytree(REPO_ROOT / "plugins", plugins)
    (plugins / "crashy.py").write_text(
        '"""Misbehaving actions."""\nimport os\n\n\ndef die():\n    os._exit(7)\n\n\n'
        'def hang_up():\n    import signal\n    os.kill(os.getpid(), signal.SIGKILL)\n\n\n'
        'def talk():\n    print("to stdout")\n    import sys\n    print("to stderr", file=sys.stderr)\n'
        '    return "said"\n\n\ndef big():\n    return "x" * (3 << 20)\n\n\n'
        'def noisy():\n    print("y" * (3 << 20))\n    return "x" * 900000\n')
    cluster.start_server(env={"OCTOPUS_PLUGINS_DIR": str(plugins)})
    cluster.start_agent("solo")
    api = cluster.api()

    failed = cluster.run_task(api, {"plugin": "echo", "action": "fail", "args": ["boom"]})
    assert failed["status"] == "failed"
    error = failed["result"]["error"]
    assert error["type"] == "RuntimeError" and error["message"] == "boom"
    assert "Traceback" in error["traceback"]

    died = cluster.run_task(api, {"plugin": "crashy", "action": "die"})
    assert died["status"] == "failed" and "code 7" in died["result"]["error"]["message"]
    killed = cluster.run_task(api, {"plugin": "crashy", "action": "hang_up"})
    assert killed["status"] == "failed" and "SIGKILL" in killed["result"]["error"]["message"]

    big = cluster.run_task(api, {"plugin": "crashy", "action": "big"})
    assert big["status"] == "failed" and big["result"]["error"]["type"] == "ResultTooLarge"
    noisy = cluster.run_task(api, {"plugin": "crashy", "action": "noisy"})
    assert noisy["status"] == "success" and len(noisy["result"]) == 900000
    _, run = api.call("GET", "/executions/%d" % noisy["executions"][0]["id"])
    assert "output truncated" in run["output"] and len(run["output"]) < (1 << 20) + 200

    talked = cluster.run_task(api, {"plugin": "crashy", "action": "talk"})
    assert talked["status"] == "success" and talked["result"] == "said"
    _, run = api.call("GET", "/executions/%d" % talked["executions"][0]["id"])
    assert "to stdout" in run["output"] and "to stderr" in run["output"]
    assert cluster.agents["solo"].alive()


def test_changed_plugin_is_resynced_to_agents_without_restart(cluster, tmp_path):
    plugins = tmp_path / "plugins"
    shutil.copytree(REPO_ROOT / "plugins", plugins)
    cluster.start_server(env={"OCTOPUS_PLUGINS_DIR": str(plugins)})
    cluster.start_agent("sync")
    api = cluster.api()
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo"})["status"] == "success"
    with open(plugins / "echo.py", "a") as f:
        f.write('\n\ndef shout(word):\n    """Upper-case a word."""\n    return word.upper()\n')

    def has_shout():
        _, body = api.call("GET", "/plugins")
        return any("shout" in p["actions"] for p in body["plugins"])

    wait_for(has_shout, 10, what="server to see the new action")
    task = cluster.run_task(api, {"plugin": "echo", "action": "shout", "args": ["hi"]})
    assert task["status"] == "success" and task["result"] == "HI"
    cached = cluster.root / "agent-sync" / "agent" / "plugins" / "echo.py"
    assert "def shout" in cached.read_text()


def test_logs_use_the_guides_phrases(three):
    api = three.api()
    three.run_task(api, {"plugin": "echo", "action": "echo"})
    server_log = (three.root / "server" / "logs" / "server.log").read_text()
    client_log = (three.root / "agent-a1" / "logs" / "client.log").read_text()
    for phrase in ("Heartbeat received", "Task assignment", "Adding execution result"):
        assert phrase in server_log
    assert "Plugin echo loaded" in client_log
    assert "test-admin-token" not in server_log and "test-agent-token" not in client_log


def _plain_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPUS_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def test_server_with_local_agent_generates_tokens_and_runs_tasks(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    proc = Process([sys.executable, "-m", "octopus", "--server", "--agent", "--host", "127.0.0.1",
                    "--port", str(port), "--data-dir", str(data), "--name", "local"],
                   tmp_path / "both.out", _plain_env())
    try:
        wait_for(lambda: (data / "admin.token").exists() and (data / "agent.token").exists(),
                 20, what="generated tokens")
        for name in ("admin.token", "agent.token"):
            assert stat.S_IMODE(os.stat(data / name).st_mode) == 0o600
        token = (data / "admin.token").read_text().strip()
        api = Api(port, token)
        wait_for(lambda: _online(api, "local"), 20, what="local agent online")
        status, task = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo", "args": [7]})
        assert status == 201
        _, task = api.call("GET", "/tasks/%s?wait=20" % task["id"])
        assert task["status"] == "success" and task["executor"] == "local"
        assert token not in proc.log()
        assert str(data / "admin.token") in proc.log()
        api.close()
    finally:
        assert proc.stop() == 0


def _online(api, name):
    try:
        status, body = api.call("GET", "/agents")
    except OSError:
        api.close()
        return False
    return status == 200 and any(a["name"] == name and a["status"] == "online"
                                 for a in body["agents"])


def test_agent_waits_for_a_server_that_starts_later(cluster):
    cluster.port = free_port()
    cluster.start_agent("early", wait=False)
    log = cluster.root / "agent-early" / "logs" / "client.log"
    wait_for(lambda: log.exists() and "Heartbeat failed" in log.read_text(), 20,
             what="the agent retrying while no server is up")
    cluster.start_server()
    cluster.wait_online("early")
    api = cluster.api()
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo"})["executor"] == "early"


@pytest.mark.parametrize("args, setting", [
    (["--server", "--port", "99999"], "SERVER_PORT"),
    (["--agent", "--server-url", "ftp://x"], "SERVER_URL"),
])
def test_bad_settings_stop_start_up_with_one_line(tmp_path, args, setting):
    result = subprocess.run([sys.executable, "-m", "octopus", "--data-dir", str(tmp_path)] + args,
                            env=_plain_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0] and "Traceback" not in result.stderr


def test_stopping_an_agent_stops_its_runs_and_reports_them(cluster, tmp_path):
    cluster.start_server()
    agent = cluster.start_agent("quitter")
    api = cluster.api()
    started = tmp_path / "started"
    _, task = api.call("POST", "/tasks", {"plugin": "shell", "action": "run",
                                          "args": ["touch %s; sleep 60" % started]})
    wait_for(started.exists, 10, what="run started")
    assert agent.stop() == 0
    done = api.call("GET", "/tasks/%s?wait=10" % task["id"])[1]
    assert done["status"] == "failed"
    assert done["result"]["error"]["type"] == "AgentStopped"


def test_an_agent_killed_mid_run_has_its_run_lost_and_tried_again_on_another(cluster, tmp_path):
    cluster.start_server(env={"OCTOPUS_CLIENT_TIMEOUT": "2",
                              "OCTOPUS_HEARTBEAT_CLEANUP_INTERVAL": "1"})
    agents = {name: cluster.start_agent(name, env={"OCTOPUS_HEARTBEAT_INTERVAL": "1",
                                                   "OCTOPUS_CONCURRENCY": "1"})
              for name in ("doomed-1", "doomed-2")}
    api = cluster.api()
    started = tmp_path / "started"
    _, task = api.call("POST", "/tasks", {"plugin": "shell", "action": "run", "args": [
        "if [ -e {0} ]; then echo second try; else touch {0}; sleep 60; fi".format(started)]})
    wait_for(started.exists, 10, what="run started")
    first = api.call("GET", "/tasks/" + task["id"])[1]["executor"]
    agents[first].kill9()
    done = wait_for(lambda: _final(api, task["id"]), 30, what="task done on the other agent")
    assert done["status"] == "success" and done["result"]["stdout"] == "second try\n"
    assert [(e["status"], e["attempt"], e["client"]) for e in done["executions"]] == [
        ("lost", 1, first), ("success", 2, ({"doomed-1", "doomed-2"} - {first}).pop())]


def _final(api, task_id):
    _, task = api.call("GET", "/tasks/%s?wait=5" % task_id)
    return task if task["status"] not in ("Created", "Active") else None


def test_an_agent_restarted_under_the_same_name_gets_the_next_task(cluster):
    cluster.start_server()
    cluster.start_agent("phoenix").stop()
    cluster.start_agent("phoenix")
    api = cluster.api()
    for _ in range(3):
        task = cluster.run_task(api, {"plugin": "echo", "action": "echo"}, timeout=10)
        assert task["status"] == "success" and task["executor"] == "phoenix"


def test_a_burst_of_concurrent_posts_is_spread_over_the_agents(cluster):
    import threading
    cluster.start_server()
    for name in ("c0", "c1", "c2"):
        cluster.start_agent(name, env={"OCTOPUS_CONCURRENCY": "1"})
    ids = []

    def post():
        api = cluster.api()
        status, task = api.call("POST", "/tasks", {"plugin": "sleep", "action": "sleep",
                                                   "args": [0.5]})
        assert status == 201
        ids.append(task["id"])
        api.close()

    posters = [threading.Thread(target=post) for _ in range(12)]
    for t in posters:
        t.start()
    for t in posters:
        t.join(30)
    api = cluster.api()
    # About 2 s of work per agent: a stalled long-poll (25 s) misses the deadline.
    finals = wait_for(lambda: _all_final(api, ids), 15, what="all 12 final, none stalled")
    assert all(t["status"] == "success" for t in finals)
    counts = sorted(sum(1 for t in finals if t["executor"] == n) for n in ("c0", "c1", "c2"))
    assert counts == [4, 4, 4]


def _all_final(api, ids):
    tasks = [api.call("GET", "/tasks/" + i)[1] for i in ids]
    return tasks if all(t["status"] not in ("Created", "Active") for t in tasks) else None


def _final_now(api, task_id):
    _, task = api.call("GET", "/tasks/" + task_id)
    return task if task["status"] not in ("Created", "Active") else None


def _final_within(api, task_id, timeout):
    return wait_for(lambda: _final(api, task_id), timeout, what="task %s final" % task_id)


def test_a_run_past_its_timeout_is_stopped_with_everything_it_started(cluster, tmp_path):
    cluster.start_server()
    cluster.start_agent("strict")
    api = cluster.api()
    pidfile = tmp_path / "child.pid"
    # Final well before the 60 s the run would take if it were not stopped.
    task = cluster.run_task(api, {"plugin": "shell", "action": "run", "timeout": 1,
                                  "args": ["sleep 60 & echo $! > %s; wait" % pidfile]},
                            timeout=20)
    assert task["status"] == "failed" and task["result"]["error"]["type"] == "Timeout"
    assert [e["status"] for e in task["executions"]] == ["timeout"]
    pid = int(pidfile.read_text())
    wait_for(lambda: not alive(pid), 10, what="child gone")
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo"})["status"] == "success"


def _shell_with_child(pidfile):
    return {"plugin": "shell", "action": "run",
            "args": ["sleep 60 & echo $! > %s; wait" % pidfile]}


def test_cancel_stops_a_run_and_all_it_started_within_a_second(cluster, tmp_path):
    cluster.start_server()
    cluster.start_agent("busy", env={"OCTOPUS_CONCURRENCY": "1"})  # full while it runs
    api = cluster.api()
    pidfile = tmp_path / "child.pid"
    _, task = api.call("POST", "/tasks", _shell_with_child(pidfile))
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
                       what="run started"))
    status, body = api.call("POST", "/tasks/%s/cancel" % task["id"])
    assert status == 200
    # The agent hears of it on its held ask and stops the run at once; the
    # deadline leaves room for a loaded machine, not for a poll interval.
    done = wait_for(lambda: _final_now(api, task["id"]), 3, interval=0.05, what="cancelled")
    assert done["status"] == "cancelled"
    assert [e["status"] for e in done["executions"]] == ["cancelled"]
    wait_for(lambda: not alive(pid), 5, what="child gone")
    assert api.call("POST", "/tasks/%s/cancel" % task["id"])[0] == 409
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo"})["status"] == "success"


def test_cancel_of_a_task_not_started_and_of_no_task(cluster):
    cluster.start_server()
    api = cluster.api()
    _, task = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo", "owner": "nobody"})
    status, body = api.call("POST", "/tasks/%s/cancel" % task["id"])
    assert status == 200 and body["status"] == "cancelled"
    assert api.call("POST", "/tasks/nope/cancel")[0] == 404


def test_deleting_a_running_task_stops_its_run(cluster, tmp_path):
    cluster.start_server()
    cluster.start_agent("deleter", env={"OCTOPUS_CONCURRENCY": "1"})
    api = cluster.api()
    pidfile = tmp_path / "child.pid"
    _, task = api.call("POST", "/tasks", _shell_with_child(pidfile))
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
                       what="run started"))
    assert api.call("DELETE", "/tasks/" + task["id"])[0] == 204
    wait_for(lambda: not alive(pid), 5, what="child gone")
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo"}, timeout=10)["status"] \
        == "success"


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_cancel_for_a_run_the_agent_no_longer_has_does_not_spin(cluster, tmp_path):
    cluster.start_server()
    first = cluster.start_agent("again", env={"OCTOPUS_CONCURRENCY": "1"})
    api = cluster.api()
    pidfile = tmp_path / "child.pid"
    _, task = api.call("POST", "/tasks", _shell_with_child(pidfile))
    wait_for(pidfile.exists, 10, what="run started")
    first.kill9()
    cluster.start_agent("again", env={"OCTOPUS_CONCURRENCY": "1"})
    assert api.call("POST", "/tasks/%s/cancel" % task["id"])[0] == 200
    # The run is settled at once (the new process does not have it), not
    # after the minute a run handed out may take to reach its agent ...
    done = wait_for(lambda: _final(api, task["id"]), 15, what="the run settled")
    assert done["status"] == "cancelled", done
    assert [e["status"] for e in done["executions"]][-1] == "cancelled", done["executions"]
    assert all(e["status"] in ("lost", "cancelled") for e in done["executions"])
    # ... and nobody keeps sending the stop order round: the server is idle.
    before = _cpu_seconds(cluster.server.pid)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # a fixed window: what is measured is CPU spent in it
        time.sleep(0.1)
    assert _cpu_seconds(cluster.server.pid) - before < 0.5


def test_an_interval_task_recurs_on_agents_until_cancelled(cluster, tmp_path):
    cluster.start_server()
    cluster.start_agent("tick")
    api = cluster.api()
    marks = tmp_path / "marks"
    _, task = api.call("POST", "/tasks", {"plugin": "shell", "action": "run", "type": "Interval",
                                          "interval": 1, "args": ["echo x >> %s" % marks]})
    assert task["status"] in ("Created", "Active") and task["next_run_at"]

    def successes():
        runs = api.call("GET", "/tasks/" + task["id"])[1]["executions"]
        return [r for r in runs if r["status"] == "success"]

    done = wait_for(lambda: len(successes()) >= 3 and successes(), 15, what="three runs")
    slots = [r["due_at"] for r in done[:3]]
    assert len(set(slots)) == 3 and all(r["attempt"] == 1 for r in done)
    status, cancelled = api.call("POST", "/tasks/%s/cancel" % task["id"])
    assert status == 200 and cancelled["next_run_at"] is None
    final = wait_for(lambda: _final(api, task["id"]), 10, what="cancelled")
    assert final["status"] == "cancelled"
    count = len(final["executions"])
    later = api.call("GET", "/tasks/%s?wait=2" % task["id"])[1]  # it stays stopped
    assert len(later["executions"]) == count


def test_a_failing_run_is_retried_after_its_delay(cluster, tmp_path):
    cluster.start_server()
    cluster.start_agent("retry")
    api = cluster.api()
    flag = tmp_path / "flag"
    task = cluster.run_task(api, {
        "plugin": "shell", "action": "run", "max_retries": 2, "retry_delay": 0.5,
        "kwargs": {"timeout": 0.5},  # the first try outlives it and fails
        "args": ["if [ -e {0} ]; then echo ok; else touch {0}; sleep 5; fi".format(flag)]})
    assert task["status"] == "success"
    first, second = task["executions"]
    assert (first["attempt"], first["status"], second["attempt"], second["status"]) == (
        1, "failed", 2, "success")
    from octopus.timeutil import parse_iso
    assert parse_iso(second["started_at"]) - parse_iso(first["finished_at"]) >= 0.45


def test_an_uploaded_plugin_runs_on_agents_without_restarts(cluster):
    cluster.start_server()
    cluster.start_agent("up")
    api = cluster.api()
    source = b'def shout(text):\n    """Upper-case it."""\n    return text.upper()\n'
    status, plugin = api.call("PUT", "/plugins/loud", raw_body=source,
                              headers={"Content-Type": "text/x-python"})
    assert status == 201 and plugin["actions"] == ["shout"]
    assert (cluster.root / "server" / "plugins" / "loud.py").read_bytes() == source
    task = cluster.run_task(api, {"plugin": "loud", "action": "shout", "args": ["hi"]})
    assert task["status"] == "success" and task["result"] == "HI"


def test_a_one_slot_agent_takes_a_burst_of_tasks_without_stalling(cluster):
    # A full agent's ask could register just after the wake for its finished
    # run went by; it then slept through the long-poll with work waiting.
    cluster.start_server()
    cluster.start_agent("one", env={"OCTOPUS_CONCURRENCY": "1"})
    api = cluster.api()
    status, reply = api.call("POST", "/tasks", [{"plugin": "echo", "action": "echo", "args": [i]}
                                                for i in range(150)])
    assert status == 201
    ids = [t["id"] for t in reply["tasks"]]

    def all_done():
        _, page = api.call("GET", "/tasks?status=success&limit=1")
        return page["total"] == len(ids)

    wait_for(all_done, 20, interval=0.1, what="150 tasks done by a one-slot agent")
