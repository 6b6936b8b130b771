"""The store over a real SQLite file: schema, claims, results."""
import threading

import apsw
import pytest

from octopus.store import Store
from octopus.store.migrate import latest_version
from octopus.store.tasks import ConflictError
from octopus.timeutil import iso, parse_iso

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
    for name in ("a", "b", "c"):  # back online, a and b take work once they ask
        store.ask_for_work(name)
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
    assert store.fan_out_due() == set()  # online, but it has not asked for work
    assert store.ask_for_work("late") is True
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
        store.ask_for_work(name)
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


# -- text search (FTS5 trigram index) and task counts (migration 0009) --------

SEARCH_TERMS = ("job-42", "JOB-4", "echo", "ECHO", "anyone", "Ünï", "ünï", "ÉTÉ", "50%", "a_b",
                "a\\b", 'say "hi"', "[7,", "xyz-nothing", "zz", "a", "%", "_", "agent-b",
                "k\": \"v")
VARIED = [
    task(args=["job-42", 7], kwargs={"path": "a\\b"}),
    task(args=["JOB-420"], owner="agent-b"),
    task(plugin="shell", action="run", args=["Ünïcode été", "ÜNIX"], kwargs={"pct": "50%"}),
    task(args=['say "hi"', "a_b"], owner="ALL"),
    task(args=["axb", "a-b"], kwargs={"k": "v"}),
    task(args=[], kwargs={}, owner="agent-bb"),
]


def _brute_search(store, text):
    """What GET /tasks?q= means: ASCII-case-insensitive substring of a searched column."""
    from octopus.store.tasks import ASCII_LOWER, SEARCHED

    raw = apsw.Connection(store.path)
    try:
        found = set()
        for row in raw.execute("SELECT %s FROM tasks" % ", ".join(SEARCHED)):
            if any(v is not None and text.translate(ASCII_LOWER) in v.translate(ASCII_LOWER)
                   for v in row):
                found.add(row[0])
        return found
    finally:
        raw.close()


def _assert_search_matches_brute_force(store, terms=SEARCH_TERMS, filters=None):
    for text in terms:
        tasks, total = store.list_tasks(filters, limit=1000, text=text)
        expected = _brute_search(store, text)
        if filters:
            expected &= {t["id"] for t in store.list_tasks(filters, limit=1000)[0]}
        assert {t["id"] for t in tasks} == expected, text
        assert total == len(expected), text


def test_text_search_finds_what_a_substring_scan_finds(store):
    for fields in VARIED:
        store.create_task(fields)
    assert _brute_search(store, "job-42") and _brute_search(store, "ÜNI")  # the terms do hit
    assert not _brute_search(store, "ünï")  # LIKE folds ASCII only: so does the search
    _assert_search_matches_brute_force(store, SEARCH_TERMS + ("ÜNI", "été"))
    _assert_search_matches_brute_force(store, filters={"owner": "Anyone"})
    # Pages: newest first, and the total ignores the page.
    everything, total = store.list_tasks(limit=1000, text="age")
    page, page_total = store.list_tasks(limit=1, offset=1, text="age")
    assert total == page_total == len(everything) == 2 and page == everything[1:2]


def test_text_search_follows_changes_assignment_and_deletes(store):
    created = [store.create_task(fields)[0] for fields in VARIED]
    store.update_task(created[0]["id"], {"args": ["renamed-job"], "plugin": "shell"})
    store.heartbeat("worker-x", {"concurrency": 4})
    runs = store.claim_runs("worker-x", 10)  # sets the executor of Anyone tasks
    assert runs and store.list_tasks(text="worker-x")[1] == len(runs)
    store.delete_task(created[1]["id"])
    assert store.list_tasks(text="job-42")[1] == 0 and store.list_tasks(text="renamed")[1] == 1
    _assert_search_matches_brute_force(store, SEARCH_TERMS + ("worker-x", "renamed", "shell"))


