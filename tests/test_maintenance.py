"""Database maintenance: retention, checkpoint, VACUUM/REINDEX/optimize on
their schedules, GET /maintenance, ``db backup`` / ``db check``, log rotation.

Steps run on a real SQLite file with ``now`` passed in; the last tests use a
real server process.
"""
import logging
import os
import re
import subprocess
import threading
import time

import apsw
import pytest

from octopus import cli, config as settings, dbtool
from octopus.harness import AGENT_TOKEN, REPO_ROOT, wait_for
from octopus.server.maintenance import Maintenance
from octopus.store import Store
from octopus.store import maintenance as queries
from octopus.timeutil import iso, parse_iso

DAY = 86400


def config(**overrides):
    env = {"OCTOPUS_" + k: str(v) for k, v in overrides.items()}
    return settings.load(settings.SERVER_SETTINGS, None, env, None)


def maintenance(store, clock, **overrides):
    return Maintenance(config(**overrides), store, clock=clock, pause=0)


@pytest.fixture
def raw(store):
    """A second connection to the store's file, for rows the API cannot make (old ones)."""
    conn = apsw.Connection(store.path)
    conn.set_busy_timeout(5000)
    yield conn
    conn.close()


def add_task(conn, task_id, status, updated_at):
    conn.execute("INSERT INTO tasks (id, plugin, action, status, updated_at, created_at) "
                 "VALUES (?, 'echo', 'echo', ?, ?, ?)", (task_id, status, updated_at, updated_at))


def add_run(conn, task_id, status, finished_at, updated_at=None):
    conn.execute("INSERT INTO executions (task_id, client, status, created_at, finished_at, "
                 "updated_at) VALUES (?, 'a', ?, ?, ?, ?)",
                 (task_id, status, updated_at or finished_at, finished_at,
                  updated_at or finished_at))
    return conn.last_insert_rowid()


def ids(conn, table):
    return {r[0] for r in conn.execute("SELECT id FROM %s" % table)}


# -- retention ---------------------------------------------------------------

def test_retention_deletes_old_finished_runs_and_tasks_and_keeps_the_rest(store, clock, raw):
    old, recent = iso(clock.now - 31 * DAY), iso(clock.now - 29 * DAY)
    add_task(raw, "old-done", "success", old)
    gone = [add_run(raw, "old-done", "success", old),
            add_run(raw, "old-done", "running", None, old)]  # stale, but its task is over
    for status in ("Done", "failed", "completed", "cancelled"):
        add_task(raw, "old-" + status, status, old)
        gone.append(add_run(raw, "old-" + status, "lost", old))
    add_task(raw, "old-created", "Created", old)
    add_task(raw, "recurring", "Active", old)  # still Active: its old runs age out
    for status in ("success", "failed", "timeout", "cancelled", "lost", "skipped"):
        gone.append(add_run(raw, "recurring", status, old))
    gone.append(add_run(raw, "recurring", "failed", None, old))  # no finished_at: updated_at
    kept = [add_run(raw, "recurring", "success", recent)]
    kept += [add_run(raw, "recurring", status, None, old)
             for status in ("queued", "assigned", "running")]
    add_task(raw, "recent-done", "failed", recent)
    kept.append(add_run(raw, "recent-done", "success", recent))
    gone.append(add_run(raw, "recent-done", "failed", old))

    detail = maintenance(store, clock).retention(clock.now)

    assert ids(raw, "tasks") == {"old-created", "recurring", "recent-done"}
    assert ids(raw, "executions") == set(kept)
    assert detail["executions"] + detail["task_executions"] == len(gone)
    assert detail["tasks"] == 5
    assert detail["cutoff"] == iso(clock.now - 30 * DAY)


def test_retention_deletes_in_batches_of_at_most_500_rows(store, clock, raw):
    old = iso(clock.now - 40 * DAY)
    add_task(raw, "recurring", "Active", old)
    add_task(raw, "big", "Done", old)
    raw.execute("BEGIN")
    for i in range(1234):
        add_run(raw, "recurring", "success", old)
    for i in range(600):
        add_run(raw, "big", "running", None, old)
    raw.execute("COMMIT")
    detail = maintenance(store, clock).retention(clock.now)
    # 500 + 500 + 234 finished runs, then 500 + 100 runs of the Done task,
    # then one batch with the task itself, then one (empty) of stale stop orders.
    assert (detail["executions"], detail["task_executions"], detail["tasks"]) == (1234, 600, 1)
    assert detail["orphan_cancels"] == 0 and detail["audit"] == 0
    assert detail["batches"] == 8  # 3 + 2 + 1 for runs and tasks, 1 each for the rest
    assert isinstance(detail["longest_batch"], float)  # how long is the benchmark's to say
    assert ids(raw, "executions") == set()


