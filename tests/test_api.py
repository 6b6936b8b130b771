"""The HTTP API through falcon's TestClient, over the real app and a real SQLite store.

Every refused request is checked three ways: its status, its JSON error body
``{"error": {"message": ..., "field": ...}}``, and that nothing changed in the
database (see ``unchanged``).

Tests whose docstring starts with "BUG:" assert the correct behaviour of
something the server gets wrong today; they fail until octopus/ is fixed.
"""
import contextlib
import hashlib
import http.client
import re
import threading
import time

import pytest

from octopus.harness import ADMIN_TOKEN, AGENT_TOKEN, finishes_within, wait_for

ECHO = {"plugin": "echo", "action": "echo"}
MAX_BODY = 1024 * 1024
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TASK_KEYS = {"id", "owner", "plugin", "action", "args", "kwargs", "type", "execution_start_time",
             "execution_end_time", "interval", "status", "executor", "result", "updated_at",
             "created_at", "next_run_at", "timeout", "timezone", "overlap", "catch_up",
             "max_retries", "retry_delay", "retry_backoff", "cancelled_at", "keep_processes"}


# -- helpers ------------------------------------------------------------------


def assert_error(result, status, field=None):
    """``result`` is the API's error reply: ``status`` with the documented JSON body."""
    assert result.status_code == status, (result.status_code, result.text[:500])
    body = result.json
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "field"}, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message.strip(), body
    assert body["error"]["field"] == field, body
    assert "Traceback" not in result.text
    return message


def snapshot(api):
    """Everything a request could change: tasks, executions, agents."""
    tasks, total = api.store.list_tasks(limit=1000)
    return {"tasks": tasks, "total": total,
            "executions": [api.store.get_execution(e["id"])
                           for e in api.store.list_executions(limit=1000)],
            "agents": api.store.list_agents()}


@contextlib.contextmanager
def unchanged(api):
    """Assert the block leaves the database exactly as it found it."""
    before = snapshot(api)
    yield
    assert snapshot(api) == before


def raw(api, method, path, body, token=ADMIN_TOKEN, headers=None, **kwargs):
    """A request with a body of exact bytes (or text), not encoded by the client."""
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    if token:
        hdrs["Authorization"] = "Bearer " + token
    return api.client.simulate_request(method, path, headers=hdrs, body=body, **kwargs)


def create(api, **fields):
    body = dict(ECHO, **fields)
    r = api.call("POST", "/tasks", body)
    assert r.status_code == 201, r.text
    return r.json


def get_task(api, task_id):
    r = api.call("GET", "/tasks/" + task_id)
    assert r.status_code == 200, r.text
    return r.json


def work(api, name, capacity=1, wait=0, **extra):
    """One ask for work that does not wait; returns the runs handed out."""
    r = api.call("POST", "/agent/work", dict({"client": name, "capacity": capacity, "wait": wait},
                                             **extra), token=AGENT_TOKEN)
    assert r.status_code == 200, r.text
    return r.json["runs"]


def report(api, name, run_id, status="success", result=None, output="", duration=0.01):
    r = api.call("POST", "/agent/results",
                 {"client": name, "results": [{"id": run_id, "status": status, "result": result,
                                               "output": output, "duration": duration}]},
                 token=AGENT_TOKEN)
    assert r.status_code == 200, r.text
    return r.json


def work_reply(r):
    """An ask's reply without the plugins digest and heartbeat flag every reply has."""
    assert r.status_code == 200, r.json
    assert set(r.json) >= {"plugins", "heartbeat"}
    return {k: v for k, v in r.json.items() if k not in ("plugins", "heartbeat")}


def heartbeat(api, *names):
    for name in names:
        r = api.heartbeat(name)
        assert r.status_code == 200, r.text


def taking_work(api, *names):
    """Agents online that asked for work once (what a real agent does): ALL tasks go to them."""
    heartbeat(api, *names)
    for name in names:
        assert work(api, name, capacity=0) == []


# -- creating and reading tasks --------------------------------------------------------


def test_create_task_returns_every_field_with_defaults(api):
    r = api.call("POST", "/tasks", ECHO)
    assert r.status_code == 201
    task = r.json
    assert set(task) == TASK_KEYS
    assert re.match(r"^[0-9a-f]{32}$", task["id"])
    assert task["owner"] == "Anyone"
    assert (task["plugin"], task["action"]) == ("echo", "echo")
    assert task["args"] == [] and task["kwargs"] == {}
    assert task["type"] == "Adhoc"
    assert task["execution_start_time"] is None and task["execution_end_time"] is None
    assert task["interval"] is None
    assert task["status"] == "Created"
    assert task["executor"] is None and task["result"] is None
    assert ISO_Z.match(task["updated_at"]) and task["updated_at"].endswith("Z")
    assert ISO_Z.match(task["created_at"])
    assert r.headers["Location"].endswith("/tasks/" + task["id"])
    assert get_task(api, task["id"]) == dict(task, executions=[])


def test_create_task_keeps_given_fields_and_normalises_times(api):
    task = create(api, args=[1, "two", None], kwargs={"x": {"y": [True]}}, owner="b",
                  execution_start_time="2027-01-01T00:00:00+02:00",
                  execution_end_time="2027-02-01T00:00:00", interval=5, type="Interval")
    assert task["args"] == [1, "two", None]
    assert task["kwargs"] == {"x": {"y": [True]}}
    assert task["owner"] == "b"
    assert task["execution_start_time"] == "2026-12-31T22:00:00.000Z"
    assert task["execution_end_time"] == "2027-02-01T00:00:00.000Z"  # no offset means UTC
    assert task["interval"] == "5"


def test_list_tasks_newest_first_with_total_limit_offset(api, clock):
    ids = []
    for _ in range(5):
        ids.append(create(api)["id"])
        clock.advance(1)
    r = api.call("GET", "/tasks")
    assert r.status_code == 200
    assert set(r.json) == {"tasks", "total", "limit", "offset"}
    assert [t["id"] for t in r.json["tasks"]] == ids[::-1]
    assert (r.json["total"], r.json["limit"], r.json["offset"]) == (5, 100, 0)

    page = api.call("GET", "/tasks", query_string="limit=2&offset=1").json
    assert [t["id"] for t in page["tasks"]] == ids[::-1][1:3]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    past_end = api.call("GET", "/tasks", query_string="offset=10").json
    assert past_end["tasks"] == [] and past_end["total"] == 5
    assert api.call("GET", "/tasks", query_string="limit=1000").status_code == 200


def test_list_tasks_filters(api, clock):
    done = create(api, owner="a")
    [run] = work(api, "a")
    assert run["task_id"] == done["id"]
    report(api, "a", run["id"], result={"ok": 1})
    clock.advance(1)
    mine = create(api, owner="b")
    clock.advance(1)
    sleepy = create(api, plugin="sleep", action="sleep", args=[0])

    def ids(query):
        r = api.call("GET", "/tasks", query_string=query)
        assert r.status_code == 200, r.text
        assert r.json["total"] == len(r.json["tasks"])
        return {t["id"] for t in r.json["tasks"]}

    assert ids("status=Created") == {mine["id"], sleepy["id"]}
    assert ids("status=success") == {done["id"]}
    assert ids("owner=b") == {mine["id"]}
    assert ids("owner=Anyone") == {sleepy["id"]}
    assert ids("type=Adhoc") == {mine["id"], sleepy["id"], done["id"]}
    assert ids("executor=a") == {done["id"]}
    assert ids("plugin=sleep") == {sleepy["id"]}
    assert ids("plugin=echo&status=Created") == {mine["id"]}
    assert ids("plugin=Echo") == set()  # filter values are matched exactly


