"""The operator CLI (tasks, agents, plugins, db vacuum) as real subprocesses
against one real server and agent, shared by the module."""
import json
import os
import subprocess
import sys

import pytest

from octopus.harness import ADMIN_TOKEN, REPO_ROOT, Cluster, free_port

ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ctl"))
    try:
        c.start_server()
        c.start_agent("ctl-agent", env={"OCTOPUS_CONCURRENCY": "2"})
        yield c
    finally:
        c.stop()


def octopus(cluster, *args, env=None, url=True):
    """Run ``python -m octopus ARGS``; returns (exit code, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPUS_")}
    environ.update({"PYTHONPATH": str(REPO_ROOT), "OCTOPUS_ADMIN_TOKEN": ADMIN_TOKEN}, **(env or {}))
    if url:
        environ["OCTOPUS_SERVER_URL"] = cluster.url
    proc = subprocess.run([sys.executable, "-m", "octopus"] + list(args), env=environ,
                          capture_output=True, text=True, timeout=60, cwd=str(cluster.root))
    return proc.returncode, proc.stdout, proc.stderr


def one_line_error(stderr):
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1 and stderr.startswith("octopus: "), stderr
    return stderr


def test_help_names_the_commands(cluster):
    code, out, _ = octopus(cluster, "--help")
    assert code == 0 and "tasks list|show" in " ".join(out.split()) and "vacuum" in out
    for command in (["tasks", "create"], ["tasks", "list"], ["agents"], ["plugins"]):
        code, out, _ = octopus(cluster, *command, "--help")
        assert code == 0 and "exit codes" in out and "--json" in out


def test_create_wait_show_and_list(cluster):
    code, out, err = octopus(cluster, "tasks", "create", "echo", "echo", "--args", '[1, "x"]',
                             "--kwargs", '{"k": true}', "--wait", "20", "--json")
    assert code == 0, err
    task = json.loads(out)
    assert task["status"] == "success" and task["result"] == {"args": [1, "x"], "kwargs": {"k": True}}

    code, out, _ = octopus(cluster, "tasks", "show", task["id"])
    assert code == 0 and "success" in out and "ctl-agent" in out and "RUN" in out
    code, out, _ = octopus(cluster, "tasks", "list", "--plugin", "echo", "--status", "success")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "TYPE"]
    assert any(row.startswith(task["id"]) for row in rows) and "task(s)" in rows[-1]
    code, out, _ = octopus(cluster, "tasks", "list", "--search", task["id"], "--json")
    assert code == 0 and [t["id"] for t in json.loads(out)["tasks"]] == [task["id"]]


def test_a_failed_task_exits_1_and_shows_its_traceback(cluster):
    code, out, err = octopus(cluster, "tasks", "create", "echo", "fail", "--args", '["boom"]',
                             "--wait", "20")
    assert code == 1 and "ended failed" in err
    assert "RuntimeError: boom" in out and "status               failed" in out


def test_a_task_not_final_in_time_exits_1_and_can_be_cancelled_and_deleted(cluster):
    code, out, err = octopus(cluster, "tasks", "create", "echo", "echo", "--owner", "nobody",
                             "--wait", "0.5", "--json")
    task = json.loads(out)
    assert code == 1 and "still Created" in err and task["status"] == "Created"
    code, out, _ = octopus(cluster, "tasks", "cancel", task["id"])
    assert code == 0 and "cancelled" in out
    code, _, err = octopus(cluster, "tasks", "cancel", task["id"])
    assert code == 2 and "409" in one_line_error(err)
    code, out, _ = octopus(cluster, "tasks", "delete", task["id"])
    assert code == 0 and "deleted" in out
    code, _, err = octopus(cluster, "tasks", "show", task["id"])
    assert code == 2 and "not found" in one_line_error(err)


def test_agents_and_plugins(cluster):
    code, out, _ = octopus(cluster, "agents")
    assert code == 0 and "ctl-agent" in out and "online" in out
    code, out, _ = octopus(cluster, "agents", "--json")
    assert [a["name"] for a in json.loads(out)["agents"]] == ["ctl-agent"]
    code, out, _ = octopus(cluster, "plugins")
    assert code == 0 and any(line.split()[0] == "echo" and "echo, fail" in line
                             for line in out.splitlines())


def test_bad_input_is_one_line_and_exit_2(cluster):
    for args, text in ((["tasks", "show", ID], "not found"),
                       (["tasks", "create", "echo", "echo", "--args", "[1,"], "--args is not valid JSON"),
                       (["tasks", "create", "echo", "echo", "--kwargs", "[]"], "JSON object"),
                       (["tasks", "create", "echo", "nope"], "(field action)"),
                       (["tasks", "list", "--limit", "0"], "(field limit)"),
                       (["tasks"], "tasks list")):
        code, _, err = octopus(cluster, *args)
        assert code == 2 and text in one_line_error(err), (args, err)


def test_wrong_token_exits_4(cluster):
    code, _, err = octopus(cluster, "tasks", "list", "--token", "wrong")
    assert code == 4 and "401" in one_line_error(err)
    code, _, err = octopus(cluster, "agents", env={"OCTOPUS_ADMIN_TOKEN": "test-agent-token"})
    assert code == 4 and "403" in one_line_error(err)


def test_unreachable_server_exits_3(cluster):
    url = "http://127.0.0.1:%d" % free_port()
    code, _, err = octopus(cluster, "agents", "--server-url", url)
    assert code == 3 and "cannot reach the server at " + url in one_line_error(err)


def test_url_and_token_from_the_local_data_dir(cluster, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin.token").write_text(ADMIN_TOKEN + "\n")
    env = {"OCTOPUS_ADMIN_TOKEN": "", "OCTOPUS_SERVER_PORT": str(cluster.port)}
    code, out, err = octopus(cluster, "agents", "--data-dir", str(data), env=env, url=False)
    assert code == 0 and "ctl-agent" in out, err
    code, _, err = octopus(cluster, "agents", "--data-dir", str(tmp_path / "none"), env=env,
                           url=False)
    assert code == 4 and "no admin token" in one_line_error(err)


def test_plugins_push(cluster, tmp_path):
    good = tmp_path / "ctl_hello.py"
    good.write_text('"""Says hello."""\n\ndef hello(name="you"):\n    return "hello " + name\n')
    code, out, err = octopus(cluster, "plugins", "push", str(good))
    assert code == 0 and "ctl_hello added" in out and "actions: hello" in out, err
    code, out, _ = octopus(cluster, "plugins", "push", str(good))
    assert code == 0 and "ctl_hello replaced" in out
    code, out, _ = octopus(cluster, "tasks", "create", "ctl_hello", "hello", "--args", '["ops"]',
                           "--wait", "20", "--json")
    assert code == 0 and json.loads(out)["result"] == "hello ops"

    broken = tmp_path / "ctl_broken.py"
    broken.write_text("import no_such_module_here\n")
    code, _, err = octopus(cluster, "plugins", "push", str(broken))
    assert code == 2 and "(field source)" in one_line_error(err)
    code, _, err = octopus(cluster, "plugins", "push", str(tmp_path / "missing.py"))
    assert code == 2 and "cannot read" in one_line_error(err)


def test_db_vacuum(cluster, tmp_path):
    code, out, err = octopus(cluster, "db", "vacuum", "--data-dir", str(cluster.root / "server"))
    assert code == 0 and out.startswith("Vacuumed ") and "bytes before" in out, err
    code, _, err = octopus(cluster, "db", "vacuum", "--data-dir", str(tmp_path))
    assert code == 2 and "no database" in err
