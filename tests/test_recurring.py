"""Interval and Scheduled tasks, overlap, catch-up, retries: store and
scheduler steps driven by a fake clock (no sleeps)."""
from datetime import datetime, timezone

import pytest

from octopus import schedule
from octopus.timeutil import iso, parse_iso
from test_scheduler import make

BASE = {"plugin": "echo", "action": "echo", "args": [], "kwargs": {}, "owner": "Anyone",
        "type": "Adhoc", "execution_start_time": None, "execution_end_time": None,
        "interval": None, "timezone": None, "timeout": None, "overlap": "skip",
        "catch_up": "once", "max_retries": 0, "retry_delay": 10, "retry_backoff": 2}


def every(seconds, **fields):
    return dict(BASE, type="Interval", interval=str(seconds), **fields)


def runs(store, task_id):
    return store.get_task(task_id, True)["executions"]


def finish(store, agent, run, status="success"):
    return store.finish_runs(agent, [{"id": run["id"], "status": status, "result": status,
                                      "lease": run["lease"]}])


# -- slots ----------------------------------------------------------------------

def test_interval_slots_follow_the_anchor():
    assert schedule.next_interval(10, 100, 95) == 100
    assert schedule.next_interval(10, 100, 100) == 110
    assert schedule.next_interval(10, 100, 125.5) == 130


def test_cron_in_a_zone_handles_the_daylight_saving_gap_and_repeat():
    paris = schedule.zone("Europe/Paris")
    # 2026-03-29: 02:00-03:00 does not exist in Paris; a 02:30 job runs at 03:00 local
    before = datetime(2026, 3, 29, 0, 0, tzinfo=timezone.utc).timestamp()
    fired = datetime.fromtimestamp(schedule.next_cron("30 2 * * *", before, paris), paris)
    assert (fired.day, fired.hour, fired.minute) == (29, 3, 0)
    # 2026-10-25: 02:30 happens twice in Paris; the job runs once that day
    start = datetime(2026, 10, 24, 22, 0, tzinfo=timezone.utc).timestamp()
    first = schedule.next_cron("30 2 * * *", start, paris)
    times = [first, schedule.next_cron("30 2 * * *", first, paris)]
    days = [datetime.fromtimestamp(t, paris).day for t in times]
    assert days == [25, 26]


def test_bad_cron_and_zone_are_refused():
    for expr in ("* * * *", "61 * * * *", "0 0 31 2 *", "x", "* * * * * *"):
        with pytest.raises(schedule.ScheduleError):
            schedule.check_cron(expr)
    for name in ("Mars/Olympus", "../etc/passwd", "/etc/localtime", "x" * 100):
        with pytest.raises(schedule.ScheduleError):
            schedule.zone(name)


# -- firing ---------------------------------------------------------------------

def test_an_interval_task_runs_every_interval_in_its_window_then_is_done(store, clock):
    scheduler, dispatcher = make(store, clock)
    store.heartbeat("a", {"concurrency": 4})
    start = clock() + 5
    task, woken = store.create_task(every(10, execution_start_time=iso(start),
                                          execution_end_time=iso(start + 25)))
    assert task["status"] == "Created" and task["next_run_at"] == iso(start) and woken == []
    for slot in (start, start + 10, start + 20):
        clock.now = slot - 0.05
        scheduler.release_due(clock())
        assert [r["due_at"] for r in runs(store, task["id"])].count(iso(slot)) == 0
        clock.now = slot + 0.05
        scheduler.release_due(clock())
        [run] = store.claim_runs("a", 4)
        assert run["task_id"] == task["id"] and run["attempt"] == 1
        finish(store, "a", run)
        current = store.get_task(task["id"])
        if slot < start + 20:
            assert current["status"] == "Active" and current["next_run_at"] == iso(slot + 10)
    done = store.get_task(task["id"], True)
    assert done["status"] == "Done" and done["next_run_at"] is None
    assert [r["due_at"] for r in done["executions"]] == [iso(s) for s in (start, start + 10,
                                                                           start + 20)]
    assert all(r["status"] == "success" for r in done["executions"])


def test_a_due_recurring_task_fires_once_however_often_it_is_looked_at(store, clock):
    scheduler, _ = make(store, clock)
    task, _ = store.create_task(every(60, owner="a"))
    for _ in range(3):
        scheduler.release_due(clock())
        store.hand_out([task["id"]])
    assert len(runs(store, task["id"])) == 1