def test_text_search_picks_either_way_and_both_agree(store, clock, monkeypatch):
    from octopus.store import tasks as module

    for i in range(120):
        store.create_task(task(args=["common", "rare" if i % 40 == 0 else "n-%d" % i]))
        clock.advance(0.001)
    for few_found in (0, 10 ** 6):  # with a filter: walk always, read the found always
        monkeypatch.setattr(module, "FEW_FOUND", few_found)
        for text in ("common", "rare", "n-1"):
            for offset in (0, 2, 200):
                got, total = store.list_tasks({"owner": "Anyone"}, limit=5, offset=offset,
                                              text=text)
                want, want_total = store.list_tasks({"owner": "Anyone"}, limit=5, offset=offset,
                                                    text=text[:2])
                if text == "common":
                    assert total == want_total == 120
                    assert [t["id"] for t in got] == [t["id"] for t in want]
                assert total == len(_brute_search(store, text))
    # No filter: "rare" (3 of 120) reads the found, "common" walks; both newest first.
    rare, total = store.list_tasks(limit=2, text="rare")
    assert total == 3 and [t["args"][1] for t in rare] == ["rare", "rare"]
    assert rare[0]["created_at"] > rare[1]["created_at"]
    common = store.list_tasks(limit=3, text="common")[0]
    assert [t["id"] for t in common] == [t["id"] for t in store.list_tasks(limit=3)[0]]


def test_text_search_is_right_after_deletes_vacuum_and_renumbered_rowids(store, clock):
    # tasks has no INTEGER PRIMARY KEY: SQLite documents that VACUUM may
    # renumber its rowids (this build's VACUUM happens to keep them; a dump
    # and reload does renumber), so the index must not lean on them.
    created = []
    for i in range(300):
        created.append(store.create_task(task(args=["job-%d" % i]))[0]["id"])
        clock.advance(0.001)
    for task_id in created[:200:2] + created[:50]:  # holes for VACUUM to close
        store.delete_task(task_id)
    terms = ("job-1", "job-29", "job-299", "job-77", "echo", "job-2")
    store.vacuum()
    _assert_search_matches_brute_force(store, terms)
    raw = apsw.Connection(store.path)
    with raw:  # what a renumbering VACUUM would do: every task another rowid
        raw.execute("UPDATE tasks SET rowid = -rowid")
        raw.execute("UPDATE tasks SET rowid = 1000 - rowid")
    raw.close()
    _assert_search_matches_brute_force(store, terms)
    assert store.list_tasks(text="job-299")[0][0]["id"] == created[299]
    # The index stays right for writes after them too.
    store.delete_task(created[299])
    store.create_task(task(args=["after-vacuum"]))
    store.vacuum()
    _assert_search_matches_brute_force(store, terms + ("after-vacuum",))


def _true_counts(store):
    raw = apsw.Connection(store.path)
    try:
        return dict(raw.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall())
    finally:
        raw.close()


def _open_runs(store):
    raw = apsw.Connection(store.path)
    try:
        return raw.execute("SELECT count(*) FROM executions WHERE status IN "
                           "('assigned', 'running')").fetchall()[0][0]
    finally:
        raw.close()


def _assert_counts(store):
    """counts() and the listings' totals (read from task_counts) against count(*)."""
    true = _true_counts(store)
    tasks, running = store.counts()
    assert tasks == true and running == _open_runs(store)
    assert store.list_tasks(limit=1)[1] == sum(true.values())
    for status in ("Created", "Active", "success", "failed", "Done", "cancelled", "other"):
        assert store.list_tasks({"status": status}, limit=1)[1] == true.get(status, 0), status
    return tasks, running


def test_task_counts_kept_by_triggers_match_a_count_of_the_table(store, clock):
    from octopus.server.maintenance import Maintenance
    from octopus import config as settings

    assert store.counts() == ({}, 0)
    store.heartbeat("a", {"concurrency": 3})
    store.ask_for_work("a")
    ids = [store.create_task(task(), candidates=["a"])[0]["id"] for _ in range(4)]
    ids += [t["id"] for t in store.create_tasks([task(owner="b") for _ in range(3)])[0]]
    ids.append(store.create_task(task(owner="ALL"), candidates=["a"])[0]["id"])
    _assert_counts(store)
    runs = store.claim_runs("a", 10)
    assert len(runs) >= 3 and _assert_counts(store)[1] == len(runs)
    store.finish_runs("a", [{"id": r["id"], "status": s}
                            for r, s in zip(runs, ("success", "failed", "success"))])
    store.claim_runs("b", 1)
    store.cancel_task(ids[-2])
    store.delete_task(ids[0])
    store.delete_task(ids[5])
    store.delete_task("no-such-task")
    tasks, running = _assert_counts(store)
    assert sum(tasks.values()) == len(ids) - 2 and running > 0
    # Retention deletes old finished tasks with their runs.
    clock.advance(40 * 86400)
    config = settings.load(settings.SERVER_SETTINGS, None, {"OCTOPUS_RETENTION_DAYS": "30"}, None)
    detail = Maintenance(config, store, clock=clock, pause=0).retention(clock.now)
    assert detail["tasks"] >= 2
    tasks, _ = _assert_counts(store)
    assert 0 not in tasks.values()


