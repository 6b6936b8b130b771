"""The fleet: which agents take work, GET /agents paged and filtered, goodbyes,
and how soon a silent agent's runs are lost (in-process, then real processes)."""
import time

import pytest

from octopus.harness import AGENT_TOKEN, wait_for
from octopus.timeutil import parse_iso
from test_api import assert_error, create, get_task, heartbeat, report, taking_work, unchanged, work


def agents(api, query=""):
    r = api.call("GET", "/agents" + query)
    assert r.status_code == 200, r.text
    return r.json


# -- who takes work --------------------------------------------------------------

def test_a_client_that_only_heartbeats_is_online_but_gets_no_all_run(api):
    """Once a bug: the guide's sample heartbeat (curl ... -d '{"client": "test"}') made
    "test" a target of every ALL task, which then waited for it until it was lost."""
    taking_work(api, "real")
    heartbeat(api, "test")
    listed = {a["name"]: a for a in agents(api)["agents"]}
    assert (listed["test"]["status"], listed["test"]["takes_work"]) == ("online", False)
    assert (listed["real"]["status"], listed["real"]["takes_work"]) == ("online", True)
    task = create(api, owner="ALL")
    [run] = work(api, "real")
    report(api, "real", run["id"])
    done = get_task(api, task["id"])
    assert done["status"] == "Done" and set(done["result"]["agents"]) == {"real"}


def test_an_agent_back_online_takes_work_again_only_once_it_asks(api, clock):
    taking_work(api, "a")
    clock.advance(31)  # silent past CLIENT_TIMEOUT
    heartbeat(api, "a")
    assert agents(api)["agents"][0]["takes_work"] is False
    task = create(api, owner="ALL")
    assert get_task(api, task["id"])["status"] == "Created"
    [run] = work(api, "a")  # its first ask fans the waiting ALL task out to it
    assert run["task_id"] == task["id"] and agents(api)["agents"][0]["takes_work"] is True


# -- goodbye ---------------------------------------------------------------------

def test_an_agent_saying_goodbye_is_offline_at_once_and_its_runs_are_tried_elsewhere(api):
    """Once a bug: a stopped agent stayed online for CLIENT_TIMEOUT, was given an ALL
    run, and that run waited to be lost."""
    assert api.heartbeat("leaving", instance="p1").status_code == 200
    work(api, "leaving", capacity=0)
    taking_work(api, "staying")
    anyone = create(api)
    [run] = work(api, "leaving")
    assert run["task_id"] == anyone["id"]
    r = api.heartbeat("leaving", instance="p1", stopping=True)
    assert r.status_code == 200
    listed = {a["name"]: a for a in agents(api)["agents"]}
    assert listed["leaving"]["status"] == "offline" and listed["leaving"]["stopped_at"]
    assert api.call("GET", "/health").json["agents_online"] == 1
    [retry] = work(api, "staying")  # lost with its agent, and tried again at once
    assert retry["task_id"] == anyone["id"] and retry["attempt"] == 2
    everyone = create(api, owner="ALL")
    assert work(api, "leaving") == []  # its late ask takes nothing
    [share] = work(api, "staying")
    report(api, "staying", share["id"])
    assert set(get_task(api, everyone["id"])["result"]["agents"]) == {"staying"}
    # A heartbeat its stopping process sent before the goodbye changes nothing.
    assert api.heartbeat("leaving", instance="p1").status_code == 200
    assert {a["name"]: a["status"] for a in agents(api)["agents"]}["leaving"] == "offline"
    # Started again (a new process): online, and it takes work once it asks.
    assert api.heartbeat("leaving", instance="p2").status_code == 200
    assert {a["name"]: a["status"] for a in agents(api)["agents"]}["leaving"] == "online"


def test_a_goodbye_from_a_former_process_leaves_the_new_one_online(api):
    assert api.heartbeat("a", instance="old").status_code == 200
    assert api.heartbeat("a", instance="new").status_code == 200
    assert api.heartbeat("a", instance="old", stopping=True).status_code == 200
    assert agents(api)["agents"][0]["status"] == "online"