def test_get_task_includes_its_executions(api):
    task = create(api)
    assert get_task(api, task["id"])["executions"] == []
    [run] = work(api, "a")
    report(api, "a", run["id"], result={"n": 1}, output="hello\n", duration=0.5)
    [execution] = get_task(api, task["id"])["executions"]
    assert execution["id"] == run["id"]
    assert execution["task_id"] == task["id"]
    assert execution["client"] == "a"
    assert execution["status"] == "success"
    assert execution["result"] == {"n": 1}
    assert execution["duration"] == 0.5
    for key in ("created_at", "updated_at", "started_at", "finished_at"):
        assert ISO_Z.match(execution[key]), key


def test_put_changes_only_the_given_fields(api, clock):
    task = create(api, args=[1], kwargs={"k": "v"})
    clock.advance(5)
    r = api.call("PUT", "/tasks/" + task["id"], {"args": [2, 3], "owner": "b"})
    assert r.status_code == 200, r.text
    changed = r.json
    assert changed["args"] == [2, 3] and changed["owner"] == "b"
    assert changed["kwargs"] == {"k": "v"}                       # untouched
    assert (changed["plugin"], changed["action"]) == ("echo", "echo")
    assert changed["created_at"] == task["created_at"]
    assert changed["updated_at"] > task["updated_at"]
    assert get_task(api, task["id"]) == dict(changed, executions=[])

    # Plugin and action are checked together: a new plugin needs an action it has.
    with unchanged(api):
        assert_error(api.call("PUT", "/tasks/" + task["id"], {"plugin": "sleep"}), 400, "action")
    r = api.call("PUT", "/tasks/" + task["id"], {"plugin": "sleep", "action": "sleep", "args": [0]})
    assert r.status_code == 200
    assert (r.json["plugin"], r.json["action"], r.json["args"]) == ("sleep", "sleep", [0])

    r = api.call("PUT", "/tasks/" + task["id"], {})
    assert r.status_code == 200 and r.json["plugin"] == "sleep"


@pytest.mark.parametrize("body,field", [
    ({"action": "nosuch"}, "action"),
    ({"plugin": "../etc"}, "plugin"),
    ({"args": "x"}, "args"),
    ({"kwargs": []}, "kwargs"),
    ({"owner": "a b"}, "owner"),
    ({"type": "Interval"}, "interval"),
    ({"execution_start_time": "soon"}, "execution_start_time"),
    ({"status": "success"}, "status"),
    ({"id": "0" * 32}, "id"),
    ({"result": 1}, "result"),
    ({"colour": "red"}, "colour"),
])
def test_put_revalidates(api, body, field):
    task = create(api)
    with unchanged(api):
        assert_error(api.call("PUT", "/tasks/" + task["id"], body), 400, field)


def test_put_end_time_is_checked_against_the_stored_start(api):
    task = create(api, execution_start_time="2027-06-01T00:00:00Z")
    with unchanged(api):
        assert_error(api.call("PUT", "/tasks/" + task["id"],
                              {"execution_end_time": "2027-05-01T00:00:00Z"}),
                     400, "execution_end_time")


def test_put_on_a_running_task_is_409(api):
    task = create(api)
    [run] = work(api, "a")
    assert run["task_id"] == task["id"]
    with unchanged(api):
        assert_error(api.call("PUT", "/tasks/" + task["id"], {"args": [1]}), 409)
    report(api, "a", run["id"])
    with unchanged(api):  # an ended task is history: a new one is made instead
        assert_error(api.call("PUT", "/tasks/" + task["id"], {"args": [1]}), 409)


def test_delete_then_404(api):
    task = create(api)
    [run] = work(api, "a")
    report(api, "a", run["id"])
    r = api.call("DELETE", "/tasks/" + task["id"])
    assert r.status_code == 204 and not r.content
    assert_error(api.call("GET", "/tasks/" + task["id"]), 404)
    assert_error(api.call("DELETE", "/tasks/" + task["id"]), 404)
    assert api.call("GET", "/executions", query_string="task_id=" + task["id"]).json["executions"] == []
    assert_error(api.call("GET", "/executions/%d" % run["id"]), 404)


def test_delete_of_a_running_task_drops_the_run_and_its_late_report(api):
    task = create(api)
    [run] = work(api, "a")
    assert api.call("DELETE", "/tasks/" + task["id"]).status_code == 204
    assert report(api, "a", run["id"]) == {"acked": [],
                                           "rejected": [{"id": run["id"], "reason": "unknown run"}]}
    assert api.store.list_tasks()[1] == 0


# -- executions -----------------------------------------------------------------------


def test_executions_list_and_get(api, clock):
    first, second = create(api), create(api)
    runs = work(api, "a", capacity=2)
    assert {r["task_id"] for r in runs} == {first["id"], second["id"]}
    for run in runs:
        report(api, "a", run["id"], output="out %d" % run["id"], duration=1.5)

    r = api.call("GET", "/executions")
    assert r.status_code == 200
    assert set(r.json) == {"executions", "limit", "offset"}
    assert [e["id"] for e in r.json["executions"]] == sorted((x["id"] for x in runs), reverse=True)

    mine = api.call("GET", "/executions", query_string="task_id=" + first["id"]).json["executions"]
    assert [e["task_id"] for e in mine] == [first["id"]]
    assert "output" not in mine[0]  # the list leaves the captured output out
    assert api.call("GET", "/executions", query_string="client=a&status=success").json[
        "executions"][0]["client"] == "a"
    assert api.call("GET", "/executions", query_string="client=zz").json["executions"] == []
    assert len(api.call("GET", "/executions", query_string="limit=1&offset=1").json["executions"]) == 1

    one = api.call("GET", "/executions/%d" % mine[0]["id"])
    assert one.status_code == 200
    assert one.json["output"] == "out %d" % mine[0]["id"]
    assert one.json["duration"] == 1.5
    assert one.json["status"] == "success"


# -- agents, heartbeats, plugins, health ----------------------------------------------


def test_agents_after_heartbeats_online_then_offline(api, clock):
    r = api.heartbeat("a", hostname="host-a", ip="10.0.0.1", version="1.2.3", concurrency=4)
    assert r.status_code == 200
    assert r.json["status"] == "ok" and HEX64.match(r.json["plugins"])
    heartbeat(api, "b")
    create(api)
    [run] = work(api, "a")

    agents = {a["name"]: a for a in api.call("GET", "/agents").json["agents"]}
    assert set(agents) == {"a", "b"}
    a = agents["a"]
    assert (a["hostname"], a["ip"], a["version"], a["concurrency"]) == ("host-a", "10.0.0.1", "1.2.3", 4)
    assert a["status"] == "online" and a["running"] == 1
    assert ISO_Z.match(a["last_heartbeat"]) and ISO_Z.match(a["first_seen"])
    b = agents["b"]
    assert b["hostname"] == "b" and b["ip"] == "127.0.0.1" and b["version"] is None  # defaults
    assert b["running"] == 0

    clock.advance(29)
    assert all(x["status"] == "online" for x in api.call("GET", "/agents").json["agents"])
    clock.advance(2)  # 31 s after the last heartbeat: past CLIENT_TIMEOUT=30
    assert all(x["status"] == "offline" for x in api.call("GET", "/agents").json["agents"])
    heartbeat(api, "a")
    agents = {x["name"]: x for x in api.call("GET", "/agents").json["agents"]}
    assert agents["a"]["status"] == "online" and agents["b"]["status"] == "offline"
    assert agents["a"]["first_seen"] == a["first_seen"]
    report(api, "a", run["id"])
    assert {x["name"]: x["running"] for x in api.call("GET", "/agents").json["agents"]}["a"] == 0


def test_heartbeat_as_in_the_guide(api):
    """curl .../heartbeat -H "Authorization: Bearer $AGENT_TOKEN" -d '{"client": "test"}'"""
    r = api.call("POST", "/heartbeat", {"client": "test"}, token=AGENT_TOKEN)
    assert r.status_code == 200
    assert r.json["status"] == "ok"
    assert [a["name"] for a in api.call("GET", "/agents").json["agents"]] == ["test"]


