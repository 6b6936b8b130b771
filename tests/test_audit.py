"""The audit log: every change through the API recorded with who, what, when and from where."""
import pytest

from octopus.harness import ADMIN_TOKEN, AGENT_TOKEN
from tests.test_api import create

PLUGIN = b'"""Audited."""\n\n\ndef hello(name="you"):\n    """Say hello."""\n    return "hello " + name\n'


def entries(api, **params):
    r = api.call("GET", "/audit", params=params)
    assert r.status_code == 200, r.text
    return r.json


def test_each_change_is_recorded_newest_first_with_who_what_and_where(api, tmp_path):
    api.registry.folders.append(str(tmp_path / "uploads"))  # uploads go here, not to the repo
    api.registry.upload_dir = str(tmp_path / "uploads")
    task = create(api)
    assert api.call("PUT", "/tasks/" + task["id"], {"timeout": 5}).status_code == 200
    assert api.call("POST", "/tasks/%s/cancel" % task["id"]).status_code == 200
    assert api.call("DELETE", "/tasks/" + task["id"]).status_code == 204
    assert api.client.simulate_put("/plugins/audited", body=PLUGIN, headers={
        "Authorization": "Bearer " + ADMIN_TOKEN}).status_code == 201
    log = entries(api)["entries"]
    assert [(e["action"], e["target"]) for e in log] == [
        ("plugin.upload", "audited"), ("task.delete", task["id"]), ("task.cancel", task["id"]),
        ("task.update", task["id"]), ("task.create", task["id"])]
    for e in log:
        assert (e["role"], e["actor"], e["address"]) == ("admin", "admin", "127.0.0.1")
        assert e["at"].endswith("Z")
    by_action = {e["action"]: e for e in log}
    assert by_action["task.create"]["detail"] == {"plugin": "echo", "action": "echo",
                                                  "owner": "Anyone", "type": "Adhoc"}
    assert by_action["task.update"]["detail"] == {"changed": ["timeout"]}
    assert by_action["task.cancel"]["detail"] == {"status": "cancelled"}
    assert len(by_action["plugin.upload"]["detail"]["sha256"]) == 64


def test_a_bulk_create_is_one_entry_per_task(api):
    r = api.call("POST", "/tasks", [{"plugin": "echo", "action": "echo"}] * 3)
    assert r.status_code == 201
    ids = {t["id"] for t in r.json["tasks"]}
    assert {e["target"] for e in entries(api, action="task.create")["entries"]} == ids


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/tasks", {"plugin": "nope", "action": "x"}),
    ("POST", "/tasks", [{"plugin": "echo", "action": "echo"}, {"plugin": "nope"}]),
    ("PUT", "/tasks/0123456789abcdef0123456789abcdef", {"timeout": 1}),
    ("DELETE", "/tasks/0123456789abcdef0123456789abcdef", None),
    ("POST", "/tasks/0123456789abcdef0123456789abcdef/cancel", None),
])
def test_a_refused_change_records_nothing(api, method, path, body):
    r = api.call(method, path, body)
    assert 400 <= r.status_code < 500
    assert entries(api)["entries"] == []


def test_an_agents_own_task_is_recorded_as_the_agents(api):
    token = api.call("POST", "/agent/enroll", {"client": "a1"}, token=AGENT_TOKEN).json["token"]
    r = api.call("POST", "/agent/tasks", {"client": "a1", "plugin": "echo", "action": "echo"},
                 token=token)
    assert r.status_code == 201, r.text
    e = entries(api, action="task.create")["entries"][0]
    assert (e["target"], e["role"], e["actor"]) == (r.json["id"], "agent", "a1")


def test_reading_the_log_needs_the_admin_token(api):
    assert api.call("GET", "/audit", token=AGENT_TOKEN).status_code == 403
    assert api.call("GET", "/audit", token=None).status_code == 401
    assert api.call("GET", "/audit", token=ADMIN_TOKEN).status_code == 200


def test_pages_go_back_with_next_before_and_filters_narrow(api):
    tasks = [create(api, args=[i]) for i in range(5)]
    api.call("DELETE", "/tasks/" + tasks[0]["id"])
    first = entries(api, limit=2)
    assert [e["target"] for e in first["entries"]] == [tasks[0]["id"], tasks[4]["id"]]
    second = entries(api, limit=2, before=first["next_before"])
    assert [e["target"] for e in second["entries"]] == [tasks[3]["id"], tasks[2]["id"]]
    third = entries(api, limit=2, before=second["next_before"])
    assert [e["target"] for e in third["entries"]] == [tasks[1]["id"], tasks[0]["id"]]
    assert third["next_before"] is None
    assert [e["action"] for e in entries(api, target=tasks[0]["id"])["entries"]] == [
        "task.delete", "task.create"]
    assert entries(api, actor="someone-else")["entries"] == []


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=x", "limit"), ("before=-1", "before"), ("bogus=1", "bogus")])
def test_bad_parameters_are_refused(api, query, field):
    r = api.call("GET", "/audit?" + query)
    assert r.status_code == 400 and r.json["error"]["field"] == field


def test_retention_deletes_old_entries(store, clock):
    store.add_audit([{"role": "admin", "actor": "admin", "action": "task.create", "target": "t"}])
    clock.advance(10)
    store.add_audit([{"role": "admin", "actor": "admin", "action": "task.delete", "target": "t"}])
    from octopus.timeutil import iso

    assert store.delete_old_audit(iso(clock() - 5), 100) == 1
    assert [e["action"] for e in store.list_audit()[0]] == ["task.delete"]


def test_enrolling_revoking_and_forgetting_an_agent_are_recorded(api):
    r = api.call("POST", "/agent/enroll", {"client": "a1"}, token=AGENT_TOKEN)
    assert r.status_code == 201, r.text
    assert api.call("POST", "/agents/a1/revoke").status_code == 200
    assert api.call("DELETE", "/agents/a1").status_code == 204
    log = entries(api)["entries"]
    assert [(e["action"], e["target"], e["actor"]) for e in log] == [
        ("agent.forget", "a1", "admin"), ("agent.revoke", "a1", "admin"),
        ("agent.enroll", "a1", "agent")]
    assert "token" not in str(log[-1]["detail"])


@pytest.mark.parametrize("trusted, seen", [("127.0.0.1", "203.0.113.7"), ("", "127.0.0.1")])
def test_the_address_behind_a_trusted_proxy_is_recorded_and_no_other(cluster, trusted, seen):
    cluster.start_server(env={"OCTOPUS_TRUSTED_PROXY": trusted})
    api = cluster.api()
    status, task = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo"},
                            headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 201
    _, log = api.call("GET", "/audit")
    assert [(e["target"], e["address"]) for e in log["entries"]] == [(task["id"], seen)]


def test_a_query_parameter_given_twice_is_refused(api):
    for path in ("/audit?before=5&before=6", "/tasks?limit=1&limit=2", "/executions?status=a&status=b"):
        r = api.call("GET", path)
        assert r.status_code == 400 and "more than once" in r.json["error"]["message"], path
