"""The database file is guarded: deleted, replaced or corrupt under a running
server it is said (503 naming the file), never written past; and one server
per database file and data dir."""
import glob
import os
import subprocess
import sys

import pytest

from conftest import AppClient
from octopus.harness import ADMIN_TOKEN, AGENT_TOKEN, REPO_ROOT, Process, free_port, wait_for
from octopus.store import Store

ECHO = {"plugin": "echo", "action": "echo", "args": [1]}


def _unusable(status, body, db_file):
    """A 503 naming the database file."""
    return status == 503 and db_file in body["error"]["message"]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_under_the_server_is_said_and_nothing_is_acked(
        cluster, how):
    cluster.start_server()
    api = cluster.api()
    db_file = str(cluster.root / "server" / "octopus.db")
    status, kept = api.call("POST", "/tasks", ECHO)
    assert status == 201
    if how == "deleted":
        for path in glob.glob(db_file + "*"):  # rm octopus.db*
            os.remove(path)
    else:  # a copy moved over it, as a careless restore does
        Store(db_file + ".new").close()
        os.replace(db_file + ".new", db_file)
    # A read never commits: it notices within a second (a stat at most once a second).
    wait_for(lambda: _unusable(*api.call("GET", "/tasks"), db_file), 10,
             what="a read to notice the file %s" % how)
    status, body = api.call("POST", "/tasks", ECHO)
    assert _unusable(status, body, db_file), (status, body)
    assert ("was deleted" if how == "deleted" else "was replaced") in body["error"]["message"]
    status, health = api.call("GET", "/health")
    assert status == 503 and health["status"] == "error" and db_file in health["database"]
    for method, path, payload, token in (
            ("GET", "/tasks", None, ADMIN_TOKEN), ("GET", "/tasks/" + kept["id"], None, ADMIN_TOKEN),
            ("POST", "/heartbeat", {"client": "a1"}, AGENT_TOKEN),
            ("POST", "/agent/work", {"client": "a1", "wait": 0}, AGENT_TOKEN)):
        status, body = api.call(method, path, payload, token=token)
        assert _unusable(status, body, db_file), (method, path, status, body)
    api.close()
    log = cluster.server.log()
    assert log.count("CRITICAL") == 1 and "Traceback" not in log, log[-3000:]


def test_reads_notice_a_deleted_file_within_a_second_without_any_write(tmp_path, clock):
    """No scheduler and no write here: the API itself looks at the file (one stat at
    most once a second), so even a server doing nothing but reads says it."""
    db_file = str(tmp_path / "octopus.db")
    store = Store(db_file, clock=clock)
    try:
        api = AppClient(tmp_path, store)
        task = api.call("POST", "/tasks", ECHO).json
        for path in glob.glob(db_file + "*"):
            os.remove(path)
        wait_for(lambda: api.call("GET", "/tasks/" + task["id"]).status_code == 503, 5,
                 what="a read to notice the deleted file")
        r = api.call("GET", "/tasks")
        assert r.status_code == 503 and "was deleted" in r.json["error"]["message"]
    finally:
        store.close()


def _corrupt(db_file, prefix="tasks"):
    """Overwrite every page of the tasks table and its indexes with garbage: what the
    server reads as it starts stays readable, so it starts."""
    import apsw

    conn = apsw.Connection(db_file)
    page_size = conn.execute("PRAGMA page_size").fetchall()[0][0]
    pages = [row[0] for row in conn.execute(
        "SELECT pageno FROM dbstat WHERE name LIKE ? || '%'", (prefix,))]
    conn.close()
    assert pages
    with open(db_file, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * page_size)
            f.write(b"\xa5" * page_size)


def _corrupt_store(tmp_path, clock):
    """``(path, store)``: a database with 20 tasks, its tasks table then made
    garbage (_corrupt), opened again."""
    db_file = str(tmp_path / "octopus.db")
    store = Store(db_file, clock=clock)
    api = AppClient(tmp_path, store)
    for _ in range(20):
        assert api.call("POST", "/tasks", ECHO).status_code == 201
    store.close()  # checkpointed: everything in the main file
    _corrupt(db_file)
    return db_file, Store(db_file, clock=clock)


def test_a_corrupt_database_answers_503_on_every_route(tmp_path, clock):
    db_file, store = _corrupt_store(tmp_path, clock)
    try:
        api = AppClient(tmp_path, store)
        # The first request finds it, whichever it is; every one after says it at once.
        r = api.call("POST", "/tasks", ECHO)
        assert r.status_code == 503 and db_file in r.json["error"]["message"], r.text
        assert "corrupt" in r.json["error"]["message"]
        for method, path, body, token in (
                ("GET", "/tasks", None, ADMIN_TOKEN), ("GET", "/executions", None, ADMIN_TOKEN),
                ("GET", "/agents", None, ADMIN_TOKEN), ("GET", "/stats", None, ADMIN_TOKEN),
                ("GET", "/audit", None, ADMIN_TOKEN), ("POST", "/tasks", ECHO, ADMIN_TOKEN),
                ("POST", "/heartbeat", {"client": "a1"}, AGENT_TOKEN),
                ("POST", "/agent/work", {"client": "a1", "wait": 0}, AGENT_TOKEN),
                ("POST", "/agent/enroll", {"client": "a2"}, AGENT_TOKEN),
                ("GET", "/plugins", None, AGENT_TOKEN)):
            r = api.call(method, path, body, token=token)
            assert r.status_code == 503 and "corrupt" in r.json["error"]["message"], (
                method, path, r.status_code, r.text[:300])
        r = api.call("GET", "/health", token=None)
        assert r.status_code == 503 and "corrupt" in r.json["database"]
        assert api.call("GET", "/", token=None).status_code == 200  # the dashboard, to say it
    finally:
        store.close()