def test_plugins_list_and_source(api):
    r = api.call("GET", "/plugins", token=AGENT_TOKEN)
    assert r.status_code == 200
    plugins = {p["name"]: p for p in r.json["plugins"]}
    assert {"echo", "sleep", "shell", "system"} <= set(plugins)
    assert plugins["echo"]["actions"] == ["echo", "fail"]
    assert HEX64.match(plugins["echo"]["sha256"])
    assert HEX64.match(r.json["digest"])
    assert api.heartbeat("a").json["plugins"] == r.json["digest"]

    src = api.call("GET", "/plugins/echo", token=AGENT_TOKEN)
    assert src.status_code == 200
    assert src.headers["Content-Type"].startswith("text/x-python")
    assert hashlib.sha256(src.content).hexdigest() == plugins["echo"]["sha256"]
    assert src.headers["X-Plugin-SHA256"] == plugins["echo"]["sha256"]
    assert b"def echo" in src.content


def test_health_without_token(api):
    r = api.call("GET", "/health", token=None)
    assert r.status_code == 200
    assert r.json["status"] == "ok"
    assert r.json["database"] == "ok"
    assert r.json["schema_version"] >= 1
    for key in ("version", "uptime", "tasks", "pending", "active", "running", "agents_online",
                "agents_waiting"):
        assert key in r.json
    create(api)
    heartbeat(api, "a")
    r = api.call("GET", "/health", token=None)
    assert (r.json["pending"], r.json["agents_online"]) == (1, 1)


def test_health_is_503_json_when_the_database_is_unusable(api):
    api.store.close()
    r = api.call("GET", "/health", token=None)
    assert r.status_code == 503
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json["status"] == "error"
    assert r.json["database"].startswith("unusable")
    assert "Traceback" not in r.text


# -- the agent protocol -------------------------------------------------------------


def test_agent_work_and_result_round_trip(api, clock):
    heartbeat(api, "a")
    task = create(api, args=[1, 2], kwargs={"x": 1})
    r = api.call("POST", "/agent/work", {"client": "a", "capacity": 1, "wait": 0}, token=AGENT_TOKEN)
    assert r.status_code == 200
    assert set(r.json) == {"runs", "waited", "cancel", "plugins", "heartbeat"}
    assert r.json["heartbeat"] is False  # none carried
    [run] = r.json["runs"]
    assert set(run) == {"id", "task_id", "plugin", "action", "args", "kwargs", "plugin_sha256",
                        "timeout", "attempt", "lease", "due_at", "keep_processes"}
    assert run["timeout"] is None  # neither the task nor RUN_TIMEOUT sets one
    assert run["keep_processes"] is False
    assert run["task_id"] == task["id"]
    assert (run["plugin"], run["action"], run["args"], run["kwargs"]) == ("echo", "echo", [1, 2], {"x": 1})
    assert run["plugin_sha256"] == api.registry.get("echo").sha256
    active = get_task(api, task["id"])
    assert (active["status"], active["executor"]) == ("Active", "a")
    assert active["executions"][0]["status"] == "running"
    assert work(api, "a") == []  # nothing more to hand out

    clock.advance(1)
    result = {"args": [1, 2], "kwargs": {"x": 1}}
    r = api.call("POST", "/agent/results",
                 {"client": "a", "results": [{"id": run["id"], "status": "success",
                                              "result": result, "output": "printed\n",
                                              "duration": 0.01}]}, token=AGENT_TOKEN)
    assert r.status_code == 200
    assert r.json == {"acked": [run["id"]], "rejected": []}
    done = get_task(api, task["id"])
    assert (done["status"], done["result"], done["executor"]) == ("success", result, "a")
    [execution] = done["executions"]
    assert execution["status"] == "success" and execution["result"] == result
    assert api.call("GET", "/executions/%d" % run["id"]).json["output"] == "printed\n"


def test_failed_run_fails_the_task(api):
    task = create(api, action="fail", args=["boom"])
    [run] = work(api, "a")
    error = {"error": {"type": "RuntimeError", "message": "boom", "traceback": "..."}}
    report(api, "a", run["id"], status="failed", result=error)
    done = get_task(api, task["id"])
    assert (done["status"], done["result"]) == ("failed", error)


def test_repeated_report_is_acked_and_changes_nothing(api, clock):
    create(api)
    [run] = work(api, "a")
    assert report(api, "a", run["id"], result={"first": True}) == {"acked": [run["id"]], "rejected": []}
    clock.advance(10)  # a second write would show in updated_at
    with unchanged(api):
        assert report(api, "a", run["id"], result={"first": True}) == {"acked": [run["id"]],
                                                                       "rejected": []}
        # Even a contradicting repeat: the first report stands.
        assert report(api, "a", run["id"], status="failed", result={"first": False}) == {
            "acked": [run["id"]], "rejected": []}
    assert len(api.store.list_executions()) == 1


def test_report_from_another_agent_is_rejected(api):
    task = create(api)
    [run] = work(api, "a")
    with unchanged(api):
        r = api.call("POST", "/agent/results", {"client": "b", "results": [
            {"id": run["id"], "status": "success", "result": None}]}, token=AGENT_TOKEN)
    assert r.status_code == 409  # fenced: b does not hold this run
    assert "another agent" in r.json["error"]["message"]
    r = r.json
    assert r["acked"] == []
    [rejected] = r["rejected"]
    assert rejected["id"] == run["id"]
    assert isinstance(rejected["reason"], str) and "another agent" in rejected["reason"]
    assert get_task(api, task["id"])["status"] == "Active"


def test_unknown_run_is_rejected_and_known_ones_in_the_batch_still_count(api):
    create(api)
    [run] = work(api, "a")
    r = api.call("POST", "/agent/results",
                 {"client": "a", "results": [{"id": 999, "status": "success"},
                                             {"id": run["id"], "status": "success"}]},
                 token=AGENT_TOKEN)
    assert r.status_code == 200
    assert r.json == {"acked": [run["id"]], "rejected": [{"id": 999, "reason": "unknown run"}]}


def test_all_task_gets_one_run_per_online_agent_and_is_done_after_both(api):
    taking_work(api, "a", "b")
    task = create(api, owner="ALL")
    assert task["owner"] == "ALL"
    [run_a] = work(api, "a", capacity=5)
    [run_b] = work(api, "b", capacity=5)
    assert run_a["task_id"] == run_b["task_id"] == task["id"]
    assert run_a["id"] != run_b["id"]
    assert work(api, "a") == [] and work(api, "c") == []  # c was not online: no run

    report(api, "a", run_a["id"], result={"who": "a"})
    assert get_task(api, task["id"])["status"] == "Active"
    report(api, "b", run_b["id"], status="failed", result={"who": "b"})
    done = get_task(api, task["id"])
    assert done["status"] == "Done"
    assert done["result"] == {
        "total": 2, "success": 1, "failed": 1, "timeout": 0, "cancelled": 0, "lost": 0,
        "agents": {"a": {"status": "success", "result": {"who": "a"}, "attempts": 1},
                   "b": {"status": "failed", "result": {"who": "b"}, "attempts": 1}}}
    assert {e["client"] for e in done["executions"]} == {"a", "b"}


def test_all_task_waits_for_an_agent_to_come_online(api):
    task = create(api, owner="ALL")
    assert task["status"] == "Created"
    heartbeat(api, "a")
    assert get_task(api, task["id"])["status"] == "Created"  # online, not asking for work yet
    [run] = work(api, "a")  # its first ask fans the task out to it, and hands it the run
    assert run["task_id"] == task["id"]
    assert get_task(api, task["id"])["status"] == "Active"