def test_migration_9_indexes_and_counts_an_existing_populated_database(tmp_path, clock):
    from octopus.store.migrate import migrations

    path = str(tmp_path / "v8.db")
    conn = apsw.Connection(path)
    with conn:
        for number, sql in migrations():
            if number <= 8:
                conn.execute(sql.read_text(encoding="utf-8"))
        conn.execute("PRAGMA user_version = 8")
        for i in range(50):
            status = ("Created", "Active", "success", "failed", "Done")[i % 5]
            conn.execute("INSERT INTO tasks (id, plugin, action, args, status, updated_at, "
                         "created_at) VALUES (?, 'echo', 'echo', ?, ?, ?, ?)",
                         ("old-%02d" % i, '["Job-%d"]' % i, status, iso(clock.now + i),
                          iso(clock.now + i)))
    conn.close()
    store = Store(path, clock=clock)
    try:
        assert store.schema_version == latest_version() >= 9
        assert store.counts()[0] == _true_counts(store) == {
            "Created": 10, "Active": 10, "success": 10, "failed": 10, "Done": 10}
        _assert_search_matches_brute_force(store, ("job-1", "JOB-4", "old-0", "echo", "zzz"))
        assert [t["id"] for t in store.list_tasks(text="job-1")[0]][:2] == ["old-19", "old-18"]
        created, _ = store.create_task(task(args=["job-1000"]))
        assert store.list_tasks(text="job-100")[0][0]["id"] == created["id"]
        assert store.counts()[0]["Created"] == 11
    finally:
        store.close()


def test_run_outcomes_are_bucketed_by_sqlite_as_by_their_finish_times(store, clock):
    created, _ = store.create_task(task(owner="nobody"))
    since, bucket = clock.now - 3600, 600.0
    finishes = [(since + 0.0005, "success"), (since + 599.999, "failed"), (since + 600, "success"),
                (since + 1234.5, "success"), (since + 3599.9, "lost"), (since + 3700, "failed"),
                (since - 1, "success")]
    raw = apsw.Connection(store.path)
    with raw:
        for at, status in finishes:
            raw.execute("INSERT INTO executions (task_id, client, status, created_at, updated_at, "
                        "finished_at) VALUES (?, 'a', ?, ?, ?, ?)",
                        (created["id"], status, iso(at - 1), iso(at), iso(at)))
    raw.close()
    buckets = store.run_outcomes(since, bucket, 6)
    expected = [{} for _ in range(6)]
    for at, status in finishes:
        if iso(at) >= iso(since):
            slot = max(0, min(5, int((parse_iso(iso(at)) - since) // bucket)))
            expected[slot][status] = expected[slot].get(status, 0) + 1
    assert [{k: v for k, v in b.items() if k != "start"} for b in buckets] == expected
    assert expected[0] == {"success": 1, "failed": 1} and expected[5] == {"lost": 1, "failed": 1}


def test_migration_12_keeps_agents_that_ran_work_taking_it(tmp_path, clock):
    """Upgrading a running fleet: agents given work before the upgrade still get ALL
    runs at once; one that only heartbeated waits until it asks."""
    from octopus.store.migrate import migrations

    path = str(tmp_path / "v11.db")
    conn = apsw.Connection(path)
    now = iso(clock.now)
    with conn:
        for number, sql in migrations():
            if number <= 11:
                conn.execute(sql.read_text(encoding="utf-8"))
        conn.execute("PRAGMA user_version = 11")
        for name in ("worker", "curl"):
            conn.execute("INSERT INTO agents (name, first_seen, last_heartbeat) VALUES (?, ?, ?)",
                         (name, now, now))
        conn.execute("INSERT INTO tasks (id, plugin, action, status, updated_at, created_at) "
                     "VALUES ('old', 'echo', 'echo', 'success', ?, ?)", (now, now))
        conn.execute("INSERT INTO executions (task_id, client, status, created_at) "
                     "VALUES ('old', 'worker', 'success', ?)", (now,))
    conn.close()
    store = Store(path, clock=clock)
    try:
        assert {a["name"]: a["takes_work"] for a in store.list_agents()} == {
            "curl": False, "worker": True}
        created, fanned = store.create_task(task(owner="ALL"))
        assert fanned == ["worker"]
    finally:
        store.close()