def test_a_scheduled_task_fires_at_its_cron_times_in_its_zone(store, clock):
    scheduler, _ = make(store, clock)
    task, _ = store.create_task(dict(BASE, type="Scheduled", interval="0 9 * * *",
                                     timezone="America/New_York", owner="a"))
    first = parse_iso(task["next_run_at"])
    local = datetime.fromtimestamp(first, schedule.zone("America/New_York"))
    assert (local.hour, local.minute) == (9, 0) and first > clock()
    clock.now = first
    scheduler.release_due(clock())
    assert [r["status"] for r in runs(store, task["id"])] == ["queued"]
    assert parse_iso(store.get_task(task["id"])["next_run_at"]) == first + 86400


def test_all_recurring_makes_a_run_per_online_agent_and_skips_with_none(store, clock):
    scheduler, _ = make(store, clock)
    task, woken = store.create_task(every(10, owner="ALL"))
    assert [(r["client"], r["status"]) for r in runs(store, task["id"])] == [(None, "skipped")]
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 1})
        store.ask_for_work(name)
    clock.advance(10)
    scheduler.release_due(clock())
    assert sorted((r["client"], r["status"]) for r in runs(store, task["id"])[1:]) == [
        ("a", "assigned"), ("b", "assigned")]


# -- overlap --------------------------------------------------------------------

def test_overlap_skip_records_the_slot_as_skipped(store, clock):
    scheduler, _ = make(store, clock)
    store.heartbeat("a", {"concurrency": 4})
    task, _ = store.create_task(every(10))
    [first] = store.claim_runs("a", 4)
    clock.advance(10)
    scheduler.release_due(clock())
    assert [r["status"] for r in runs(store, task["id"])] == ["running", "skipped"]
    assert runs(store, task["id"])[1]["result"] == {"skipped": "the previous run was still going"}
    assert store.claim_runs("a", 4) == []


def test_overlap_queue_starts_the_next_run_when_the_previous_ends(store, clock):
    scheduler, _ = make(store, clock)
    store.heartbeat("a", {"concurrency": 4})
    task, _ = store.create_task(every(10, overlap="queue"))
    [first] = store.claim_runs("a", 4)
    clock.advance(10)
    scheduler.release_due(clock())
    assert [r["status"] for r in runs(store, task["id"])] == ["running", "queued"]
    assert store.claim_runs("a", 4) == []  # waits behind the running one
    acked, _, _, ready = finish(store, "a", first)
    assert ready == [task["id"]]
    [second] = store.claim_runs("a", 4)
    assert second["id"] == runs(store, task["id"])[1]["id"]


def test_overlap_parallel_starts_it_anyway(store, clock):
    scheduler, _ = make(store, clock)
    store.heartbeat("a", {"concurrency": 4})
    task, _ = store.create_task(every(10, overlap="parallel"))
    store.claim_runs("a", 4)
    clock.advance(10)
    scheduler.release_due(clock())
    assert len(store.claim_runs("a", 4)) == 1
    assert [r["status"] for r in runs(store, task["id"])] == ["running", "running"]


# -- catch-up after downtime ------------------------------------------------------

@pytest.mark.parametrize("catch_up, made", [("once", 1), ("all", 5), ("none", 0)])
def test_missed_slots_are_caught_up_by_the_tasks_rule(store, clock, catch_up, made):
    task, _ = store.create_task(every(60, owner="a", catch_up=catch_up, overlap="parallel"))
    assert len(runs(store, task["id"])) == 1
    clock.advance(60 * 5 + 30)  # the server was down through five slots
    scheduler, _ = make(store, clock)
    scheduler.release_due(clock())
    assert len(runs(store, task["id"])) == 1 + made
    nxt = parse_iso(store.get_task(task["id"])["next_run_at"])
    assert clock() < nxt <= clock() + 60


def test_a_window_that_closed_during_downtime_ends_the_task(store, clock):
    task, _ = store.create_task(every(60, owner="a", execution_end_time=iso(clock() + 90)))
    [run] = runs(store, task["id"])
    store.heartbeat("a", {"concurrency": 1})
    [run] = store.claim_runs("a", 1)
    finish(store, "a", run)
    clock.advance(600)
    make(store, clock)[0].release_due(clock())
    late = store.get_task(task["id"], True)
    assert late["next_run_at"] is None and len(late["executions"]) == 2  # 60 s slot caught up
    store.heartbeat("a", {"concurrency": 1})
    [run] = store.claim_runs("a", 1)
    finish(store, "a", run)
    assert store.get_task(task["id"])["status"] == "Done"