def test_specific_owner_goes_only_to_that_agent(api):
    task = create(api, owner="b")
    assert work(api, "a") == []
    assert get_task(api, task["id"])["status"] == "Created"
    [run] = work(api, "b")
    assert run["task_id"] == task["id"]
    assert get_task(api, task["id"])["executor"] == "b"


def test_specific_owner_that_never_connects_stays_created(api, clock):
    task = create(api, owner="ghost")
    heartbeat(api, "a")
    clock.advance(3600)
    assert work(api, "a", capacity=10) == []
    assert get_task(api, task["id"])["status"] == "Created"


def test_anyone_goes_to_the_agent_that_asks(api):
    task = create(api)
    [run] = work(api, "z")
    assert run["task_id"] == task["id"]


def test_capacity_limits_the_runs_oldest_first(api, clock):
    ids = []
    for _ in range(3):
        ids.append(create(api)["id"])
        clock.advance(1)
    assert [r["task_id"] for r in work(api, "a", capacity=2)] == ids[:2]
    assert [r["task_id"] for r in work(api, "b", capacity=2)] == ids[2:]


def test_no_task_is_handed_to_two_agents(api):
    task_ids = {create(api)["id"] for _ in range(20)}
    handed = []
    lock = threading.Lock()

    def poll(name):
        for _ in range(5):
            runs = work(api, name, capacity=3)
            with lock:
                handed.extend(runs)

    threads = [threading.Thread(target=poll, args=("agent%d" % i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    run_ids = [r["id"] for r in handed]
    assert len(run_ids) == len(set(run_ids))
    assert sorted(r["task_id"] for r in handed) == sorted(task_ids)
    assert len(api.store.list_executions(limit=1000)) == 20


# -- long polls ------------------------------------------------------------------------


def test_work_long_poll_waits_then_returns_empty(api):
    started = time.monotonic()
    r = api.call("POST", "/agent/work", {"client": "a", "wait": 0.3}, token=AGENT_TOKEN)
    assert r.status_code == 200
    assert work_reply(r) == {"runs": [], "waited": True, "cancel": []}
    assert time.monotonic() - started >= 0.25


def test_work_wait_is_capped_by_long_poll_timeout(tmp_path, store, api):
    capped = type(api)(tmp_path / "capped", store, LONG_POLL_TIMEOUT=1)
    r = finishes_within(10, lambda: capped.call("POST", "/agent/work",
                                                {"client": "a", "wait": 3600}, token=AGENT_TOKEN),
                        "an ask for 3600 s capped to 1 s")
    assert work_reply(r) == {"runs": [], "waited": True, "cancel": []}


def test_work_over_max_waiters_answers_at_once_and_still_hands_out_work(tmp_path, store, api):
    full = type(api)(tmp_path / "full", store, MAX_WAITERS=0)
    r = finishes_within(10, lambda: full.call("POST", "/agent/work", {"client": "a", "wait": 20},
                                              token=AGENT_TOKEN), "an ask past the cap")
    assert work_reply(r) == {"runs": [], "waited": False, "cancel": [],
                             "retry_after": 0.0}  # one agent: no pacing
    task = create(full)
    r = full.call("POST", "/agent/work", {"client": "a", "wait": 20}, token=AGENT_TOKEN)
    assert r.json["waited"] is False
    assert [x["task_id"] for x in r.json["runs"]] == [task["id"]]


def held_ask(api, body, what="the ask held"):
    """POST /agent/work ``body`` on a thread, returned once the server holds it.

    Call the result for the reply.  It must come within 10 s of that call: an
    ask held for its whole ``wait`` (20 s in these tests) was not woken.
    """
    replies, before = [], api.dispatcher.waiting()
    thread = threading.Thread(target=lambda: replies.append(
        api.call("POST", "/agent/work", body, token=AGENT_TOKEN)), daemon=True)
    thread.start()
    wait_for(lambda: api.dispatcher.waiting() > before, 10, what=what)

    def answer():
        [reply] = wait_for(lambda: replies, 10, what="the held ask answered before its wait")
        return reply
    return answer


def test_waiting_agent_is_woken_by_a_new_task(api, clock):
    clock.now = time.time()  # the app compares start times with the wall clock
    heartbeat(api, "a")
    answer = held_ask(api, {"client": "a", "wait": 20})
    task = create(api)
    r = answer()  # woken, not timed out after 20 s
    assert r.json["waited"] is True
    assert [x["task_id"] for x in r.json["runs"]] == [task["id"]]


def test_a_full_agents_held_ask_takes_the_next_run_when_its_result_comes_in(api, clock):
    """No second request to say it has room: the held ask widens by the runs reported."""
    clock.now = time.time()
    heartbeat(api, "a")
    first, second = create(api, owner="a"), create(api, owner="a")
    [run] = work(api, "a")
    assert run["task_id"] == first["id"]
    answer = held_ask(api, {"client": "a", "capacity": 0, "wait": 20, "running": [run["id"]]},
                      "the full ask held")
    assert api.dispatcher.waiting_names() == []  # full: not counted as asking for work
    report(api, "a", run["id"])
    r = answer()
    assert r.json["waited"] is True
    assert [x["task_id"] for x in r.json["runs"]] == [second["id"]]


def test_a_full_agents_held_ask_with_room_and_no_work_waits_for_work(api, clock):
    clock.now = time.time()
    heartbeat(api, "a")
    create(api, owner="a")
    [run] = work(api, "a")
    answer = held_ask(api, {"client": "a", "capacity": 0, "wait": 20, "running": [run["id"]]},
                      "the full ask held")
    report(api, "a", run["id"])
    wait_for(lambda: api.dispatcher.waiting_names() == ["a"], 10, what="the ask counted as asking")
    task = create(api)  # an Anyone task goes to the held ask
    r = answer()
    assert [x["task_id"] for x in r.json["runs"]] == [task["id"]]


def test_anyone_task_goes_to_the_asking_agent_with_fewest_runs(api):
    for name in ("a", "b", "c"):
        assert api.heartbeat(name, concurrency=3).status_code == 200
    for owner in ("a", "a", "b"):
        create(api, owner=owner)
        assert len(work(api, owner)) == 1  # a has 2 runs going, b 1, c none
    waiters = {n: api.dispatcher.register(n) for n in ("a", "b", "c")}  # all asking for work
    task = create(api)
    assert task["status"] == "Active" and task["executor"] == "c"
    assert waiters["c"].event.is_set() and not waiters["a"].event.is_set()
    assert [r["task_id"] for r in work(api, "c")] == [task["id"]]
    # now a 2, b 1, c 1: b and c tie, and b was given Anyone work longer ago (never)
    assert create(api)["executor"] == "b"


def test_anyone_task_is_not_given_to_an_agent_that_is_not_asking(api):
    for name in ("busy", "idle"):
        assert api.heartbeat(name, concurrency=1).status_code == 200
    api.dispatcher.register("busy")  # only "busy" is asking; "idle" only heartbeats
    assert create(api)["executor"] == "busy"
    second = create(api)
    assert second["status"] == "Created"  # nobody else asking: left for the first to ask
    assert [r["task_id"] for r in work(api, "idle")] == [second["id"]]


def test_get_task_wait_returns_when_the_task_is_final(api):
    task = create(api)
    [run] = work(api, "a")
    replies = []
    getter = threading.Thread(target=lambda: replies.append(
        api.call("GET", "/tasks/" + task["id"], query_string="wait=30")), daemon=True)
    getter.start()
    # until the request is held, so the report must wake it
    wait_for(lambda: api.dispatcher.watchers(task["id"]) == 1, 10, what="the GET held")
    report(api, "a", run["id"], result={"ok": True})
    [r] = wait_for(lambda: replies, 10, what="the GET woken, not held for its 30 s")
    assert r.status_code == 200
    assert r.json["status"] == "success" and r.json["result"] == {"ok": True}


def test_get_task_waits_are_capped_at_a_quarter_of_the_threads(tmp_path, store):
    """THREADS 8: two waits are held (with POST /agent/tasks waits, from one
    pool); a third GET ?wait= answers at once with the task as it is."""
    from tests.conftest import AppClient

    api = AppClient(tmp_path, store, THREADS=8)
    task = create(api)
    replies = []
    held = [threading.Thread(target=lambda: replies.append(
        api.call("GET", "/tasks/" + task["id"], query_string="wait=30"))) for _ in range(2)]
    for t in held:
        t.start()
    wait_for(lambda: api.dispatcher.watchers(task["id"]) == 2, 10, what="two GETs held")
    third = []
    extra = threading.Thread(target=lambda: third.append(
        api.call("GET", "/tasks/" + task["id"], query_string="wait=30")))
    extra.start()
    extra.join(20)  # were it held, it would wait the 30 s
    assert third and third[0].status_code == 200 and third[0].json["status"] == "Created"
    assert api.dispatcher.watchers(task["id"]) == 2 and not replies
    [run] = work(api, "a")
    report(api, "a", run["id"], result=1)
    for t in held:
        t.join(20)
    assert [r.json["status"] for r in replies] == ["success", "success"]
    # the slots are free again: a new wait is held
    second = create(api)
    waiter = threading.Thread(target=lambda: api.call("GET", "/tasks/" + second["id"],
                                                      query_string="wait=30"))
    waiter.start()
    wait_for(lambda: api.dispatcher.watchers(second["id"]) == 1, 10, what="a GET held again")
    [run] = work(api, "a")
    report(api, "a", run["id"], result=2)
    waiter.join(20)
    assert not waiter.is_alive()


def test_get_task_wait_times_out_with_the_task_as_it_is(api):
    task = create(api)
    started = time.monotonic()
    r = api.call("GET", "/tasks/" + task["id"], query_string="wait=0.3")
    assert r.status_code == 200 and r.json["status"] == "Created"
    assert time.monotonic() - started >= 0.25


# -- 400: bodies ---------------------------------------------------------------------


BAD_PLUGIN_NAMES = ["../etc", "a/b", "_private", "os.path", "echo.py", "ec\x00ho", "", 5, ["echo"],
                    "class", "nosuch"]
BAD_OWNERS = ["", "a b", "a/b", "a\\b", "tab\there", "a\x00b", "x" * 129, 5, None, ["a"],
              "x'; DROP TABLE tasks; --"]

INVALID_TASKS = (
    [({"action": "echo"}, "plugin"),
     ({"plugin": "echo"}, "action"),
     ({"plugin": "echo", "action": "nosuch"}, "action"),
     ({"plugin": "echo", "action": "_private"}, "action"),
     ({"plugin": "echo", "action": "../echo"}, "action")]
    + [({"plugin": name, "action": "echo"}, "plugin") for name in BAD_PLUGIN_NAMES]
    + [(dict(ECHO, args=value), "args") for value in ("x", {"a": 1}, 5, None)]
    + [(dict(ECHO, kwargs=value), "kwargs") for value in ([], "x", 5, None)]
    + [(dict(ECHO, owner=value), "owner") for value in BAD_OWNERS]
    + [(dict(ECHO, type=value), "type") for value in ("adhoc", "", 5, None)]
    + [(dict(ECHO, execution_start_time=value), "execution_start_time")
       for value in ("tomorrow", "2027-13-01T00:00:00Z", "", 1800000000, "9999-12-31T23:59:59-14:00")]
    + [(dict(ECHO, execution_end_time="never"), "execution_end_time"),
       (dict(ECHO, execution_start_time="2027-02-01T00:00:00Z",
             execution_end_time="2027-01-01T00:00:00Z"), "execution_end_time"),
       (dict(ECHO, execution_start_time="2027-02-01T00:00:00Z",
             execution_end_time="2027-02-01T00:00:00Z"), "execution_end_time")]
    + [(dict(ECHO, interval=value), "interval") for value in (True, [1], {"s": 1}, "x" * 300)]
    + [(dict(ECHO, priority=1), "priority")]
    + [(dict(ECHO, **{name: "x"}), name)
       for name in ("id", "status", "executor", "result", "updated_at", "created_at",
                    "next_run_at", "executions")]
)


@pytest.mark.parametrize("body,field", INVALID_TASKS,
                         ids=["%s-%r" % (f, b)[:60] for b, f in INVALID_TASKS])
def test_create_task_refuses_invalid_fields(api, body, field):
    create(api)  # something that must survive the refusal
    with unchanged(api):
        assert_error(api.call("POST", "/tasks", body), 400, field)


NOT_A_JSON_OBJECT = {
    "malformed": b'{"plugin": "echo", ',
    "trailing-garbage": b'{"plugin": "echo", "action": "echo"} x',
    "single-quotes": b"{'plugin': 'echo'}",
    "list": b'[{"plugin": "echo", "action": "echo"}]',
    "string": b'"echo"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "empty": b"",
    "whitespace": b"  \n ",
    "invalid-utf8": b'{"plugin": "echo", "action": "echo", "args": ["\xff"]}',
    "deep-top-level": b"[" * 100000 + b"]" * 100000,
    "deep-in-args": b'{"plugin": "echo", "action": "echo", "args": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "huge-integer": b'{"plugin": "echo", "action": "echo", "args": [' + b"9" * 5000 + b"]}",
}


@pytest.mark.parametrize("name", sorted(set(NOT_A_JSON_OBJECT) - {"list"}))  # a list: bulk
def test_create_task_refuses_bodies_that_are_not_a_json_object(api, name):
    create(api)
    with unchanged(api):
        assert_error(raw(api, "POST", "/tasks", NOT_A_JSON_OBJECT[name]), 400,
                     "args" if name == "deep-in-args" else None)


@pytest.mark.parametrize("route", ["/heartbeat", "/agent/work", "/agent/results"])
@pytest.mark.parametrize("name", ["malformed", "list", "null", "empty", "deep-top-level"])
def test_agent_routes_refuse_bodies_that_are_not_a_json_object(api, route, name):
    create(api)
    with unchanged(api):
        assert_error(raw(api, "POST", route, NOT_A_JSON_OBJECT[name], token=AGENT_TOKEN), 400)


def test_put_refuses_bodies_that_are_not_a_json_object(api):
    task = create(api)
    for name in ("malformed", "list", "empty", "deep-in-args"):
        with unchanged(api):
            assert_error(raw(api, "PUT", "/tasks/" + task["id"], NOT_A_JSON_OBJECT[name]), 400,
                         "args" if name == "deep-in-args" else None)


def test_nul_bytes_are_data_in_args_but_not_in_names(api):
    task = create(api, args=["a\x00b"], kwargs={"k\x00": "v\x00"})
    assert get_task(api, task["id"])["args"] == ["a\x00b"]
    assert get_task(api, task["id"])["kwargs"] == {"k\x00": "v\x00"}
    [run] = work(api, "a")
    assert run["args"] == ["a\x00b"]
    with unchanged(api):
        assert_error(api.call("POST", "/tasks", {"plugin": "ec\x00ho", "action": "echo"}), 400, "plugin")
        assert_error(api.call("POST", "/tasks", {"plugin": "echo", "action": "echo\x00"}), 400, "action")
        assert_error(api.call("POST", "/tasks", dict(ECHO, owner="a\x00")), 400, "owner")
        assert_error(api.heartbeat("a\x00"), 400, "client")


def test_sql_looking_text_is_just_text(api, clock):
    sql = "x'; DROP TABLE tasks; --"
    kept = create(api, owner="keeper")
    clock.advance(1)
    # An owner is an agent name: no spaces, so this one is refused...
    with unchanged(api):
        assert_error(api.call("POST", "/tasks", dict(ECHO, owner=sql)), 400, "owner")
        assert_error(api.heartbeat(sql), 400, "client")
    # ...while the same idea without spaces is a valid (odd) agent name.
    odd = create(api, owner="x';DROP_TABLE_tasks;--", args=[sql], kwargs={sql: sql})
    assert get_task(api, odd["id"])["args"] == [sql]
    assert work(api, "x';DROP_TABLE_tasks;--")[0]["task_id"] == odd["id"]
    for query in ("owner=" + sql, "plugin=echo' --", "executor=%27%3B"):
        r = api.call("GET", "/tasks", query_string=query)
        assert r.status_code == 200 and r.json["total"] == 0, query
    assert_error(api.call("GET", "/tasks", query_string="status=' OR '1'='1"), 400, "status")
    r = api.call("GET", "/executions", query_string="task_id=' OR 1=1 --")
    assert r.status_code == 200 and r.json["executions"] == []
    assert_error(api.call("GET", "/tasks/" + sql), 404)
    # The tables are all still there.
    assert {t["id"] for t in api.call("GET", "/tasks").json["tasks"]} == {kept["id"], odd["id"]}
    assert len(api.call("GET", "/executions").json["executions"]) == 1


# -- 400: query parameters ---------------------------------------------------------------


@pytest.mark.parametrize("path,query,field", [
    ("/tasks", "status=sucess", "status"), ("/tasks", "status=created", "status"),
    ("/tasks", "status=", "status"), ("/tasks", "type=adhoc", "type"),
    ("/executions", "status=sucess", "status"), ("/executions", "status=Created", "status"),
    ("/audit", "role=root", "role"),
])
def test_a_filter_value_outside_its_choices_is_refused(api, path, query, field):
    """A misspelt status is a mistake to say, not an empty page."""
    create(api)
    message = assert_error(api.call("GET", path, query_string=query), 400, field)
    assert field + " must be one of" in message


def test_every_status_is_a_valid_filter(api):
    from octopus.constants import RunStatus, TaskStatus, TaskType

    create(api)
    for status in TaskStatus.ALL:
        assert api.call("GET", "/tasks", query_string="status=" + status).status_code == 200
    for kind in TaskType.ALL:
        assert api.call("GET", "/tasks", query_string="type=" + kind).status_code == 200
    for status in RunStatus.ALL:
        assert api.call("GET", "/executions", query_string="status=" + status).status_code == 200
    assert api.call("GET", "/tasks", query_string="status=Created").json["total"] == 1


BAD_PAGES = ["limit=0", "limit=-1", "limit=x", "limit=5000", "limit=1001", "limit=", "limit=1.5",
             "limit=" + "9" * 5000, "offset=-1", "offset=x", "offset=", "offset=1000000001"]


@pytest.mark.parametrize("path", ["/tasks", "/executions"])
@pytest.mark.parametrize("query", BAD_PAGES)
def test_bad_limit_or_offset(api, path, query):
    create(api)
    with unchanged(api):
        assert_error(api.call("GET", path, query_string=query), 400, query.split("=")[0])


@pytest.mark.parametrize("path,query,field", [
    ("/tasks", "foo=1", "foo"),
    ("/tasks", "Status=Created", "Status"),
    ("/tasks", "task_id=x", "task_id"),
    ("/executions", "owner=a", "owner"),
    ("/tasks/{id}", "verbose=1", "verbose"),
    ("/tasks/{id}", "wait=x", "wait"),
    ("/tasks/{id}", "wait=-1", "wait"),
    ("/tasks/{id}", "wait=61", "wait"),
    ("/tasks/{id}", "wait=nan", "wait"),
    ("/tasks/{id}", "wait=inf", "wait"),
])
def test_bad_query_parameters(api, path, query, field):
    task = create(api)
    with unchanged(api):
        assert_error(api.call("GET", path.format(id=task["id"]), query_string=query), 400, field)


# -- 401 and 403 -----------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer ", "Bearer wrong-token",
                                           "Basic " + ADMIN_TOKEN, "Token " + ADMIN_TOKEN,
                                           ADMIN_TOKEN, "Bearer " + ADMIN_TOKEN + "x"])
@pytest.mark.parametrize("method,path,body", [
    ("GET", "/tasks", None), ("POST", "/tasks", ECHO), ("GET", "/agents", None),
    ("POST", "/heartbeat", {"client": "a"}), ("POST", "/agent/work", {"client": "a", "wait": 0}),
    ("GET", "/plugins", None), ("GET", "/plugins/echo", None), ("GET", "/executions", None),
])
def test_401_without_a_valid_bearer_token(api, authorization, method, path, body):
    create(api)
    headers = {"Authorization": authorization} if authorization is not None else {}
    with unchanged(api):
        r = api.call(method, path, body, token=None, headers=headers)
        assert_error(r, 401)
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_scheme_is_case_insensitive(api):
    r = api.call("GET", "/tasks", token=None, headers={"Authorization": "bearer " + ADMIN_TOKEN})
    assert r.status_code == 200


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/tasks", ECHO), ("GET", "/tasks", None), ("GET", "/tasks/{id}", None),
    ("PUT", "/tasks/{id}", {"args": [1]}), ("DELETE", "/tasks/{id}", None),
    ("DELETE", "/tasks/nosuch", None), ("GET", "/agents", None), ("GET", "/executions", None),
    ("GET", "/executions/1", None),
])
def test_403_agent_token_on_admin_routes(api, method, path, body):
    task = create(api)
    with unchanged(api):
        assert_error(api.call(method, path.format(id=task["id"]), body, token=AGENT_TOKEN), 403)


def test_admin_token_may_use_agent_routes(api):
    assert api.call("POST", "/heartbeat", {"client": "a"}).status_code == 200
    assert api.call("GET", "/plugins").status_code == 200
    assert api.call("POST", "/agent/work", {"client": "a", "wait": 0}).status_code == 200


# -- 404 and 405 ------------------------------------------------------------------------


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/tasks/nosuch", None), ("PUT", "/tasks/nosuch", {"args": []}),
    ("DELETE", "/tasks/nosuch", None), ("GET", "/tasks/" + "0" * 32, None),
    ("GET", "/tasks/" + "x" * 5000, None), ("GET", "/nosuch", None), ("GET", "/tasks/a/b", None),
    ("GET", "/plugins/nosuch", None), ("GET", "/plugins/_private", None),
    ("GET", "/plugins/os.path", None), ("GET", "/executions/999", None),
    ("GET", "/executions/0", None), ("GET", "/executions/-1", None), ("GET", "/executions/abc", None),
])
def test_404(api, method, path, body):
    create(api)
    with unchanged(api):
        message = assert_error(api.call(method, path, body), 404)
    assert len(message) < 300


