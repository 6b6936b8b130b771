"""The operator's own sqlite3 keeps working on the database.

docs/OPERATIONS.md gives the statements (the troubleshooting SELECTs, the
30-day cleanup DELETEs, REINDEX, VACUUM); they must run with the stock
sqlite3 of Debian 12 (3.40.1), Ubuntu 22.04 (3.37.2) and RHEL 9 (3.34.1) on
a copy of a live database.  Debian's sqlite3 runs them here; nothing in the
schema may need a version after 3.34 (checked on the schema's text).
"""
import os
import re
import shutil
import subprocess

import pytest

from octopus.store import Store

SQLITE3 = "/usr/bin/sqlite3"
STATEMENTS = [
    "SELECT * FROM executions ORDER BY updated_at DESC LIMIT 10;",
    "SELECT id, status, executor FROM tasks WHERE status != 'Created';",
    "SELECT 1;",
    "SELECT COUNT(*) FROM tasks WHERE updated_at > datetime('now', '-5 minutes');",
    "SELECT COUNT(*) FROM tasks WHERE status = 'Created';",
    "SELECT COUNT(*) FROM tasks WHERE status = 'Active';",
    "DELETE FROM tasks WHERE status IN ('Done', 'success', 'failed') "
    "AND datetime(updated_at) < datetime('now', '-30 days');",
    "DELETE FROM executions WHERE datetime(updated_at) < datetime('now', '-30 days');",
    "REINDEX;",
    "VACUUM;",
]
# Schema features of SQLite releases after 3.34 (the oldest stock sqlite3 above).
NEWER = {
    r"contentless_delete": "3.43", r"contentless_unindexed": "3.47",
    r"\)\s*STRICT\b": "3.37", r",\s*STRICT\b": "3.37", r"\bRETURNING\b": "3.35",
    r"\bunixepoch\s*\(": "3.38", r"->": "3.38", r"\boctet_length\s*\(": "3.43",
    r"\bconcat(_ws)?\s*\(": "3.44", r"\bformat\s*\(": "3.38", r"\btimediff\s*\(": "3.43",
    r"\bjsonb": "3.45", r"\bMATERIALIZED\b": "3.35", r"\btokendata\b": "3.45",
    r"\blocale\s*=": "3.47", r"remove_diacritics": "3.45",
}


@pytest.fixture(scope="module")
def sqlite3_tool():
    if not os.path.exists(SQLITE3) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "sqlite3"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if not os.path.exists(SQLITE3):
        pytest.skip("Debian's sqlite3 is not installed at %s and apt-get install sqlite3 "
                    "was not possible (needs root and apt; .ci/run installs it)" % SQLITE3)
    return SQLITE3


def tool(sqlite3_tool, db, statement):
    done = subprocess.run([sqlite3_tool, "-bail", str(db), statement], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr, (statement, done.stderr)
    return done.stdout


def live_copy(cluster, sqlite3_tool, tmp_path):
    """A server with tasks and runs in it, copied while it runs (.backup)."""
    cluster.start_server()
    cluster.start_agent("tool-agent")
    api = cluster.api()
    for i in range(3):
        cluster.run_task(api, {"plugin": "echo", "action": "echo", "args": ["needle-%d" % i]})
    cluster.run_task(api, {"plugin": "echo", "action": "fail", "args": ["needle-failed"]})
    status, _ = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo",
                                            "args": ["needle-waiting"], "owner": "nobody"})
    assert status == 201
    api.close()
    copy = tmp_path / "copy.db"
    tool(sqlite3_tool, cluster.root / "server" / "octopus.db", ".backup '%s'" % copy)
    return copy


def test_the_guides_statements_run_with_the_stock_sqlite3(cluster, sqlite3_tool, tmp_path):
    copy = live_copy(cluster, sqlite3_tool, tmp_path)
    for statement in STATEMENTS:
        tool(sqlite3_tool, copy, statement)
    # A cleanup that deletes rows, through the search index's triggers.
    tool(sqlite3_tool, copy, "DELETE FROM tasks WHERE status IN ('Done', 'success', 'failed') "
                             "AND datetime(updated_at) < datetime('now', '+1 day');")
    tool(sqlite3_tool, copy, "INSERT INTO task_search (task_search) VALUES ('integrity-check');")
    assert tool(sqlite3_tool, copy, "PRAGMA integrity_check;").strip() == "ok"
    # The server still finds what is left, and nothing that was deleted.
    store = Store(str(copy))
    try:
        tasks, total = store.list_tasks(text="needle")
        assert total == 1 and tasks[0]["args"] == ["needle-waiting"]
        assert store.list_tasks(text="needle-0") == ([], 0)
    finally:
        store.close()


def test_nothing_in_the_schema_needs_sqlite_after_3_34(cluster, sqlite3_tool, tmp_path):
    copy = live_copy(cluster, sqlite3_tool, tmp_path)
    schema = tool(sqlite3_tool, copy, "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL;")
    assert "CREATE VIRTUAL TABLE task_search" in schema
    needs = {version: pattern for pattern, version in NEWER.items()
             if re.search(pattern, schema, re.IGNORECASE)}
    assert needs == {}, "schema uses features of SQLite %s" % ", ".join(sorted(needs))
