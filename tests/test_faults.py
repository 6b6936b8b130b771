"""Faults with real processes: the server killed or stopped mid-work, agents
restarted while it is down.  Nothing acknowledged may be lost or run twice."""
import threading

from octopus.harness import wait_for

FINAL = ("success", "failed", "cancelled", "Done")
FAST = {"OCTOPUS_HEARTBEAT_INTERVAL": "1"}
SERVER = {"OCTOPUS_LONG_POLL_TIMEOUT": "2", "OCTOPUS_CLIENT_TIMEOUT": "4",
          "OCTOPUS_HEARTBEAT_CLEANUP_INTERVAL": "1"}


def _all_final(api, ids):
    pending = []
    for task_id in ids:
        status, task = api.call("GET", "/tasks/" + task_id)
        if status != 200 or task["status"] not in FINAL:
            pending.append(task_id)
    return not pending


def _post(cluster, body, count, acked, stop):
    """Post ``count`` tasks one by one; keep the ids the server acknowledged with 201."""
    api = cluster.api()
    for _ in range(count):
        if stop.is_set():
            return
        try:
            status, task = api.call("POST", "/tasks", body)
        except OSError:  # the server is down: that task was never acknowledged
            api.close()
            stop.wait(0.05)
            continue
        if status == 201:
            acked.append(task["id"])


def test_server_killed_with_200_tasks_in_flight_loses_none_and_runs_none_twice(cluster):
    cluster.start_server(env=SERVER)
    for name in ("f1", "f2"):
        cluster.start_agent(name, env=dict(FAST, OCTOPUS_CONCURRENCY="4"))
    body = {"plugin": "sleep", "action": "sleep", "args": [0.05]}
    acked, stop = [], threading.Event()
    poster = threading.Thread(target=_post, args=(cluster, body, 200, acked, stop))
    poster.start()
    try:
        wait_for(lambda: len(acked) >= 80, 60, what="80 tasks acknowledged")
        cluster.server.kill9()
        cluster.start_server(env=SERVER)  # same port and data dir
        poster.join(120)
    finally:
        stop.set()
    assert not poster.is_alive()
    api = cluster.api()
    wait_for(lambda: _all_final(api, acked), 90, interval=0.5, what="every acknowledged task final")
    assert len(acked) >= 150  # most posts landed; the few during the restart were refused
    for task_id in acked:
        task = api.call("GET", "/tasks/" + task_id)[1]
        successes = [e for e in task["executions"] if e["status"] == "success"]
        assert task["status"] == "success" and len(successes) == 1, task


def test_results_finished_while_the_server_is_down_survive_an_agent_restart(cluster, tmp_path):
    cluster.start_server(env=SERVER)
    agent = cluster.start_agent("keeper", env=dict(FAST, OCTOPUS_CONCURRENCY="4"))
    api = cluster.api()
    gate = tmp_path / "gate"
    ids = []
    for n in range(4):  # each run waits for the gate, so all finish while the server is down
        status, task = api.call("POST", "/tasks", {"plugin": "shell", "action": "run", "args": [
            "while [ ! -e %s ]; do sleep 0.05; done; echo result-%d" % (gate, n)]})
        assert status == 201
        ids.append(task["id"])
    wait_for(lambda: all(api.call("GET", "/tasks/" + i)[1]["status"] == "Active" for i in ids),
             20, what="all four running")
    api.close()
    cluster.server.stop()
    gate.touch()
    outbox = cluster.root / "agent-keeper" / "agent" / "outbox"
    wait_for(lambda: len(list(outbox.glob("*.json"))) == 4, 20, what="four results in the outbox")
    assert agent.stop() == 0  # the agent restarts while the server is still down
    assert len(list(outbox.glob("*.json"))) == 4
    agent = cluster.start_agent("keeper", env=dict(FAST, OCTOPUS_CONCURRENCY="4"), wait=False)
    cluster.start_server(env=SERVER)
    api = cluster.api()
    wait_for(lambda: _all_final(api, ids), 30, interval=0.2, what="results recorded")
    for n, task_id in enumerate(ids):
        task = api.call("GET", "/tasks/" + task_id)[1]
        assert task["status"] == "success" and task["result"]["stdout"] == "result-%d\n" % n
        assert [e["status"] for e in task["executions"]] == ["success"]
    wait_for(lambda: not list(outbox.glob("*.json")), 10, what="outbox emptied")
    log = (cluster.root / "agent-keeper" / "logs" / "client.log").read_text()
    assert "Outbox: 4 result(s) from before the restart to report" in log