def test_a_goodbye_from_an_unknown_agent_changes_nothing(api, caplog):
    caplog.set_level("INFO", logger="octopus.server")
    assert api.heartbeat("ghost", stopping=True).status_code == 200
    assert agents(api)["total"] == 0
    assert "an agent this server does not know" in caplog.text
    assert "is stopping: offline" not in caplog.text


def test_the_heartbeat_reply_says_how_often_the_server_needs_one(tmp_path, store):
    from tests.conftest import AppClient

    for timeout, interval in ((30, 10), (3, 1), (1, 0.333)):
        api = AppClient(tmp_path, store, CLIENT_TIMEOUT=timeout)
        assert api.heartbeat("a").json["heartbeat_interval"] == interval


def test_an_agent_beats_at_the_smaller_of_its_interval_and_the_servers():
    from octopus.agent.pace import Pace

    pace = Pace(heartbeat_interval=10, task_check_interval=5)
    pace.server_asks(1.0)  # a server at CLIENT_TIMEOUT 3
    pace.beat_taken(0.0)
    assert pace.interval == 1.0 and pace.beat_due(0.0) == 1.0
    pace.server_asks(20.0)  # a server that could wait longer: its own 10 s stays
    assert pace.interval == 10
    for nonsense in (None, "1", True, float("nan")):  # an older or broken server
        pace.server_asks(nonsense)
        assert pace.interval == 10
    pace.server_asks(-5)
    assert pace.interval == 0.2  # never spun by a server asking for nothing


# -- GET /agents: pages and filters -----------------------------------------------

def test_get_agents_pages_by_name_with_a_total(api):
    names = ["n%03d" % i for i in range(130)]
    heartbeat(api, *reversed(names))
    first = agents(api)
    assert (first["total"], first["limit"], first["offset"]) == (130, 100, 0)
    assert [a["name"] for a in first["agents"]] == names[:100]
    rest = agents(api, "?limit=50&offset=100")
    assert [a["name"] for a in rest["agents"]] == names[100:]
    assert agents(api, "?offset=500")["agents"] == []


def test_get_agents_filters_by_status_and_name_prefix(api, clock):
    heartbeat(api, "web-01", "web-02", "db-01", "web")
    clock.advance(31)
    heartbeat(api, "web-02", "db-01")
    online = agents(api, "?status=online")
    assert [a["name"] for a in online["agents"]] == ["db-01", "web-02"] and online["total"] == 2
    assert [a["name"] for a in agents(api, "?status=offline")["agents"]] == ["web", "web-01"]
    assert [a["name"] for a in agents(api, "?prefix=web-")["agents"]] == ["web-01", "web-02"]
    both = agents(api, "?prefix=web&status=offline&limit=1")
    assert [a["name"] for a in both["agents"]] == ["web"] and both["total"] == 2
    assert agents(api, "?prefix=")["total"] == 4  # empty: no filter
    assert agents(api, "?prefix=%25")["total"] == 0  # no wildcard: a literal %


@pytest.mark.parametrize("query, field", [
    ("?limit=0", "limit"), ("?limit=1001", "limit"), ("?limit=x", "limit"),
    ("?offset=-1", "offset"), ("?status=gone", "status"), ("?status=Online", "status"),
    ("?prefix=" + "x" * 129, "prefix"), ("?prefix=a%0Ab", "prefix"), ("?name=a", "name"),
    ("?status=online&status=offline", "status")])
def test_get_agents_refuses_bad_parameters_naming_them(api, query, field):
    heartbeat(api, "a")
    assert_error(api.call("GET", "/agents" + query), 400, field)


# -- real processes ----------------------------------------------------------------

def fleet(api, query):
    """GET /agents from a real server (harness.Api)."""
    status, body = api.call("GET", "/agents" + query)
    assert status == 200, body
    return body


