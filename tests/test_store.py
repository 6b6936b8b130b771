"""The store over a real SQLite file: schema, claims, results."""
import threading

import apsw
import pytest

from octopus.store import Store
from octopus.store.migrate import latest_version
from octopus.store.tasks import ConflictError
from octopus.timeutil import iso

ECHO = {"plugin": "echo", "action": "echo", "args": [1], "kwargs": {"k": "v"},
        "owner": "Anyone", "type": "Adhoc"}


def task(**overrides):
    return dict(ECHO, **overrides)


def test_schema_is_migrated_and_pragmas_are_set(store, tmp_path):
    conn = apsw.Connection(str(tmp_path / "octopus.db"))
    assert conn.execute("PRAGMA user_version").fetchall()[0][0] == latest_version()
    assert conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "wal"
    columns = {r[1] for r in conn.execute("PRAGMA table_info(tasks)")}
    assert {"id", "owner", "plugin", "action", "args", "kwargs", "type", "execution_start_time",
            "execution_end_time", "interval", "status", "executor", "result",
            "updated_at"} <= columns
    columns = {r[1] for r in conn.execute("PRAGMA table_info(executions)")}
    assert {"id", "task_id", "client", "status", "result", "updated_at"} <= columns
    conn.close()


def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path, clock):
    path = str(tmp_path / "again.db")
    first = Store(path, clock=clock)
    created, _ = first.create_task(task())
    first.close()
    second = Store(path, clock=clock)
    assert second.get_task(created["id"])["plugin"] == "echo"
    assert second.schema_version == latest_version()
    second.close()


def test_newer_schema_is_refused(tmp_path, clock):
    path = str(tmp_path / "future.db")
    conn = apsw.Connection(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(path, clock=clock)


def test_anyone_task_is_assigned_to_an_online_agent_which_picks_it_up(store):
    store.heartbeat("a", {"concurrency": 2})
    created, woken = store.create_task(task(), candidates=["a"])
    assert woken == ["a"] and created["status"] == "Active" and created["executor"] == "a"
    assert [e["status"] for e in store.get_task(created["id"], True)["executions"]] == ["assigned"]
    runs = store.claim_runs("a", 5)
    assert [r["task_id"] for r in runs] == [created["id"]]
    assert runs[0]["args"] == [1] and runs[0]["kwargs"] == {"k": "v"}
    current = store.get_task(created["id"], with_executions=True)
    assert current["status"] == "Active" and current["executor"] == "a"
    assert [e["status"] for e in current["executions"]] == ["running"]
    assert store.claim_runs("b", 5) == []


def test_anyone_task_without_online_agents_is_pulled_by_the_first_to_ask(store):
    created, woken = store.create_task(task())
    assert woken == [] and created["status"] == "Created"
    assert [r["task_id"] for r in store.claim_runs("late", 1)] == [created["id"]]


def test_specific_task_waits_for_its_agent(store):
    created, _ = store.create_task(task(owner="b"))
    assert store.claim_runs("a", 5) == []
    assert [r["task_id"] for r in store.claim_runs("b", 5)] == [created["id"]]


def test_capacity_limits_a_claim_and_oldest_goes_first(store, clock):
    ids = []
    for _ in range(5):
        ids.append(store.create_task(task())[0]["id"])
        clock.advance(0.01)
    first = store.claim_runs("a", 2)
    assert [r["task_id"] for r in first] == ids[:2]
    assert [r["task_id"] for r in store.claim_runs("a", 10)] == ids[2:]


def test_no_task_is_handed_to_two_agents(tmp_path):
    # One Store per agent: their writes meet only in SQLite's own locking, as
    # two server processes on one file would.
    path = str(tmp_path / "race.db")
    store = Store(path)
    for _ in range(300):
        store.create_task(task())
    stores = [Store(path) for _ in range(8)]
    claimed = {}
    errors = []

    def agent(name, mine):
        try:
            while True:
                runs = mine.claim_runs(name, 3)
                if not runs:
                    return
                for run in runs:
                    claimed.setdefault(run["task_id"], []).append(name)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=agent, args=("agent%d" % i, stores[i])) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(claimed) == 300
    assert all(len(names) == 1 for names in claimed.values())
    assert len(store.list_executions(limit=1000)) == 300
    for s in stores + [store]:
        s.close()


def test_result_settles_the_task_once(store):
    created, _ = store.create_task(task())
    run = store.claim_runs("a", 1)[0]
    result = {"id": run["id"], "status": "success", "result": {"ok": 1}, "output": "hi\n",
              "duration": 0.5}
    assert store.finish_runs("a", [result]) == ([run["id"]], [], [created["id"]], [])
    again = store.finish_runs("a", [dict(result, status="failed", result="other")])
    assert again == ([run["id"]], [], [], [])
    done = store.get_task(created["id"], with_executions=True)
    assert done["status"] == "success" and done["result"] == {"ok": 1}
    assert len(done["executions"]) == 1
    assert store.get_execution(run["id"])["output"] == "hi\n"