def test_retention_queries_read_only_old_rows_through_their_indexes(store, raw):
    for select, table in zip(queries.RETENTION_QUERIES, ("executions", "executions", "tasks")):
        plan = [r[3] for r in raw.execute(
            "EXPLAIN QUERY PLAN DELETE FROM %s WHERE id IN (%s)" % (table, select), ("x", 1))]
        assert not [step for step in plan if step.startswith("SCAN")], plan
        assert any("executions_finished" in s or "tasks_finished" in s for s in plan), plan


def test_zero_retention_days_keeps_everything_but_still_checkpoints(store, clock, raw):
    add_task(raw, "ancient", "success", iso(clock.now - 3000 * DAY))
    m = maintenance(store, clock, RETENTION_DAYS=0, VACUUM_SCHEDULE="", REINDEX_SCHEDULE="",
                    OPTIMIZE_SCHEDULE="", AGENT_FORGET_AFTER=0)
    assert m.next_times() == {"retention": None, "forget_agents": None,
                              "checkpoint": clock.now + 30, "optimize": None, "reindex": None,
                              "vacuum": None}
    assert m.step(clock.now + 10 * DAY) == ["checkpoint"]
    assert ids(raw, "tasks") == {"ancient"}


# -- agents that never took work ----------------------------------------------

def test_agents_that_never_asked_for_work_are_forgotten_after_agent_forget_after(store, clock):
    """Once a bug: 20,000 heartbeats under new names left 20,000 rows for ever."""
    for name in ("worker", "curl-test", "recent", "enrolled"):
        store.heartbeat(name, {})
    store.ask_for_work("worker")  # a real agent: it asks for work once online
    store.enroll_agent("enrolled", "f" * 64)
    clock.advance(DAY - 60)
    store.heartbeat("recent", {"ip": "changed"})  # heard from within the day
    clock.advance(120)
    m = maintenance(store, clock, AGENT_FORGET_AFTER=DAY, RETENTION_DAYS=0)
    assert "forget_agents" in m.step(clock.now + 30)
    assert sorted(a["name"] for a in store.list_agents()) == ["recent", "worker"]
    [cred] = store.credentials()  # an enrolled name keeps its credential
    assert cred["name"] == "enrolled"
    assert store.heartbeat("curl-test", {}) is True  # a forgotten client that comes back is new
    [row] = store.list_agents(prefix="curl")
    assert row["status"] == "online" and row["takes_work"] is False


def test_zero_agent_forget_after_forgets_nobody(store, clock):
    store.heartbeat("curl-test", {})
    clock.advance(3000 * DAY)
    m = maintenance(store, clock, AGENT_FORGET_AFTER=0)
    assert m.next_times()["forget_agents"] is None
    m.step(clock.now + DAY)
    assert [a["name"] for a in store.list_agents()] == ["curl-test"]


# -- schedule ----------------------------------------------------------------

def test_each_kind_runs_when_due_and_is_recorded_with_its_duration(store, clock):
    start = parse_iso("2026-12-31T23:00:00Z")  # a Thursday; 1 January 2027 is a Friday
    clock.now = start
    m = maintenance(store, clock, TASK_CLEANUP_INTERVAL=600, AGENT_FORGET_AFTER=0)
    at = {k: iso(v) for k, v in m.next_times().items() if v is not None}
    assert at == {"retention": "2026-12-31T23:00:30.000Z", "checkpoint": "2026-12-31T23:00:30.000Z",
                  "optimize": "2027-01-01T03:30:00.000Z", "reindex": "2027-01-01T03:00:00.000Z",
                  "vacuum": "2027-01-03T03:00:00.000Z"}
    assert m.step(start + 29) == []
    assert m.step(start + 30) == ["retention", "checkpoint"]
    assert m.step(start + 300) == []
    assert m.step(start + 630) == ["retention", "checkpoint"]
    assert m.step(parse_iso("2027-01-01T03:00:00Z")) == ["retention", "checkpoint", "reindex"]
    assert m.step(parse_iso("2027-01-01T03:05:00Z")) == []
    assert m.step(parse_iso("2027-01-01T03:30:00Z")) == ["retention", "checkpoint", "optimize"]
    assert m.step(parse_iso("2027-01-03T03:00:00Z")) == ["retention", "checkpoint", "optimize",
                                                          "vacuum"]
    assert iso(m.next_times()["vacuum"]) == "2027-01-10T03:00:00.000Z"
    assert iso(m.next_times()["reindex"]) == "2027-02-01T03:00:00.000Z"

    runs = store.list_maintenance(limit=100)
    assert [r["kind"] for r in runs[:4]] == ["vacuum", "optimize", "checkpoint", "retention"]
    assert len(runs) == 14 and all(r["error"] is None for r in runs)
    for run in runs:
        assert run["duration"] >= 0 and run["finished_at"] >= run["started_at"]
    last = store.last_maintenance()
    assert {"cutoff", "executions", "tasks", "batches"} <= set(last["retention"]["detail"])
    assert {"bytes_before", "bytes_after"} <= set(last["vacuum"]["detail"])
    assert {"wal_pages", "checkpointed", "mode"} <= set(last["checkpoint"]["detail"])
    assert store.last_maintenance()["reindex"]["started_at"] == iso(start)  # clock not moved


