"""JSON nested more than 64 levels is refused where it comes in (a 400 naming
the field for a request, a BadReport failure for an agent's report), and a
deep value already stored never makes a read answer 500."""
import pytest

from test_api import (AGENT_TOKEN, ECHO, assert_error, create, get_task, raw, report,
                      unchanged, work)


def nested(levels):
    """JSON text of ``levels`` arrays one inside the other."""
    return "[" * levels + "]" * levels


def body(**fields):
    parts = ['"plugin": "echo"', '"action": "echo"'] + [
        '"%s": %s' % (k, v) for k, v in fields.items()]
    return ("{" + ", ".join(parts) + "}").encode()


@pytest.mark.parametrize("levels", [65, 200, 978, 984, 5000])
def test_a_task_nested_too_deep_is_refused_naming_the_field(api, levels):
    create(api)
    with unchanged(api):
        message = assert_error(raw(api, "POST", "/tasks", body(args=nested(levels))), 400,
                               "args")
        assert "64" in message
        deep_kwargs = '{"k": %s}' % nested(levels - 1)
        assert_error(raw(api, "POST", "/tasks", body(kwargs=deep_kwargs)), 400, "kwargs")


def test_sixty_four_levels_are_taken_and_read_back(api):
    task = create(api, args=[[[]]])
    r = raw(api, "POST", "/tasks", body(args=nested(64)))
    assert r.status_code == 201, r.text
    deep = get_task(api, r.json["id"])
    assert deep["args"] == r.json["args"] and "truncated" not in deep
    listed = api.call("GET", "/tasks").json["tasks"]
    assert [t["truncated"] for t in listed] == [[], []] and listed[1]["id"] == task["id"]


@pytest.mark.parametrize("levels", [65, 2000])
def test_bulk_tasks_and_put_name_the_deep_field(api, levels):
    task = create(api)
    ok = body().decode()
    with unchanged(api):
        bulk = ("[%s, %s]" % (ok, body(args=nested(levels)).decode())).encode()
        assert_error(raw(api, "POST", "/tasks", bulk), 400, "tasks[1].args")
        assert_error(raw(api, "PUT", "/tasks/" + task["id"],
                         ('{"kwargs": {"a": %s}}' % nested(levels)).encode()), 400, "kwargs")
        hostname = ('{"client": "a", "hostname": %s}' % nested(levels)).encode()
        assert_error(raw(api, "POST", "/heartbeat", hostname, token=AGENT_TOKEN), 400,
                     "hostname")


@pytest.mark.parametrize("levels", [65, 900])
def test_a_report_nested_too_deep_fails_the_run_as_bad_report(api, levels):
    task = create(api)
    [run] = work(api, "a")
    deep = ('{"client": "a", "results": [{"id": %d, "status": "success", "result": %s, '
            '"output": "", "duration": 0.1}]}' % (run["id"], nested(levels))).encode()
    r = raw(api, "POST", "/agent/results", deep, token=AGENT_TOKEN)
    assert r.status_code == 200 and r.json["acked"] == [run["id"]], r.text
    ended = get_task(api, task["id"])
    assert ended["status"] == "failed"
    error = ended["executions"][0]["result"]["error"]
    assert error["type"] == "BadReport" and "64 levels" in error["message"]
    # the listings read it too
    assert api.call("GET", "/tasks").status_code == 200
    assert api.call("GET", "/executions").status_code == 200


def test_a_result_of_sixty_four_levels_is_kept(api):
    task = create(api)
    [run] = work(api, "a")
    value = [[]]
    for _ in range(62):
        value = [value]
    report(api, "a", run["id"], result=value)
    assert get_task(api, task["id"])["result"] == value


@pytest.mark.parametrize("levels", [300, 978, 3000])
def test_a_deep_value_already_stored_is_read_as_its_text(api, levels):
    """A database written before the limit may hold one: every read answers
    200, giving the value as its JSON text, named in ``truncated``."""
    task = create(api)
    [run] = work(api, "a")
    report(api, "a", run["id"], result=1)
    text = nested(levels)
    with api.store._db.write() as conn:
        conn.execute("UPDATE tasks SET args = ?, result = ? WHERE id = ?",
                     (text, text, task["id"]))
        conn.execute("UPDATE executions SET result = ? WHERE id = ?", (text, run["id"]))
    one = get_task(api, task["id"])
    assert one["args"] == text and one["result"] == text
    assert sorted(one["truncated"]) == ["args", "result"]
    assert one["executions"][0]["result"] == text[:2048]
    listed = api.call("GET", "/tasks")
    assert listed.status_code == 200, listed.text[:300]
    [item] = listed.json["tasks"]
    assert item["args"] == text[:2048] and sorted(item["truncated"]) == ["args", "result"]
    runs = api.call("GET", "/executions")
    assert runs.status_code == 200 and runs.json["executions"][0]["truncated"] == ["result"]
    whole = api.call("GET", "/executions/%d" % run["id"])
    assert whole.status_code == 200 and whole.json["result"] == text
    found = api.call("GET", "/tasks", query_string="q=echo")
    assert found.status_code == 200 and found.json["total"] == 1


def test_brackets_inside_strings_do_not_count(api):
    text = ["[" * 5000, '\\"[{' * 500, {"{" * 100: "]" * 100}]
    task = create(api, args=text, kwargs={"k": [[[["x"]]]] * 1000})
    assert get_task(api, task["id"])["args"] == text