def test_result_from_another_agent_or_unknown_run_is_refused(store):
    created, _ = store.create_task(task())
    run = store.claim_runs("a", 1)[0]
    acked, rejected, _, _ = store.finish_runs("b", [{"id": run["id"], "status": "success"}])
    assert acked == [] and rejected == [(run["id"], "fenced: the run belongs to another agent")]
    acked, rejected, _, _ = store.finish_runs("a", [{"id": run["id"], "status": "success",
                                                     "lease": "not-its-lease"}])
    assert acked == [] and rejected[0][1].startswith("fenced: the run was handed out again")
    acked, rejected, _, _ = store.finish_runs("a", [{"id": 999, "status": "success"}])
    assert rejected == [(999, "unknown run")]
    assert store.get_task(created["id"])["status"] == "Active"


def test_all_task_fans_out_to_online_agents_and_sums_up(store, clock):
    for name in ("a", "b", "c"):
        store.heartbeat(name, {})
    clock.advance(31)
    store.heartbeat("a", {})
    store.heartbeat("b", {})  # c is offline now
    created, fanned = store.create_task(task(owner="ALL"))
    assert sorted(fanned) == ["a", "b"]
    assert store.get_task(created["id"])["status"] == "Active"
    run_a = store.claim_runs("a", 5)[0]
    run_b = store.claim_runs("b", 5)[0]
    assert store.claim_runs("c", 5) == []
    store.finish_runs("a", [{"id": run_a["id"], "status": "success", "result": 1}])
    assert store.get_task(created["id"])["status"] == "Active"
    store.finish_runs("b", [{"id": run_b["id"], "status": "failed", "result": "boom"}])
    done = store.get_task(created["id"])
    assert done["status"] == "Done"
    assert done["result"]["total"] == 2 and done["result"]["success"] == 1
    assert done["result"]["failed"] == 1
    assert done["result"]["agents"]["b"] == {"status": "failed", "result": "boom", "attempts": 1}


def test_all_task_without_agents_waits_for_one(store):
    created, fanned = store.create_task(task(owner="ALL"))
    assert fanned == [] and store.get_task(created["id"])["status"] == "Created"
    store.heartbeat("late", {})
    assert store.fan_out_due() == {"late"}
    assert store.get_task(created["id"])["status"] == "Active"


def test_delayed_task_is_not_claimed_before_its_time(store, clock):
    created, _ = store.create_task(task(), delay=5)
    assert store.claim_runs("a", 1) == []
    clock.advance(5)
    assert [r["task_id"] for r in store.claim_runs("a", 1)] == [created["id"]]


def test_running_task_cannot_be_changed_but_can_be_deleted(store):
    created, _ = store.create_task(task())
    [run] = store.claim_runs("a", 1)
    with pytest.raises(ConflictError):
        store.update_task(created["id"], {"args": [2]})
    assert store.delete_task(created["id"]) == {"a"}  # its agent is to stop the run
    assert store.get_task(created["id"]) is None
    assert store.list_executions(task_id=created["id"]) == []
    assert store.delete_task(created["id"]) is None


def test_a_deleted_tasks_running_run_is_to_be_stopped_until_its_agent_reports(store, tmp_path,
                                                                               clock):
    from octopus.store import Store

    created, _ = store.create_task(task())
    [run] = store.claim_runs("a", 1)
    store.delete_task(created["id"])
    assert store.cancels_for("a") == [run["id"]] and store.agents_with_cancels() == ["a"]
    again = Store(str(tmp_path / "octopus.db"), clock=clock)  # the server restarted
    assert again.cancels_for("a") == [run["id"]]
    acked, rejected, _, _ = again.finish_runs("a", [{"id": run["id"], "status": "cancelled"}])
    assert rejected == [(run["id"], "unknown run")]
    assert again.cancels_for("a") == [] and again.agents_with_cancels() == []
    again.close()


def test_agents_show_online_offline_and_running(store, clock):
    store.heartbeat("a", {"hostname": "h1", "ip": "10.0.0.1", "version": "1", "concurrency": 2})
    assert store.heartbeat("a", {}) is False
    store.create_task(task(owner="a"))
    store.claim_runs("a", 1)
    [agent] = store.list_agents()
    assert agent["status"] == "online" and agent["running"] == 1
    clock.advance(31)
    assert store.list_agents()[0]["status"] == "offline"
    assert store.heartbeat("a", {}) is True  # back online