def test_vacuum_gives_back_the_space_of_deleted_rows_and_empties_the_wal(store, clock, raw):
    old = iso(clock.now - 40 * DAY)
    add_task(raw, "recurring", "Active", old)
    raw.execute("BEGIN")
    for i in range(3000):
        run = add_run(raw, "recurring", "success", old)
        raw.execute("UPDATE executions SET output = ? WHERE id = ?", ("x" * 2000, run))
    raw.execute("COMMIT")
    m = maintenance(store, clock)
    m.retention(clock.now)
    detail = m.vacuum(clock.now)
    assert detail["bytes_after"] < detail["bytes_before"] / 4
    assert os.path.getsize(store.path + "-wal") == 0
    assert detail["wal_truncated"] is True


def test_a_failing_run_is_logged_recorded_and_the_others_go_on(store, clock, monkeypatch, caplog):
    def locked():
        raise apsw.BusyError("database is locked")

    monkeypatch.setattr(store, "reindex", locked)
    clock.now = parse_iso("2027-01-01T02:59:00Z")
    m = maintenance(store, clock)
    with caplog.at_level(logging.INFO, logger="octopus.maintenance"):
        assert m.step(parse_iso("2027-01-01T03:00:00Z")) == ["retention", "forget_agents",
                                                              "checkpoint", "reindex"]
    failed = store.last_maintenance()["reindex"]
    assert failed["error"] == "BusyError: database is locked" and failed["detail"] == {}
    assert "Maintenance reindex failed" in caplog.text
    assert "Maintenance checkpoint done in" in caplog.text
    # Not retried on every tick: it waits for its next time.
    assert m.step(parse_iso("2027-01-01T03:00:01Z")) == []
    assert iso(m.next_times()["reindex"]) == "2027-02-01T03:00:00.000Z"


def test_the_record_keeps_the_last_runs_of_each_kind(store):
    for i in range(queries.KEEP_PER_KIND + 5):
        store.record_maintenance("checkpoint", iso(i), iso(i), 0.0, {"n": i})
    store.record_maintenance("vacuum", iso(0), iso(1), 1.0, {}, "IOError: disk full")
    kept = store.list_maintenance(kind="checkpoint", limit=1000)
    assert len(kept) == queries.KEEP_PER_KIND
    assert kept[0]["detail"] == {"n": queries.KEEP_PER_KIND + 4} and kept[-1]["detail"] == {"n": 5}
    assert store.list_maintenance(kind="vacuum")[0]["error"] == "IOError: disk full"


# -- GET /maintenance (the real app in-process) -------------------------------

def test_get_maintenance_lists_runs_settings_and_next_times(api, store):
    for i in range(5):
        store.record_maintenance("checkpoint", iso(100 + i), iso(101 + i), 1.0, {"n": i})
    store.record_maintenance("retention", iso(200), iso(201), 1.0, {"tasks": 3})
    resp = api.call("GET", "/maintenance", params={"limit": "2", "offset": "1"})
    assert resp.status_code == 200
    body = resp.json
    assert [r["detail"] for r in body["runs"]] == [{"n": 4}, {"n": 3}]
    assert (body["limit"], body["offset"]) == (2, 1)
    assert body["settings"] == {"RETENTION_DAYS": 30, "TASK_CLEANUP_INTERVAL": 300,
                                "AGENT_FORGET_AFTER": 86400, "VACUUM_SCHEDULE": "0 3 * * 0", "REINDEX_SCHEDULE": "0 3 1 * *",
                                "OPTIMIZE_SCHEDULE": "30 3 * * *"}
    assert set(body["next"]) == set(queries.KINDS) and all(body["next"].values())
    assert body["last"]["retention"]["detail"] == {"tasks": 3} and body["last"]["vacuum"] is None
    only = api.call("GET", "/maintenance?kind=retention").json["runs"]
    assert [r["kind"] for r in only] == ["retention"]