def test_404_unknown_route_needs_no_token(api):
    assert_error(api.call("GET", "/nosuch", token=None), 404)


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/health"), ("POST", "/health"), ("PATCH", "/tasks"), ("DELETE", "/tasks"),
    ("PUT", "/tasks"), ("POST", "/tasks/{id}"), ("PATCH", "/tasks/{id}"),
    ("GET", "/heartbeat"), ("GET", "/agent/work"), ("GET", "/agent/results"),
    ("POST", "/agents"), ("DELETE", "/plugins/echo"), ("POST", "/executions"),
])
def test_405_wrong_method(api, method, path):
    task = create(api)
    with unchanged(api):
        r = api.call(method, path.format(id=task["id"]), ECHO if method != "GET" else None)
        assert_error(r, 405)
    assert method not in r.headers["Allow"]


# -- 413 ---------------------------------------------------------------------------------


def _body_of_size(size):
    head, tail = b'{"plugin": "echo", "action": "echo", "args": ["', b'"]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_body_of_exactly_1_mib_is_accepted(api):
    r = raw(api, "POST", "/tasks", _body_of_size(MAX_BODY))
    assert r.status_code == 201


@pytest.mark.parametrize("route,token,limit", [
    ("/tasks", ADMIN_TOKEN, MAX_BODY), ("/heartbeat", AGENT_TOKEN, MAX_BODY),
    ("/agent/results", AGENT_TOKEN, 12 << 20),  # results carry their runs' output
])
def test_413_body_over_the_limit(api, route, token, limit):
    create(api)
    with unchanged(api):
        assert_error(raw(api, "POST", route, _body_of_size(limit + 1), token=token), 413)