def test_the_scheduler_reads_due_tasks_through_the_index(store):
    with store._db.read() as conn:
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM tasks INDEXED BY tasks_recurring "
            "WHERE status IN ('Created', 'Active') AND type != 'Adhoc' AND next_run_at <= ? "
            "ORDER BY next_run_at LIMIT 10", ("x",)).fetchall())
    assert "tasks_recurring" in plan and "SCAN tasks " not in plan + " "


# -- retries --------------------------------------------------------------------

def test_failed_runs_are_retried_with_backoff_then_the_task_fails(store, clock):
    store.retry_max_delay = 25
    scheduler, _ = make(store, clock)
    store.heartbeat("a", {"concurrency": 1})
    task, _ = store.create_task(dict(BASE, max_retries=3, retry_delay=10, retry_backoff=2))
    delays = []
    for attempt in (1, 2, 3, 4):
        store.heartbeat("a", {"concurrency": 1})
        [run] = store.claim_runs("a", 1)
        assert run["attempt"] == attempt
        finish(store, "a", run, "failed")
        if attempt < 4:
            waiting = runs(store, task["id"])[-1]
            assert waiting["status"] == "queued" and waiting["attempt"] == attempt + 1
            delays.append(parse_iso(waiting["due_at"]) - clock())
            assert store.claim_runs("a", 1) == []  # not before its delay
            clock.advance(delays[-1])
            scheduler.release_due(clock())
    assert delays == [10, 20, 25]  # 10 * 2 ** n, capped
    done = store.get_task(task["id"], True)
    assert done["status"] == "failed"
    assert [(r["attempt"], r["status"]) for r in done["executions"]] == [
        (1, "failed"), (2, "failed"), (3, "failed"), (4, "failed")]


def test_an_anyone_retry_may_go_to_another_agent(store, clock):
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 1})
    task, _ = store.create_task(dict(BASE, max_retries=1, retry_delay=0))
    [run] = store.claim_runs("a", 1)
    _, _, _, ready = finish(store, "a", run, "timeout")
    assert ready == [task["id"]]
    assert store.hand_out([task["id"]], ["b"]) == {"b"}
    [again] = store.claim_runs("b", 1)
    assert again["attempt"] == 2
    finish(store, "b", again)
    assert store.get_task(task["id"])["status"] == "success"


def test_a_success_is_not_retried_and_a_cancel_stops_retries(store, clock):
    store.heartbeat("a", {"concurrency": 1})
    task, _ = store.create_task(dict(BASE, max_retries=5, retry_delay=60))
    [run] = store.claim_runs("a", 1)
    finish(store, "a", run, "failed")
    cancelled, agents = store.cancel_task(task["id"])
    assert cancelled["status"] == "cancelled" and agents == set()
    assert [r["status"] for r in runs(store, task["id"])] == ["failed", "cancelled"]
    ok, _ = store.create_task(dict(BASE, max_retries=5, retry_delay=0))
    [run] = store.claim_runs("a", 1)
    finish(store, "a", run, "success")
    clock.advance(60)
    store.heartbeat("a", {"concurrency": 1})
    assert store.claim_runs("a", 1) == []
    assert [r["status"] for r in runs(store, ok["id"])] == ["success"]


# -- cancel ---------------------------------------------------------------------

def test_cancelling_a_recurring_task_stops_it_recurring(store, clock):
    scheduler, _ = make(store, clock)
    store.heartbeat("a", {"concurrency": 1})
    task, _ = store.create_task(every(10))
    [run] = store.claim_runs("a", 1)
    cancelled, agents = store.cancel_task(task["id"])
    assert agents == {"a"} and cancelled["next_run_at"] is None
    assert cancelled["status"] == "Active"  # until its agent has stopped the run
    clock.advance(30)
    scheduler.release_due(clock())
    assert len(runs(store, task["id"])) == 1
    finish(store, "a", run, "cancelled")
    assert store.get_task(task["id"])["status"] == "cancelled"


# -- the API ----------------------------------------------------------------------

from test_api import ECHO, assert_error, create, unchanged  # noqa: E402