@pytest.mark.processes
def test_a_server_started_on_a_database_too_corrupt_to_start_says_so_and_exits(tmp_path):
    data_dir = tmp_path / "data"
    Store(str(data_dir / "octopus.db")).close()
    _corrupt(str(data_dir / "octopus.db"), prefix="agent")  # read as the server starts
    started = _server(data_dir)
    assert started.returncode == 2 and "Traceback" not in started.stderr, started.stderr
    line = started.stderr.splitlines()[-1]  # after the log's own line saying it
    assert line.startswith("octopus: DB_FILE=%s cannot be used: " % (data_dir / "octopus.db"))
    assert "corrupt" in line


def test_a_corrupt_database_found_by_a_read_is_503_too(tmp_path, clock):
    db_file, store = _corrupt_store(tmp_path, clock)
    try:
        api = AppClient(tmp_path, store)
        r = api.call("GET", "/tasks")
        assert r.status_code == 503 and "corrupt" in r.json["error"]["message"], r.text
        assert api.call("POST", "/tasks", ECHO).status_code == 503
    finally:
        store.close()


def _server_args(data_dir, port):
    return [sys.executable, "-m", "octopus", "--server", "--host", "127.0.0.1", "--port",
            str(port), "--data-dir", str(data_dir)]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT), OCTOPUS_ADMIN_TOKEN=ADMIN_TOKEN,
                OCTOPUS_AGENT_TOKEN=AGENT_TOKEN)


def _server(data_dir, *extra):
    """Start a server that is expected to refuse to start; its exit."""
    return subprocess.run(_server_args(data_dir, free_port()) + list(extra),
                          capture_output=True, text=True, timeout=60, env=_env())


def test_a_second_server_on_the_same_database_or_data_dir_refuses_to_start(cluster, tmp_path):
    cluster.start_server()
    data_dir = cluster.root / "server"
    db_file = str(data_dir / "octopus.db")
    pid = cluster.server.pid
    same_dir = _server(data_dir)
    assert same_dir.returncode == 2
    [line] = same_dir.stderr.splitlines()
    assert ("another server (pid %d: " % pid) in line and db_file + ".lock" in line, line
    same_db = _server(tmp_path / "elsewhere", "--config", str(_config(tmp_path, db_file)))
    assert same_db.returncode == 2
    [line] = same_db.stderr.splitlines()
    assert "pid %d" % pid in line and "this database" in line, line
    other_db = tmp_path / "other.db"
    same_data = _server(data_dir, "--config", str(_config(tmp_path, str(other_db))))
    assert same_data.returncode == 2
    [line] = same_data.stderr.splitlines()
    assert "pid %d" % pid in line and "this DATA_DIR" in line, line
    assert not other_db.exists()
    # The db tools are made to run beside a server: they do not take the lock.
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    check = subprocess.run([sys.executable, "-m", "octopus", "db", "check", "--data-dir",
                            str(data_dir), "--quiet"], capture_output=True, text=True,
                           timeout=60, env=env)
    assert check.returncode == 0, check.stderr
    api = cluster.api()
    assert api.call("GET", "/health")[0] == 200  # the first server did not notice a thing
    api.close()
    cluster.server.stop()
    wait_for(lambda: not cluster.server.alive(), 20, what="the first server to stop")
    cluster.start_server()  # the lock went with its holder


def _config(tmp_path, db_file):
    path = tmp_path / ("db-%d.conf" % abs(hash(db_file)))
    path.write_text("DB_FILE = %s\n" % db_file)
    return path


def test_corruption_where_start_up_does_not_look_is_found_by_the_check_at_start(cluster):
    """The server reads every page once after it starts (quick_check): a database
    corrupt only in its audit log answers 503 everywhere before any request
    happens on a bad page."""
    data_dir = cluster.root / "server"
    db_file = str(data_dir / "octopus.db")
    store = Store(db_file)
    api = AppClient(cluster.root, store)
    for _ in range(30):  # each leaves an audit entry
        assert api.call("POST", "/tasks", ECHO).status_code == 201
    store.close()
    _corrupt(db_file, prefix="audit")
    cluster.port = free_port()  # started by hand: it is not to become healthy
    cluster.server = Process(_server_args(data_dir, cluster.port), cluster.root / "server.out",
                             _env())
    http = cluster.api()

    def unusable():
        try:
            status, body = http.call("GET", "/health")
        except OSError:
            http.close()
            return False
        return status == 503 and "corrupt" in body["database"] and db_file in body["database"]

    wait_for(unusable, 30, what="the check at start-up to find the corrupt audit log")
    status, body = http.call("POST", "/tasks", ECHO)
    assert _unusable(status, body, db_file) and "quick_check" in body["error"]["message"]
    http.close()


def test_a_heartbeat_flush_that_finds_the_file_deleted_is_a_503_said_once(tmp_path, clock,
                                                                          caplog):
    """Heartbeats that change nothing are written together, by the first of each
    second: that write may be the first to find the file gone.  It must not be
    answered 200 (nothing was stored), nor logged as a traceback."""
    db_file = str(tmp_path / "octopus.db")
    store = Store(db_file, clock=clock)
    try:
        api = AppClient(tmp_path, store)
        for _ in range(2):  # the second changes nothing: kept for the next flush
            assert api.heartbeat("a1").status_code == 200
        for path in glob.glob(db_file + "*"):
            os.remove(path)
        clock.advance(2)  # the next quiet heartbeat carries the flush
        r = api.heartbeat("a1")
        assert r.status_code == 503 and "was deleted" in r.json["error"]["message"], r.text
        assert not [rec for rec in caplog.records if rec.exc_info], caplog.text
    finally:
        store.close()