def test_413_on_declared_length_alone(api):
    with unchanged(api):
        assert_error(raw(api, "POST", "/tasks", b'{"plugin": "echo", "action": "echo"}',
                         headers={"Content-Length": str(2 * MAX_BODY)}), 413)


def test_body_without_content_length_is_not_read(api):
    """Under WSGI a body is read only up to CONTENT_LENGTH; without one it is empty."""
    with unchanged(api):
        r = raw(api, "POST", "/tasks", _body_of_size(MAX_BODY + 1),
                headers={"Transfer-Encoding": "chunked"}, extras={"CONTENT_LENGTH": ""})
        assert "empty" in assert_error(r, 400)


def test_413_chunked_body_over_1_mib_through_waitress(api):
    """A real HTTP server (waitress, as in production) de-chunks, then the app refuses."""
    waitress = pytest.importorskip("waitress")
    server = waitress.create_server(api.client.app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(server.effective_port), timeout=30)
        body = _body_of_size(MAX_BODY + 1)
        chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
        with unchanged(api):
            conn.request("POST", "/tasks", body=chunks, encode_chunked=True,
                         headers={"Authorization": "Bearer " + ADMIN_TOKEN,
                                  "Content-Type": "application/json",
                                  "Transfer-Encoding": "chunked"})
            resp = conn.getresponse()
            payload = resp.read()
            assert resp.status == 413, payload[:300]
            assert b'"error"' in payload
        conn.close()
    finally:
        server.close()
        thread.join(5)