@pytest.mark.parametrize("fields, field", [
    ({"type": "Interval"}, "interval"),
    ({"type": "Interval", "interval": 0}, "interval"),
    ({"type": "Interval", "interval": -5}, "interval"),
    ({"type": "Interval", "interval": 1.5}, "interval"),
    ({"type": "Interval", "interval": "ten"}, "interval"),
    ({"type": "Interval", "interval": True}, "interval"),
    ({"type": "Interval", "interval": 10 ** 12}, "interval"),
    ({"type": "Scheduled", "interval": "* * * *"}, "interval"),
    ({"type": "Scheduled", "interval": "0 0 31 2 *"}, "interval"),
    ({"type": "Scheduled", "interval": "*/5 * * * * *"}, "interval"),
    ({"type": "Scheduled", "interval": 5}, "interval"),
    ({"type": "Scheduled", "interval": "0 9 * * *", "timezone": "Mars/Base"}, "timezone"),
    ({"type": "Scheduled", "interval": "0 9 * * *", "timezone": "../../etc/passwd"}, "timezone"),
    ({"type": "Scheduled", "interval": "0 9 * * *", "timezone": 3}, "timezone"),
    ({"interval": 10}, "interval"),  # an Adhoc task has none
    ({"type": "Interval", "interval": 10, "overlap": "sometimes"}, "overlap"),
    ({"type": "Interval", "interval": 10, "catch_up": "twice"}, "catch_up"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 101}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"retry_delay": -1}, "retry_delay"),
    ({"retry_delay": "soon"}, "retry_delay"),
    ({"retry_backoff": 0.5}, "retry_backoff"),
    ({"retry_backoff": 11}, "retry_backoff"),
    ({"type": "Interval", "interval": 3600, "execution_start_time": "2027-01-01T00:00:00Z",
      "execution_end_time": "2027-01-01T00:00:00Z"}, "execution_end_time"),
    ({"type": "Scheduled", "interval": "0 9 1 1 *", "execution_start_time": "2027-02-01T00:00:00Z",
      "execution_end_time": "2027-03-01T00:00:00Z"}, "execution_end_time"),
])
def test_bad_schedule_fields_are_refused_and_change_nothing(api, fields, field):
    with unchanged(api):
        assert_error(api.call("POST", "/tasks", dict(ECHO, **fields)), 400, field)


def test_recurring_task_json_shows_its_schedule_and_next_run(api, clock):
    task = create(api, type="Scheduled", interval="30  9 * * MON-FRI", timezone="Europe/Paris",
                  overlap="queue", catch_up="all", max_retries=2, retry_delay=5,
                  retry_backoff=3, owner="nobody-yet")
    assert task["interval"] == "30 9 * * MON-FRI" and task["timezone"] == "Europe/Paris"
    assert (task["overlap"], task["catch_up"]) == ("queue", "all")
    assert (task["max_retries"], task["retry_delay"], task["retry_backoff"]) == (2, 5, 3)
    when = datetime.fromtimestamp(parse_iso(task["next_run_at"]), schedule.zone("Europe/Paris"))
    assert (when.hour, when.minute) == (9, 30) and when.weekday() < 5
    assert parse_iso(task["next_run_at"]) > clock()


def test_put_reschedules_a_recurring_task(api, clock):
    task = create(api, type="Interval", interval=3600, owner="x",
                  execution_start_time=iso(clock() + 7200))
    assert task["next_run_at"] == iso(clock() + 7200)
    r = api.call("PUT", "/tasks/" + task["id"], {"execution_start_time": iso(clock() + 60)})
    assert r.status_code == 200 and r.json["next_run_at"] == iso(clock() + 60)


def test_an_all_tasks_waiting_run_is_lost_with_its_agent(store, clock):
    scheduler, _ = make(store, clock, CLIENT_TIMEOUT=30)
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 1})
        store.ask_for_work(name)
    task, _ = store.create_task(dict(BASE, owner="ALL", max_retries=1, retry_delay=100))
    for name in ("a", "b"):
        [run] = store.claim_runs(name, 1)
        finish(store, name, run, "failed")  # each gets a retry, waiting 100 s
    assert [r["status"] for r in runs(store, task["id"])] == ["failed", "failed", "queued",
                                                              "queued"]
    clock.advance(31)
    store.heartbeat("b", {"concurrency": 1})  # a went away
    scheduler.sweep_agents(clock())
    clock.advance(100)
    store.heartbeat("b", {"concurrency": 1})
    [retry] = store.claim_runs("b", 1)
    finish(store, "b", retry)
    done = store.get_task(task["id"])
    assert done["status"] == "Done"
    assert done["result"]["agents"]["a"]["status"] == "lost"
    assert done["result"]["agents"]["b"] == {"status": "success", "result": "success",
                                             "attempts": 2}


