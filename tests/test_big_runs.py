"""Runs with large arguments never hang an agent, and SIGTERM stops it mid-transfer.

An agent once held a lock while writing a run to its launcher, which needed
that lock to be read: with arguments of ~100 KB and more it stopped for good
after ~25 runs, kept heartbeating, and ignored SIGTERM (a combined server
with it)."""
import signal
import time

import pytest

from octopus.harness import wait_for


pytestmark = pytest.mark.processes  # real server, agent and launcher processes

CONCURRENCY = {"OCTOPUS_CONCURRENCY": "4"}


def _post(api, count, size):
    ids = []
    for _ in range(count):
        status, task = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo",
                                                   "args": ["q" * size]})
        assert status == 201, task
        ids.append(task["id"])
    return ids


def _statuses(api, ids, timeout):
    """Each task's final status; a task not final by ``timeout`` counts as 'stuck'."""
    deadline = time.monotonic() + timeout
    finals = {}
    for task_id in ids:
        while True:
            left = deadline - time.monotonic()
            _, task = api.call("GET", "/tasks/%s?wait=%d" % (task_id, max(0, min(10, left))))
            if task["status"] not in ("Created", "Active"):
                finals[task_id] = task["status"]
                break
            if left <= 0:
                finals[task_id] = "stuck"
                break
    return finals


def _sigterm_mid_transfer(api, proc, size):
    """Post 40 large runs, SIGTERM once 20 are done (past where the agent once
    hung; the others are going through it both ways); seconds until it exited."""
    ids = _post(api, 40, size)
    assert list(_statuses(api, ids[:20], 60).values()) == ["success"] * 20
    sent = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    proc.popen.wait(30)
    return time.monotonic() - sent


def _combined(cluster):
    server = cluster.start_server("--agent", "--name", "local", env=CONCURRENCY)
    cluster.agents["local"] = server
    cluster.wait_online("local")
    del cluster.agents["local"]
    return server


def test_sixty_runs_of_900_kb_all_succeed(cluster):
    cluster.start_server()
    cluster.start_agent("big", env=CONCURRENCY)
    api = cluster.api()
    finals = _statuses(api, _post(api, 60, 900000), 120)
    assert sorted(finals.values()) == ["success"] * 60


def test_sigterm_stops_an_agent_in_the_middle_of_large_runs(cluster):
    cluster.start_server()
    agent = cluster.start_agent("big", env=CONCURRENCY)
    assert _sigterm_mid_transfer(cluster.api(), agent, 900000) < 10
    assert agent.popen.returncode == 0


def test_a_combined_server_runs_1_mb_arguments(cluster):
    _combined(cluster)
    api = cluster.api()
    finals = _statuses(api, _post(api, 16, 1000000), 90)
    assert sorted(finals.values()) == ["success"] * 16


def test_sigterm_stops_a_combined_server_in_the_middle_of_large_runs(cluster):
    server = _combined(cluster)
    assert _sigterm_mid_transfer(cluster.api(), server, 1000000) < 10
    assert server.popen.returncode == 0


def test_sigterm_stops_an_agent_whose_server_hangs_within_its_own_bound(cluster):
    # Agent.stop was bounded only by cli.py giving up after 8 s: a report from
    # the thread reading the launcher (5 s), then another (5 s), and the
    # goodbye came last, so it was the step cut off.  One deadline now, with
    # time kept for the goodbye.
    server = cluster.start_server()
    agent = cluster.start_agent("hung", env=CONCURRENCY)
    api = cluster.api()
    status, task = api.call("POST", "/tasks", {"plugin": "shell", "action": "run",
                                               "args": ["sleep 60"]})
    assert status == 201, task
    log_file = cluster.root / "agent-hung" / "logs" / "client.log"
    wait_for(lambda: "Task assignment received: task %s" % task["id"] in log_file.read_text(),
             30, what="run started")
    server.popen.send_signal(signal.SIGSTOP)  # it takes connections, and never answers
    try:
        sent = time.monotonic()
        agent.popen.send_signal(signal.SIGTERM)
        agent.popen.wait(30)
        took = time.monotonic() - sent
    finally:
        server.popen.send_signal(signal.SIGCONT)
    log = log_file.read_text() + agent.log()
    assert "did not stop within" not in log and "Agent hung stopped" in log, log[-3000:]
    assert "Saying goodbye failed" in log  # tried, in the time kept for it
    assert took < 8.5 and agent.popen.returncode == 0