# -- agent routes: validation ------------------------------------------------------------


BAD_CLIENTS = [None, "", "a b", "a/b", "a\\b", "a\x00", "x" * 129, 5, True, ["a"]]


@pytest.mark.parametrize("client", BAD_CLIENTS, ids=repr)
@pytest.mark.parametrize("route,extra", [
    ("/heartbeat", {}), ("/agent/work", {"wait": 0}),
    ("/agent/results", {"results": [{"id": 1, "status": "success"}]}),
])
def test_agent_routes_refuse_bad_client_names(api, client, route, extra):
    create(api)
    [run] = work(api, "a")
    assert run["id"] == 1  # the run the /agent/results case names
    body = dict(extra, client=client) if client is not None else extra
    with unchanged(api):
        assert_error(api.call("POST", route, body, token=AGENT_TOKEN), 400, "client")


@pytest.mark.parametrize("field,value", [
    ("capacity", -1), ("capacity", "x"), ("capacity", True), ("capacity", 1.5),
    ("capacity", 1025), ("capacity", None), ("wait", -1), ("wait", "x"), ("wait", True),
    ("wait", 3601),
])
def test_agent_work_refuses_bad_fields(api, field, value):
    create(api)
    with unchanged(api):
        assert_error(api.call("POST", "/agent/work", {"client": "a", "wait": 0, field: value},
                              token=AGENT_TOKEN), 400, field)


@pytest.mark.parametrize("field,value", [
    ("hostname", 5), ("hostname", "h" * 257), ("ip", ["x"]), ("version", {}),
    ("concurrency", 0), ("concurrency", "x"), ("concurrency", False),
])
def test_heartbeat_refuses_bad_fields(api, field, value):
    with unchanged(api):
        assert_error(api.call("POST", "/heartbeat", {"client": "a", field: value},
                              token=AGENT_TOKEN), 400, field)
    assert api.call("GET", "/agents").json["agents"] == []


BAD_RESULTS = [
    None, [], "x", {"id": 1}, [None], ["x"], [{"status": "success"}],
    [{"id": 0, "status": "success"}], [{"id": "1", "status": "success"}],
    [{"id": True, "status": "success"}], [{"id": 1.0, "status": "success"}],
    # One item without a usable id refuses the whole batch, the good item included.
    [{"id": 1, "status": "success"}, {"id": "2", "status": "success"}],
    [{"id": 1, "status": "success"}] * 1001,
]


@pytest.mark.parametrize("results", BAD_RESULTS, ids=lambda r: repr(r)[:60])
def test_agent_results_refuses_batches_it_cannot_attribute(api, results):
    create(api)
    [run] = work(api, "a")
    assert run["id"] == 1
    body = {"client": "a"}
    if results is not None:
        body["results"] = results
    with unchanged(api):
        assert_error(api.call("POST", "/agent/results", body, token=AGENT_TOKEN), 400, "results")


@pytest.mark.parametrize("item, why", [
    ({"id": 1}, "status"), ({"id": 1, "status": "done"}, "status"),
    ({"id": 1, "status": "running"}, "status"), ({"id": 1, "status": "Success"}, "status"),
    ({"id": 1, "status": "success", "result": "x" * (1 << 20)}, "larger"),
])
def test_a_bad_report_settles_its_run_as_failed_saying_why(api, item, why):
    task = create(api)
    [run] = work(api, "a")
    r = api.call("POST", "/agent/results", {"client": "a", "results": [item]}, token=AGENT_TOKEN)
    assert r.status_code == 200 and r.json == {"acked": [1], "rejected": []}
    done = get_task(api, task["id"])
    assert done["status"] == "failed"
    error = done["result"]["error"]
    assert error["type"] == "BadReport" and why in error["message"]


def test_bad_output_and_duration_are_dropped_not_fatal(api):
    task = create(api)
    [run] = work(api, "a")
    r = api.call("POST", "/agent/results", {"client": "a", "results": [
        {"id": run["id"], "status": "success", "result": 1, "output": 5, "duration": -1}]},
        token=AGENT_TOKEN)
    assert r.json["acked"] == [run["id"]]
    execution = api.call("GET", "/executions/%d" % run["id"]).json
    assert execution["status"] == "success" and execution["output"] is None
    assert execution["duration"] is None
    assert get_task(api, task["id"])["result"] == 1


def test_results_may_carry_more_than_a_mebibyte_of_output(api):
    tasks = [create(api) for _ in range(3)]
    runs = work(api, "a", capacity=3)
    items = [{"id": r["id"], "status": "success", "result": None, "output": "o" * (1 << 20)}
             for r in runs]
    r = api.call("POST", "/agent/results", {"client": "a", "results": items}, token=AGENT_TOKEN)
    assert r.status_code == 200 and sorted(r.json["acked"]) == sorted(x["id"] for x in runs)
    assert all(get_task(api, t["id"])["status"] == "success" for t in tasks)


def test_agent_results_unknown_run_is_rejected_not_an_error(api):
    with unchanged(api):
        r = api.call("POST", "/agent/results",
                     {"client": "a", "results": [{"id": 12345, "status": "failed"}]},
                     token=AGENT_TOKEN)
    assert r.status_code == 200
    assert r.json == {"acked": [], "rejected": [{"id": 12345, "reason": "unknown run"}]}


# -- inputs that once slipped through: each is refused and changes nothing -------------


