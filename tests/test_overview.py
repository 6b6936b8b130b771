"""Routes the dashboard reads: /stats, /schedule/preview, and text search in /tasks."""
from datetime import datetime

import pytest

from octopus import schedule
from octopus.timeutil import iso, parse_iso
from test_api import assert_error, create, heartbeat, report, taking_work, unchanged, work


def test_stats_count_tasks_agents_and_runs_by_outcome_per_bucket(api, clock):
    for outcome in ("success", "failed", "success"):
        heartbeat(api, "a")
        create(api, owner="a")
        [run] = work(api, "a")
        report(api, "a", run["id"], status=outcome)
        clock.advance(600)  # ten minutes apart
    create(api, owner="b")
    r = api.call("GET", "/stats?hours=1&buckets=6")
    assert r.status_code == 200
    stats = r.json
    assert stats["tasks"] == {"success": 2, "failed": 1, "Created": 1}
    assert stats["agents"] == {"online": 0, "offline": 1}  # 10 minutes without a heartbeat
    runs = stats["runs"]
    assert runs["bucket_seconds"] == 600 and len(runs["buckets"]) == 6
    counts = [{k: v for k, v in b.items() if k != "start"} for b in runs["buckets"]]
    assert counts[3:] == [{"success": 1}, {"failed": 1}, {"success": 1}]
    assert all(parse_iso(b["start"]) for b in runs["buckets"])


@pytest.mark.parametrize("query, field", [
    ("hours=0", "hours"), ("hours=x", "hours"), ("buckets=0", "buckets"),
    ("buckets=1000", "buckets"), ("since=1", "since")])
def test_stats_refuses_bad_parameters(api, query, field):
    assert_error(api.call("GET", "/stats?" + query), 400, field)


def test_schedule_preview_gives_the_next_cron_times_in_a_zone(api, clock):
    r = api.call("GET", "/schedule/preview", params={
        "type": "Scheduled", "interval": "30 9 * * MON-FRI", "timezone": "Europe/Paris"})
    assert r.status_code == 200, r.text
    times = [datetime.fromtimestamp(parse_iso(t), schedule.zone("Europe/Paris"))
             for t in r.json["next"]]
    assert len(times) == 5 and times == sorted(times)
    assert all((t.hour, t.minute) == (9, 30) and t.weekday() < 5 for t in times)
    assert parse_iso(r.json["next"][0]) > clock()


def test_schedule_preview_of_an_interval_starts_at_its_start_time(api, clock):
    start = iso(clock() + 3600)
    r = api.call("GET", "/schedule/preview", params={
        "type": "Interval", "interval": "90", "execution_start_time": start, "count": "3"})
    assert r.json["next"] == [start, iso(clock() + 3690), iso(clock() + 3780)]


@pytest.mark.parametrize("params, field", [
    ({"interval": "61 * * * *"}, "interval"),
    ({"interval": "* * * *"}, "interval"),
    ({}, "interval"),
    ({"interval": "0 9 * * *", "timezone": "Nowhere/Land"}, "timezone"),
    ({"type": "Adhoc", "interval": "5"}, "type"),
    ({"type": "Interval", "interval": "0"}, "interval"),
    ({"interval": "0 9 * * *", "count": "99"}, "count"),
    ({"interval": "0 9 * * *", "execution_start_time": "tomorrow"}, "execution_start_time"),
    ({"interval": "0 9 * * *", "cron": "x"}, "cron"),
])
def test_schedule_preview_names_the_bad_field(api, params, field):
    assert_error(api.call("GET", "/schedule/preview", params=params), 400, field)


def test_task_search_matches_plugin_action_owner_and_arguments(api):
    a = create(api, args=["needle-in-args"])
    b = create(api, owner="web-7")
    c = create(api, kwargs={"path": "/tmp/100%_sure"})
    found = lambda q: {t["id"] for t in api.call("GET", "/tasks", params={"q": q}).json["tasks"]}
    assert found("NEEDLE") == {a["id"]}
    assert found("web-7") == {b["id"]}
    assert found("100%_") == {c["id"]}  # % and _ are literal, not wildcards
    assert found("%") == {c["id"]}
    assert found(a["id"][:12]) == {a["id"]}
    assert found("echo") == {a["id"], b["id"], c["id"]}
    r = api.call("GET", "/tasks", params={"q": "echo", "owner": "web-7"})
    assert r.json["total"] == 1
    assert_error(api.call("GET", "/tasks", params={"q": "x" * 201}), 400, "q")


def test_a_task_can_be_read_with_only_its_newest_runs(api, clock):
    task = create(api, type="Interval", interval=60, owner="a", overlap="parallel")
    for _ in range(3):
        clock.advance(60)
        api.store.hand_out([task["id"]])
    every = [e["id"] for e in api.call("GET", "/tasks/" + task["id"]).json["executions"]]
    assert len(every) == 4
    r = api.call("GET", "/tasks/%s?executions=0" % task["id"])
    assert r.status_code == 200 and r.json["executions"] == []
    newest = api.call("GET", "/tasks/%s?executions=2" % task["id"]).json["executions"]
    assert [e["id"] for e in newest] == every[-2:]  # the newest, oldest first
    assert_error(api.call("GET", "/tasks/%s?executions=1001" % task["id"]), 400, "executions")


def test_head_of_the_dashboard_answers(api):
    r = api.call("HEAD", "/", token=None)
    assert r.status_code == 200 and "Content-Security-Policy" in r.headers


def test_dashboard_files_are_revalidated_so_an_upgrade_is_never_mixed(api):
    for path in ("/", "/static/app.js"):
        r = api.call("GET", path, token=None)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-cache"


# -- bulk create ------------------------------------------------------------------

def test_a_list_of_tasks_is_created_in_one_request(api):
    taking_work(api, "a")
    body = [{"plugin": "echo", "action": "echo", "args": [i]} for i in range(5)]
    body.append({"plugin": "echo", "action": "echo", "owner": "ALL"})
    r = api.call("POST", "/tasks", body)
    assert r.status_code == 201, r.text
    tasks = r.json["tasks"]
    assert [t["args"] for t in tasks[:5]] == [[i] for i in range(5)]
    assert tasks[5]["status"] == "Active"  # fanned out to the online agent at once
    assert api.store.list_tasks()[1] == 6


@pytest.mark.parametrize("body, field", [
    ([], "tasks"),
    ([{"plugin": "echo", "action": "echo"}] * 1001, "tasks"),
    ([{"plugin": "echo", "action": "echo"}, 5], "tasks[1]"),
    ([{"plugin": "echo", "action": "echo"}, {"plugin": "nope", "action": "x"}], "tasks[1].plugin"),
    ([{"plugin": "echo", "action": "echo", "type": "Interval", "interval": 0}], "tasks[0].interval"),
])
def test_a_bad_task_in_a_list_refuses_the_whole_list(api, body, field):
    with unchanged(api):
        assert_error(api.call("POST", "/tasks", body), 400, field)


def test_totals_are_right_on_short_pages_and_past_the_end(api):
    for i in range(5):
        create(api, args=[i])
    listing = lambda q: api.call("GET", "/tasks?" + q).json
    assert [listing(q)["total"] for q in ("limit=10", "limit=2&offset=4", "limit=2&offset=9",
                                          "limit=2", "q=nothing-like-it")] == [5, 5, 5, 5, 0]
    assert len(listing("limit=2&offset=4")["tasks"]) == 1
