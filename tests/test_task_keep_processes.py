"""The task field keep_processes: checked, stored, shown, and handed to the agent."""
import pytest

from octopus.harness import AGENT_TOKEN

ECHO = {"plugin": "echo", "action": "echo"}


@pytest.mark.parametrize("bad", ["yes", 1, 0, None, [], {}])
def test_a_keep_processes_that_is_not_a_boolean_is_refused_naming_the_field(api, bad):
    r = api.call("POST", "/tasks", dict(ECHO, keep_processes=bad))
    assert r.status_code == 400
    error = r.json["error"]
    assert error["field"] == "keep_processes" and "keep_processes" in error["message"]
    assert api.call("GET", "/tasks").json["total"] == 0  # nothing was made


def test_keep_processes_is_false_by_default_shown_and_kept_when_set(api):
    plain = api.call("POST", "/tasks", ECHO).json
    assert plain["keep_processes"] is False
    kept = api.call("POST", "/tasks", dict(ECHO, keep_processes=True)).json
    assert kept["keep_processes"] is True
    assert api.call("GET", "/tasks/" + kept["id"]).json["keep_processes"] is True
    assert api.call("GET", "/tasks/" + plain["id"]).json["keep_processes"] is False
    listed = {t["id"]: t["keep_processes"] for t in api.call("GET", "/tasks").json["tasks"]}
    assert listed == {plain["id"]: False, kept["id"]: True}


def test_the_run_handed_to_the_agent_carries_keep_processes(api):
    assert api.heartbeat("keeper").status_code == 200
    task = api.call("POST", "/tasks", dict(ECHO, keep_processes=True)).json
    r = api.call("POST", "/agent/work", {"client": "keeper", "capacity": 1, "wait": 0},
                 token=AGENT_TOKEN)
    [run] = r.json["runs"]
    assert run["task_id"] == task["id"] and run["keep_processes"] is True


def test_put_changes_keep_processes_and_refuses_a_bad_one_changing_nothing(api):
    task = api.call("POST", "/tasks", dict(ECHO, owner="nobody-yet")).json
    r = api.call("PUT", "/tasks/" + task["id"], {"keep_processes": True})
    assert r.status_code == 200 and r.json["keep_processes"] is True
    r = api.call("PUT", "/tasks/" + task["id"], {"keep_processes": "false"})
    assert r.status_code == 400 and r.json["error"]["field"] == "keep_processes"
    assert api.call("GET", "/tasks/" + task["id"]).json["keep_processes"] is True