@pytest.mark.parametrize("body", [
    b'{"plugin": "echo", "action": "echo", "args": ["\\ud800"]}',
    b'{"plugin": "echo", "action": "echo", "kwargs": {"\\udc00": 1}}',
])
def test_lone_surrogate_in_task_is_400_not_500(api, body):
    """Once a bug: a lone UTF-16 surrogate escape is valid JSON syntax but cannot be stored
    as UTF-8; POST /tasks answers 500 (UnicodeEncodeError in the store)."""
    with unchanged(api):
        r = raw(api, "POST", "/tasks", body)
        assert r.status_code == 400, (r.status_code, r.text)
        assert_error(r, 400, r.json["error"]["field"])


def test_lone_surrogate_in_put_is_400_not_500(api):
    """Once a bug: PUT /tasks/{id} with a lone surrogate in kwargs answers 500."""
    task = create(api)
    with unchanged(api):
        r = raw(api, "PUT", "/tasks/" + task["id"], b'{"args": ["\\ud800"]}')
        assert r.status_code == 400, (r.status_code, r.text)


def test_lone_surrogate_in_heartbeat_is_400_not_500(api):
    """Once a bug: POST /heartbeat with hostname "\\ud800" answers 500."""
    with unchanged(api):
        r = raw(api, "POST", "/heartbeat", b'{"client": "a", "hostname": "\\ud800"}',
                token=AGENT_TOKEN)
        assert_error(r, 400, None)  # refused as a body that cannot be stored


def test_lone_surrogate_in_results_is_400_not_500(api):
    """Once a bug: POST /agent/results with output "\\ud800" answers 500 (the batch is lost)."""
    create(api)
    [run] = work(api, "a")
    with unchanged(api):
        r = raw(api, "POST", "/agent/results",
                b'{"client": "a", "results": [{"id": %d, "status": "success", '
                b'"output": "\\ud800"}]}' % run["id"], token=AGENT_TOKEN)
        assert_error(r, 400, None)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_standard_json_numbers_are_refused_in_tasks(api, literal):
    """Once a bug: NaN/Infinity are accepted (201), stored, and sent back as bare NaN,
    which makes every later reply that includes the task invalid JSON."""
    with unchanged(api):
        r = raw(api, "POST", "/tasks", b'{"plugin": "echo", "action": "echo", "args": [%s]}' % literal)
        assert_error(r, 400)


def test_non_standard_json_numbers_are_refused_in_results(api):
    """Once a bug: a result of NaN is acked, then GET /tasks/{id} and /executions send bare NaN
    (invalid JSON); a duration of NaN is silently stored as null."""
    create(api)
    [run] = work(api, "a")
    with unchanged(api):
        r = raw(api, "POST", "/agent/results",
                b'{"client": "a", "results": [{"id": %d, "status": "success", "result": NaN}]}'
                % run["id"], token=AGENT_TOKEN)
        assert_error(r, 400)


def test_huge_execution_id_is_404_not_500(api):
    """Once a bug: GET /executions/99999999999999999999 answers 500 (OverflowError binding
    an integer above 2**63-1)."""
    assert_error(api.call("GET", "/executions/99999999999999999999"), 404)


def test_huge_run_id_in_results_is_not_500(api):
    """Once a bug: POST /agent/results with an id above 2**63-1 answers 500 (OverflowError);
    no run can have such an id, so it is a 400 naming the results."""
    create(api)
    [run] = work(api, "a")
    with unchanged(api):
        r = api.call("POST", "/agent/results",
                     {"client": "a", "results": [{"id": 2 ** 70, "status": "success"}]},
                     token=AGENT_TOKEN)
    assert_error(r, 400, "results")


@pytest.mark.parametrize("name", ["ALL", "Anyone"])
@pytest.mark.parametrize("route", ["/heartbeat", "/agent/work"])
def test_reserved_owner_words_are_not_agent_names(api, name, route):
    """Once a bug: "ALL" and "Anyone" are accepted as agent names (the agent's own settings
    refuse them).  An agent called "ALL" that asks for work claims a whole ALL task as a
    single run: the task ends "Done" with executor "ALL" and one execution."""
    task = create(api, owner="ALL")  # no agents online: it waits in Created
    with unchanged(api):
        assert_error(api.call("POST", route, {"client": name, "wait": 0}, token=AGENT_TOKEN),
                     400, "client")
    assert get_task(api, task["id"])["status"] == "Created"


def test_put_owner_to_all_fans_out_to_online_agents(api):
    """Once a bug: PUT {"owner": "ALL"} on a Created task while agents are online leaves it in
    Created: fan-out only happens at creation, when an agent comes (back) online, or when
    a start time falls due.  Steadily online agents never get a run."""
    taking_work(api, "a", "b")
    task = create(api, owner="nobody")
    r = api.call("PUT", "/tasks/" + task["id"], {"owner": "ALL"})
    assert r.status_code == 200
    heartbeat(api, "a", "b")  # still online: no "came online" event
    assert [x["task_id"] for x in work(api, "a")] == [task["id"]]
    assert [x["task_id"] for x in work(api, "b")] == [task["id"]]


def test_a_restarted_agent_releases_the_requests_its_old_process_left(api):
    assert api.heartbeat("a", instance="old").status_code == 200
    answer = held_ask(api, {"client": "a", "instance": "old", "wait": 20},
                      "the old process's ask held")
    assert api.heartbeat("a", instance="new").status_code == 200
    r = answer()  # released, not held for 20 s
    assert work_reply(r) == {"runs": [], "waited": True, "cancel": []}
    assert api.dispatcher.waiting() == 0


@pytest.mark.parametrize("value", [0, -1, "10", True, 10 ** 8, [1]])
def test_a_bad_timeout_is_refused(api, value):
    with unchanged(api):
        assert_error(api.call("POST", "/tasks", dict(ECHO, timeout=value)), 400, "timeout")


def test_the_run_carries_the_tasks_timeout_or_the_servers_default(tmp_path, store, api):
    strict = type(api)(tmp_path / "strict", store, RUN_TIMEOUT=30)
    assert create(strict, timeout=2.5)["timeout"] == 2.5
    create(strict)
    runs = work(strict, "a", capacity=2)
    assert sorted(r["timeout"] for r in runs) == [2.5, 30]


def test_cancel_flags_a_running_run_for_its_agent_once(api):
    heartbeat(api, "a")
    task = create(api, owner="a")
    [run] = work(api, "a")
    r = api.call("POST", "/tasks/%s/cancel" % task["id"])
    assert r.status_code == 200 and r.json["status"] == "Active"
    reply = api.call("POST", "/agent/work", {"client": "a", "capacity": 0, "wait": 0},
                     token=AGENT_TOKEN).json
    assert reply["cancel"] == [run["id"]]
    again = api.call("POST", "/agent/work", {"client": "a", "capacity": 0, "wait": 0,
                                             "stopping_runs": [run["id"]]}, token=AGENT_TOKEN)
    assert again.json["cancel"] == []  # it said it is stopping it: not asked twice
    report(api, "a", run["id"], status="cancelled", result={"error": {"type": "Cancelled"}})
    assert get_task(api, task["id"])["status"] == "cancelled"
    assert_error(api.call("POST", "/tasks/%s/cancel" % task["id"]), 409)
    assert_error(api.call("POST", "/tasks/none/cancel"), 404)
    assert_error(api.call("POST", "/tasks/%s/cancel" % task["id"], token=AGENT_TOKEN), 403)


def test_a_locked_database_is_a_503_that_says_so(api, tmp_path):
    import apsw

    other = apsw.Connection(str(tmp_path / "octopus.db"))
    other.execute("BEGIN EXCLUSIVE")
    api.store._db._writer.set_busy_timeout(50)  # not the 5 s a real server waits
    try:
        with unchanged(api):
            r = api.call("POST", "/tasks", ECHO)
            assert_error(r, 503)
        assert "busy" in r.json["error"]["message"] and r.headers["Retry-After"] == "5"
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert api.call("POST", "/tasks", ECHO).status_code == 201