@pytest.mark.parametrize("query, field", [("limit=abc", "limit"), ("limit=0", "limit"),
                                          ("offset=-1", "offset"), ("kind=defrag", "kind"),
                                          ("verbose=1", "verbose")])
def test_get_maintenance_rejects_bad_parameters(api, query, field):
    resp = api.call("GET", "/maintenance?" + query)
    assert resp.status_code == 400
    assert resp.json["error"]["field"] == field and resp.json["error"]["message"]


def test_get_maintenance_needs_the_admin_token(api):
    assert api.call("GET", "/maintenance", token=None).status_code == 401
    assert api.call("GET", "/maintenance", token=AGENT_TOKEN).status_code == 403


# -- db backup / db check ------------------------------------------------------

@pytest.fixture
def db_env(monkeypatch):
    for name in ("OCTOPUS_DB_FILE", "OCTOPUS_CONFIG", "OCTOPUS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def one_line(text):
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_db_check_on_a_missing_database_says_so_in_one_line_and_creates_nothing(
        tmp_path, capsys, db_env):
    folder = tmp_path / "nothing"
    assert cli.main(["db", "check", "--data-dir", str(folder)]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("octopus db: no database at %s" % (folder / "octopus.db"))
    assert not folder.exists()


def test_db_check_on_a_file_that_is_not_a_database(tmp_path, capsys, db_env, monkeypatch):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all " * 300)
    monkeypatch.setenv("OCTOPUS_DB_FILE", str(junk))
    assert cli.main(["db", "check"]) == 2
    assert "not a database" in one_line(capsys.readouterr().err)


def test_db_check_reports_a_broken_reference(store, raw, tmp_path, capsys, db_env):
    add_task(raw, "t", "success", iso(0))
    add_run(raw, "t", "success", iso(0))
    assert cli.main(["db", "check", "--data-dir", str(tmp_path)]) == 0
    assert "ok (schema version" in capsys.readouterr().out
    raw.execute("PRAGMA foreign_keys = OFF")
    add_run(raw, "ghost", "success", iso(0))
    assert cli.main(["db", "check", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "foreign key: executions row 2 refers to a missing tasks row" in out
    assert "1 problem(s) found" in out


def test_db_backup_copies_and_refuses_to_overwrite_without_force(store, raw, tmp_path, capsys,
                                                                 db_env):
    add_task(raw, "t", "success", iso(0))
    target = tmp_path / "copy.db"
    target.write_text("precious")
    args = ["db", "backup", str(target), "--data-dir", str(tmp_path)]
    assert cli.main(args) == 2
    assert "exists; pass --force" in one_line(capsys.readouterr().err)
    assert target.read_text() == "precious"
    assert cli.main(args + ["--force", "--step-pages", "2"]) == 0
    assert "Backed up" in capsys.readouterr().out
    copy = Store(str(target))
    assert copy.get_task("t")["status"] == "success"
    copy.close()
    assert sorted(os.listdir(tmp_path)) == ["copy.db", "octopus.db", "octopus.db-shm",
                                            "octopus.db-wal"]  # no partial file left


def test_a_stepped_backup_finishes_while_another_connection_writes(store, raw, tmp_path, capsys):
    # The backup API restarts on every write by another connection; the copy
    # must read one snapshot or, under a busy server, it would never end.
    raw.execute("BEGIN")
    for i in range(2000):
        add_task(raw, "t%d" % i, "success", iso(0))
        raw.execute("UPDATE tasks SET result = ? WHERE id = ?", ("r" * 1000, "t%d" % i))
    raw.execute("COMMIT")
    writes, stop = [], threading.Event()

    def writer():
        conn = apsw.Connection(store.path)
        conn.set_busy_timeout(5000)
        while not stop.is_set():
            add_task(conn, "new%d" % len(writes), "Created", iso(0))
            writes.append(1)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(lambda: writes, 10, what="writes")
        before = len(writes)
        assert dbtool.backup(store.path, str(tmp_path / "copy.db"), step_pages=1) == 0
        during = len(writes) - before
        out = capsys.readouterr().out
    finally:
        stop.set()
        thread.join(10)
    assert during > 0
    pages, steps = re.search(r"(\d+) pages in (\d+) steps", out).groups()
    assert int(pages) > 500 and steps == pages  # never started over
    copy = apsw.Connection(str(tmp_path / "copy.db"))
    assert 2000 < copy.execute("SELECT count(*) FROM tasks").fetchall()[0][0] <= 2000 + len(writes)
    copy.close()


def test_help_mentions_the_db_command(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0
    assert "'db backup FILE' and 'db check'" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        cli.main(["db", "--help"])
    assert "backup" in capsys.readouterr().out and "check" in dbtool.parser().format_help()


# -- a real server ---------------------------------------------------------------

def seed(path, tasks, clock=time.time):
    """A database with ``tasks`` finished tasks and a run each, written directly."""
    Store(path).close()
    conn = apsw.Connection(path)
    now = iso(clock())
    conn.execute("BEGIN")
    for i in range(tasks):
        add_task(conn, "seed-%d" % i, "success", now)
        run = add_run(conn, "seed-%d" % i, "success", now)
        conn.execute("UPDATE executions SET output = ? WHERE id = ?", ("o" * 1500, run))
    conn.execute("COMMIT")
    conn.close()


def test_backup_while_the_server_takes_writes_and_maintenance_over_http(cluster):
    data = cluster.root / "server"
    data.mkdir(parents=True)
    seed(str(data / "octopus.db"), 4000)
    cluster.start_server(env={"OCTOPUS_TASK_CLEANUP_INTERVAL": "1"})
    cluster.start_agent("w1")
    posted, stop = [], threading.Event()

    def writer():
        api = cluster.api()
        while not stop.is_set():
            status, _ = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo"})
            assert status == 201
            posted.append(1)
        api.close()

    thread = threading.Thread(target=writer)
    thread.start()
    backup = cluster.root / "backup.db"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OCTOPUS_DATA_DIR=str(data))
    try:
        wait_for(lambda: len(posted) > 20, 20, what="writes under way")
        before = len(posted)
        done = subprocess.run(cluster.command + ["db", "backup", str(backup), "--step-pages", "8"],
                              env=env, capture_output=True, text=True, timeout=120)
        during = len(posted) - before
        again = subprocess.run(cluster.command + ["db", "backup", str(backup)],
                               env=env, capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        thread.join(30)
    assert done.returncode == 0, done.stderr
    assert during > 0  # the server took writes while the copy was made
    assert again.returncode == 2 and "exists; pass --force" in one_line(again.stderr)

    check = subprocess.run(cluster.command + ["db", "check"], capture_output=True, text=True,
                           env=dict(env, OCTOPUS_DB_FILE=str(backup)), timeout=60)
    assert check.returncode == 0 and "ok (schema version" in check.stdout, check.stdout
    conn = apsw.Connection(str(backup))
    tasks = conn.execute("SELECT count(*) FROM tasks").fetchall()[0][0]
    runs = conn.execute("SELECT count(*) FROM executions").fetchall()[0][0]
    conn.close()
    assert 4000 < tasks <= 4000 + len(posted) and 4000 <= runs <= tasks

    api = cluster.api()

    def ran():
        status, body = api.call("GET", "/maintenance")
        assert status == 200
        return {"retention", "checkpoint"} <= {r["kind"] for r in body["runs"]} and body

    body = wait_for(ran, 20, what="retention and checkpoint runs")
    assert body["settings"]["TASK_CLEANUP_INTERVAL"] == 1
    assert set(body["next"]) == set(queries.KINDS)
    assert body["last"]["retention"]["detail"]["tasks"] == 0  # the seeded rows are recent
    status, error = api.call("GET", "/maintenance?limit=abc")
    assert status == 400 and error["error"]["field"] == "limit"
    log = (data / "logs" / "server.log").read_text()
    assert "octopus.maintenance: Maintenance retention done in" in log


def test_server_and_agent_logs_rotate_at_log_max_size(cluster):
    small = {"OCTOPUS_LOG_MAX_SIZE": "1024", "OCTOPUS_LOG_BACKUP_COUNT": "2"}
    cluster.start_server(env=small)
    cluster.start_agent("rot", env=small)
    api = cluster.api()
    for _ in range(30):  # about 250 bytes of log per task on each side
        assert cluster.run_task(api, {"plugin": "echo", "action": "echo"})["status"] == "success"
    for log in (cluster.root / "server" / "logs" / "server.log",
                cluster.root / "agent-rot" / "logs" / "client.log"):
        names = sorted(p.name for p in log.parent.iterdir())
        assert names == [log.name, log.name + ".1", log.name + ".2"], names
        assert all(p.stat().st_size <= 1024 + 300 for p in log.parent.iterdir())