# -- found in review --------------------------------------------------------------

def test_queued_runs_start_one_after_another_even_with_two_agents_asking(store, clock):
    scheduler, _ = make(store, clock)
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 2})
    task, _ = store.create_task(every(10, overlap="queue"))
    [first] = store.claim_runs("a", 2)
    for _ in range(2):
        clock.advance(10)
        for name in ("a", "b"):
            store.heartbeat(name, {"concurrency": 2})
        scheduler.release_due(clock())
    finish(store, "a", first)
    store.hand_out([task["id"]], ["a", "b"])
    assert len(store.claim_runs("a", 2) + store.claim_runs("b", 2)) == 1
    assert [r["status"] for r in runs(store, task["id"])].count("queued") == 1


def test_blocked_queued_runs_do_not_hide_claimable_ones(store, clock):
    scheduler, _ = make(store, clock)
    store.heartbeat("a", {"concurrency": 10})
    blocked = [store.create_task(every(10, overlap="queue"))[0] for _ in range(3)]
    assert len(store.claim_runs("a", 10)) == 3
    for _ in range(9):
        clock.advance(10)
        store.heartbeat("a", {"concurrency": 40})
        scheduler.release_due(clock())  # 27 runs queued behind the three running ones
    queued = sum(r["status"] == "queued" for t in blocked for r in runs(store, t["id"]))
    assert queued == 27  # nine slots behind each of the three running runs
    retry, _ = store.create_task(dict(BASE, max_retries=1, retry_delay=0))
    store.heartbeat("b", {"concurrency": 1})
    [run] = store.claim_runs("b", 1)
    finish(store, "b", run, "failed")
    [again] = store.claim_runs("b", 1)
    assert again["task_id"] == retry["id"] and again["attempt"] == 2


def test_changing_a_window_does_not_fire_a_slot_again(store, clock):
    scheduler, _ = make(store, clock)
    task, _ = store.create_task(every(60, owner="a", execution_start_time=iso(clock())))
    clock.advance(10)
    store.update_task(task["id"], {"execution_end_time": iso(clock() + 3600)})
    store.update_task(task["id"], {"interval": "60"})
    scheduler.release_due(clock())
    assert [r["due_at"] for r in runs(store, task["id"])] == [iso(clock() - 10)]
    assert store.get_task(task["id"])["next_run_at"] == iso(clock() + 50)
    store.update_task(task["id"], {"execution_end_time": iso(clock() + 20)})
    assert store.get_task(task["id"])["next_run_at"] is None  # its window closes first


def test_a_late_report_withdraws_only_its_own_retry(store, clock):
    scheduler, _ = make(store, clock, CLIENT_TIMEOUT=30)
    store.heartbeat("a", {"concurrency": 4})
    task, _ = store.create_task(every(10, overlap="parallel"))
    clock.advance(10)
    store.heartbeat("a", {"concurrency": 4})
    scheduler.release_due(clock())
    one, two = store.claim_runs("a", 4)
    assert store.lose_runs("a")[1] == [task["id"]]
    statuses = [(r["status"], r["attempt"]) for r in runs(store, task["id"])]
    assert statuses == [("lost", 1), ("lost", 1), ("queued", 2), ("queued", 2)]
    assert finish(store, "a", two)[0] == [two["id"]]
    assert finish(store, "a", one)[0] == [one["id"]]
    assert [r["status"] for r in runs(store, task["id"])] == ["success", "success"]


def test_catch_up_all_runs_every_missed_slot_even_when_overlap_skips(store, clock):
    store.heartbeat("a", {"concurrency": 1})
    task, _ = store.create_task(every(60, catch_up="all"))
    [run] = store.claim_runs("a", 1)
    finish(store, "a", run)
    clock.advance(60 * 3 + 1)  # down through three slots
    make(store, clock)[0].release_due(clock())
    assert [r["status"] for r in runs(store, task["id"])] == ["success"] + ["queued"] * 3


def test_an_interval_start_in_the_past_runs_no_past_slot(store, clock):
    task, _ = store.create_task(every(3600, owner="a", execution_start_time=iso(clock() - 5400)))
    assert task["next_run_at"] == iso(clock() + 1800) and runs(store, task["id"]) == []