def _run_on(api, task_id, name):
    _, task = api.call("GET", "/tasks/" + task_id)
    runs = [e for e in task["executions"] if e["client"] == name and e["status"] == "running"]
    return runs[0] if runs else None


def test_a_killed_agents_run_is_retried_within_client_timeout(cluster):
    """Once a bug: with CLIENT_TIMEOUT 3 the run of an agent killed with kill -9 stayed
    running until the next HEARTBEAT_CLEANUP_INTERVAL sweep, 60 s later."""
    cluster.start_server(env={"OCTOPUS_CLIENT_TIMEOUT": "3",
                              "OCTOPUS_HEARTBEAT_CLEANUP_INTERVAL": "60"})
    fast = {"OCTOPUS_HEARTBEAT_INTERVAL": "1"}
    cluster.start_agent("doomed", env=fast)
    api = cluster.api()
    _, task = api.call("POST", "/tasks", {"plugin": "sleep", "action": "sleep", "args": [60]})
    wait_for(lambda: _run_on(api, task["id"], "doomed"), 20, what="the run going on doomed")
    cluster.start_agent("spare", env=fast)
    wait_for(lambda: api.call("GET", "/health")[1]["agents_waiting"] >= 1, 20,
             what="spare asking for work")
    cluster.agents["doomed"].kill9()
    retry = wait_for(lambda: _run_on(api, task["id"], "spare"), 30, what="the retry on spare")
    [gone] = fleet(api, "?prefix=doomed")["agents"]
    assert gone["status"] == "offline"
    _, task = api.call("GET", "/tasks/" + task["id"])
    assert [e["status"] for e in task["executions"]] == ["lost", "running"]
    # From its last heartbeat as the server recorded it: CLIENT_TIMEOUT + 1 s, and a
    # second for a loaded machine.
    late = parse_iso(retry["started_at"]) - parse_iso(gone["last_heartbeat"])
    assert late <= 3 + 1 + 1, late


def test_an_agent_stopped_with_sigterm_is_offline_at_once_and_gets_no_all_run(cluster):
    cluster.start_server()  # CLIENT_TIMEOUT 30
    cluster.start_agent("stays")
    cluster.start_agent("leaves")
    cluster.agents["leaves"].stop()
    api = cluster.api()
    status = {a["name"]: a["status"] for a in fleet(api, "")["agents"]}
    assert status == {"stays": "online", "leaves": "offline"}  # at once, not 30 s later
    task = cluster.run_task(api, {"plugin": "echo", "action": "echo", "owner": "ALL"},
                            timeout=20)
    assert task["status"] == "Done" and set(task["result"]["agents"]) == {"stays"}


def test_a_heartbeat_only_client_does_not_hold_up_an_all_task(cluster):
    cluster.start_server()
    cluster.start_agent("real")
    beat = cluster.api(token=AGENT_TOKEN)
    assert beat.call("POST", "/heartbeat", {"client": "test"})[0] == 200  # the guide's curl
    api = cluster.api()
    task = cluster.run_task(api, {"plugin": "echo", "action": "echo", "owner": "ALL"},
                            timeout=20)
    assert task["status"] == "Done" and task["result"]["total"] == 1
    assert set(task["result"]["agents"]) == {"real"}


def test_default_agents_stay_online_with_a_short_client_timeout(cluster):
    """Once a bug: with CLIENT_TIMEOUT 3 agents at the default HEARTBEAT_INTERVAL 10
    were offline most of the time, and a queued run waited 26 s."""
    cluster.start_server(env={"OCTOPUS_CLIENT_TIMEOUT": "3"})
    cluster.start_agent("steady")  # HEARTBEAT_INTERVAL 10
    api = cluster.api()
    watched_until = time.monotonic() + 10
    while time.monotonic() < watched_until:  # a watch over ~10 s, not a wait
        [row] = fleet(api, "")["agents"]
        assert row["status"] == "online", row
        time.sleep(0.2)
    task = cluster.run_task(api, {"plugin": "echo", "action": "echo"}, timeout=5)
    assert task["status"] == "success" and task["executor"] == "steady"