def test_runs_of_a_vanished_agent_are_lost_and_settle_their_tasks(store, clock):
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 4})
    mine, _ = store.create_task(task(owner="a"))
    everyone, _ = store.create_task(task(owner="ALL"))
    runs = store.claim_runs("a", 4)
    [b_run] = store.claim_runs("b", 4)
    assert len(runs) == 2
    # a Specific run lost with its agent is tried again, waiting for that agent
    assert store.lose_runs("a") == ([], [mine["id"]])
    lost = store.get_task(mine["id"], True)
    assert lost["status"] == "Active" and lost["result"]["error"]["type"] == "AgentLost"
    assert [(e["status"], e["attempt"], e["client"]) for e in lost["executions"]] == [
        ("lost", 1, "a"), ("queued", 2, "a")]
    store.finish_runs("b", [{"id": b_run["id"], "status": "success", "result": 1}])
    summary = store.get_task(everyone["id"])["result"]
    assert summary["lost"] == 1 and summary["success"] == 1
    # the agent was only cut off: its late report of the lost run stands, and
    # the retry that had not started yet is withdrawn
    mine_run = [r for r in runs if r["task_id"] == mine["id"]][0]
    assert store.finish_runs("a", [{"id": mine_run["id"], "status": "success", "result": 7,
                                    "lease": mine_run["lease"]}])[0] == [mine_run["id"]]
    done = store.get_task(mine["id"], True)
    assert done["status"] == "success" and done["result"] == 7
    assert [e["status"] for e in done["executions"]] == ["success"]


def test_an_anyone_run_never_picked_up_goes_back_to_be_handed_out_again(store):
    store.heartbeat("a", {"concurrency": 1})
    created, woken = store.create_task(task(), candidates=["a"])
    assert woken == ["a"]
    assert store.lose_runs("a") == ([], [created["id"]])
    back = store.get_task(created["id"], True)
    assert back["executor"] is None
    assert [(e["status"], e["client"], e["attempt"]) for e in back["executions"]] == [
        ("queued", None, 1)]  # not a new attempt: it never started
    store.heartbeat("b", {"concurrency": 1})
    [run] = store.claim_runs("b", 1)
    assert run["task_id"] == created["id"] and run["attempt"] == 1


def test_reconciling_loses_only_old_running_runs_the_agent_does_not_have(store, clock):
    store.heartbeat("a", {"concurrency": 4})
    ids = [store.create_task(task(owner="a"))[0]["id"] for _ in range(3)]
    claimed = store.claim_runs("a", 2)
    assigned, _ = store.create_task(task(), candidates=["a"])  # assigned, not picked up yet
    cutoff = iso(clock() - 60)
    assert store.lose_runs("a", keep=set(), started_before=cutoff) == ([], [])  # too recent
    clock.advance(120)
    kept = claimed[0]["id"]
    assert store.lose_runs("a", keep={kept}, started_before=iso(clock() - 60)) == (
        [], [claimed[1]["task_id"]])  # lost, and waiting for its agent for another try
    assert store.get_task(claimed[0]["task_id"])["status"] == "Active"
    assert store.get_task(assigned["id"])["status"] == "Active"  # assigned runs are not lost
    assert store.get_task(ids[2])["status"] == "Created"


def test_asking_agents_are_not_given_more_than_their_free_slots(store):
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 1})
    tasks = [store.create_task(task(), candidates=["a", "b"]) for _ in range(5)]
    assert sorted(w for _, woken in tasks for w in woken) == ["a", "b"]
    assert [t["status"] for t, _ in tasks].count("Created") == 3


def test_a_late_report_of_a_lost_run_does_not_undo_a_newer_run(store):
    for name in ("a", "b"):
        store.heartbeat(name, {"concurrency": 1})
    created, _ = store.create_task(task())
    [old] = store.claim_runs("a", 1)
    assert store.lose_runs("a") == ([], [created["id"]])
    [new] = store.claim_runs("b", 1)  # the retry, on another agent
    assert new["attempt"] == 2 and new["lease"] != old["lease"]
    acked, rejected, _, _ = store.finish_runs(
        "a", [{"id": old["id"], "status": "success", "result": "stale", "lease": old["lease"]}])
    assert acked == [] and rejected == [(old["id"], "fenced: the run was lost and tried again since")]
    current = store.get_task(created["id"], True)
    assert current["status"] == "Active" and current["executor"] == "b"
    assert [e["status"] for e in current["executions"]] == ["lost", "running"]

def test_after_commit_actions_run_only_when_the_transaction_commits(store):
    ran = []
    with pytest.raises(RuntimeError):
        with store._db.write():
            store._db.after_commit(lambda: ran.append("rolled back"))
            raise RuntimeError("the transaction fails")
    with store._db.write():
        store._db.after_commit(lambda: ran.append("committed"))
        assert ran == []  # not before the commit
    assert ran == ["committed"]