def test_a_sweep_loses_nothing_of_an_agent_that_came_back_meanwhile(store, clock):
    store.heartbeat("a", {"concurrency": 1})
    task, _ = store.create_task(dict(BASE, owner="a"))
    store.claim_runs("a", 1)
    clock.advance(31)
    cutoff = iso(clock() - 30)
    store.heartbeat("a", {"concurrency": 1})  # between the sweep's look and its write
    assert store.lose_runs("a", silent_since=cutoff) == ([], [])
    assert [r["status"] for r in runs(store, task["id"])] == ["running"]


@pytest.mark.parametrize("fields, field", [
    ({"type": "Interval", "interval": "\u00b2"}, "interval"),
    ({"type": "Interval", "interval": "\u0661\u0660"}, "interval"),
    ({"type": "Scheduled", "interval": "59 23 31 12 *",
      "execution_start_time": "9999-12-31T23:59:30Z"}, "execution_start_time"),
])
def test_more_bad_schedules_are_400s(api, fields, field):
    with unchanged(api):
        assert_error(api.call("POST", "/tasks", dict(ECHO, **fields)), 400, field)


def test_catch_up_all_with_overlap_queue_runs_the_missed_slots_one_after_another(store, clock):
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 4})
    task, _ = store.create_task(every(60, catch_up="all", overlap="queue"))
    [run] = store.claim_runs("a", 4)
    finish(store, "a", run)
    clock.advance(60 * 3 + 1)
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 4})
    scheduler, dispatcher = make(store, clock)
    for name in ("a", "b"):
        dispatcher.register(name, capacity=4)  # both asking for work as the slots fire
    scheduler.release_due(clock())
    started = store.claim_runs("a", 4) + store.claim_runs("b", 4)
    assert len(started) == 1  # the other two wait their turn
    assert [r["status"] for r in runs(store, task["id"])].count("queued") == 2


# -- near the year 9999 -----------------------------------------------------------


@pytest.mark.parametrize("query", [
    "interval=0%200%2029%202%201&execution_start_time=9999-01-01T00:00:00Z",
    "type=Interval&interval=100000000&execution_start_time=9999-12-31T00:00:00Z",
    "interval=*%20*%20*%20*%20*&execution_start_time=9999-12-31T23:58:00Z",
    "type=Interval&interval=86400&execution_start_time=9999-12-28T00:00:00Z&count=5",
])
def test_a_preview_running_past_the_year_9999_is_a_400(api, query):
    r = api.call("GET", "/schedule/preview", query_string=query)
    message = assert_error(r, 400, "execution_start_time")
    assert "9999" in message and "runs fit" in message
    fits = api.call("GET", "/schedule/preview", query_string=query.replace("9999-", "9980-"))
    assert fits.status_code == 200 and len(fits.json["next"]) == 5


@pytest.mark.parametrize("fields", [
    {"type": "Scheduled", "interval": "* * * * *", "execution_start_time": "9999-12-31T23:59:30Z"},
    {"type": "Scheduled", "interval": "0 0 29 2 *", "execution_start_time": "9999-01-01T00:00:00Z",
     "timezone": "Pacific/Kiritimati"},
])
def test_a_task_with_no_run_before_the_year_10000_is_a_400(api, fields):
    with unchanged(api):
        assert_error(api.call("POST", "/tasks", dict(ECHO, **fields)), 400,
                     "execution_start_time")


def test_a_task_whose_next_slot_is_past_the_year_9999_runs_its_last_slot_then_ends(store, clock):
    """Its last slot fires like any other; no later one exists, so the window closes
    (today the slot was never run: computing the next one failed first)."""
    scheduler, _ = make(store, clock)
    start = parse_iso("9999-12-31T00:00:00Z")
    task, _ = store.create_task(every(100_000_000, execution_start_time=iso(start)))
    clock.now = start + 1
    store.heartbeat("a", {"concurrency": 4})
    scheduler.release_due(clock())
    [run] = store.claim_runs("a", 4)
    assert run["task_id"] == task["id"] and run["due_at"] == iso(start)
    assert store.get_task(task["id"])["next_run_at"] is None
    finish(store, "a", run)
    assert store.get_task(task["id"])["status"] == "Done"
    # A cron's last slot before the year 10000 too.
    cron, _ = store.create_task(dict(BASE, type="Scheduled", interval="59 23 31 12 *",
                                     execution_start_time="9999-12-31T00:00:00Z"))
    clock.now = parse_iso("9999-12-31T23:59:00.5Z")
    scheduler.release_due(clock())
    [slot] = runs(store, cron["id"])
    assert slot["due_at"] == "9999-12-31T23:59:00.000Z"
    assert store.get_task(cron["id"])["next_run_at"] is None
