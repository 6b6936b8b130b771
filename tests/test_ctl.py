"""The operator CLI (tasks, agents, plugins, db) as real subprocesses
against one real server and agent, shared by the module."""
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from octopus.ctl_progress import Progress
from octopus.harness import ADMIN_TOKEN, REPO_ROOT, Cluster, free_port

pytestmark = pytest.mark.processes  # real server, agent or script processes

ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("ctl")) as c:
        c.start_server()
        c.start_agent("ctl-agent", env={"OCTOPUS_CONCURRENCY": "2"})
        yield c


def environment(cluster, env=None, url=True):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPUS_")}
    environ.update({"PYTHONPATH": str(REPO_ROOT), "OCTOPUS_ADMIN_TOKEN": ADMIN_TOKEN}, **(env or {}))
    if url:
        environ["OCTOPUS_SERVER_URL"] = cluster.url
    return environ


def octopus(cluster, *args, env=None, url=True, input=None):
    """Run ``python -m octopus ARGS``; returns (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "octopus"] + list(args),
                          env=environment(cluster, env, url), input=input,
                          capture_output=True, text=True, timeout=60, cwd=str(cluster.root))
    return proc.returncode, proc.stdout, proc.stderr


def octopus_on_a_terminal(cluster, *args, timeout=60):
    """Like ``octopus`` with stderr on a pseudo-terminal; returns (code, stdout, stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "octopus"] + list(args),
                            env=environment(cluster), stdout=subprocess.PIPE, stderr=slave,
                            cwd=str(cluster.root))
    os.close(slave)  # ours: the terminal ends (EIO) once the child's copy is closed too
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer has gone
                    break
                if not data:
                    break
                chunks.append(data)
        out = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), b"".join(chunks).decode()


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


def test_keep_processes_is_sent_only_when_asked(cluster):
    code, out, _ = octopus(cluster, "tasks", "create", "echo", "echo", "--keep-processes", "--json")
    assert code == 0 and json.loads(out)["keep_processes"] is True
    code, out, _ = octopus(cluster, "tasks", "create", "echo", "echo", "--json")
    assert code == 0 and json.loads(out)["keep_processes"] is False


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


def test_agents_revoke_and_forget(cluster):
    from octopus.harness import AGENT_TOKEN

    api = cluster.api()
    status, enrolled = api.call("POST", "/agent/enroll", {"client": "ghost"}, token=AGENT_TOKEN)
    assert status == 201
    assert api.call("POST", "/heartbeat", {"client": "ghost"}, token=enrolled["token"])[0] == 200
    code, out, _ = octopus(cluster, "agents")
    assert any(line.split()[:3] == ["ghost", "online", "enrolled"] for line in out.splitlines())
    code, out, _ = octopus(cluster, "agents", "revoke", "ghost")
    assert code == 0 and "revoked" in out
    _, listed = api.call("GET", "/agents")
    assert {a["name"]: a["credential"] for a in listed["agents"]}["ghost"] == "revoked"
    code, out, _ = octopus(cluster, "agents", "forget", "ghost")
    assert code == 0 and "forgotten" in out
    _, listed = api.call("GET", "/agents")
    assert "ghost" not in {a["name"] for a in listed["agents"]}
    code, _, err = octopus(cluster, "agents", "revoke", "ghost")
    assert code == 2 and "ghost" in err and len(err.strip().splitlines()) == 1
    code, _, err = octopus(cluster, "agents", "forget")
    assert code == 2 and "NAME" in err


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


# -- many tasks at once, and progress ---------------------------------------------

def count(cluster, owner):
    api = cluster.api()
    try:
        status, reply = api.call("GET", "/tasks?owner=%s&limit=1" % owner)
    finally:
        api.close()
    assert status == 200, reply
    return reply["total"]


def many(owner, n):
    # An owner no agent has: the tasks wait in Created instead of loading the agent.
    return [{"plugin": "echo", "action": "echo", "args": [i], "owner": owner} for i in range(n)]


PROGRESS = re.compile(r"^created (\d+)/(\d+) tasks \((\d+)%\)$")


def test_bulk_create_from_a_file_shows_progress_when_asked(cluster, tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(many("bulk-file", 2500)))
    code, out, err = octopus(cluster, "tasks", "create", "--file", str(path), "--progress")
    assert code == 0, err
    assert out.startswith("Created 2500 task(s) from %s in 3 request(s)" % path)
    assert count(cluster, "bulk-file") == 2500
    # Plain lines (stderr is a pipe), at least the first and the last, counting up.
    lines = err.splitlines()
    assert "\r" not in err and lines and all(PROGRESS.match(line) for line in lines), err
    done = [int(PROGRESS.match(line).group(1)) for line in lines]
    assert done[0] == 1000 and done[-1] == 2500 and done == sorted(done)
    assert lines[-1] == "created 2500/2500 tasks (100%)"


def test_bulk_create_from_stdin_json_lines_is_silent_without_progress(cluster):
    text = "\n".join(json.dumps(t) for t in many("bulk-stdin", 1200)) + "\n\n"
    code, out, err = octopus(cluster, "tasks", "create", "--file", "-", "--json", input=text)
    assert code == 0 and err == "", err  # stderr is no terminal: no progress
    created = json.loads(out)["tasks"]
    assert [t["args"] for t in created] == [[i] for i in range(1200)]
    assert count(cluster, "bulk-stdin") == 1200
    code, out, err = octopus(cluster, "tasks", "create", "--file", "-", "--quiet",
                             input=json.dumps(many("bulk-quiet", 3)))
    assert (code, out, err) == (0, "", "") and count(cluster, "bulk-quiet") == 3


def test_a_bad_task_in_the_third_request_is_named_by_its_index_in_the_file(cluster, tmp_path):
    tasks = many("bulk-bad", 2500)
    tasks[2222]["plugin"] = "no_such_plugin"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(tasks))
    code, out, err = octopus(cluster, "tasks", "create", "--file", str(path), "--progress")
    # The two requests before it stand; the third is refused whole.
    assert code == 2 and out == ""
    *progress, error = err.splitlines()
    assert progress and all(PROGRESS.match(line) for line in progress), err
    one_line_error(error + "\n")
    assert "task 2222 in %s refused (400)" % path in error and "(field tasks[2222].plugin)" in error
    assert "task 222:" not in error and "2000 of 2500 tasks were created before it" in error
    assert count(cluster, "bulk-bad") == 2000


def test_bulk_create_refuses_bad_files_before_sending_anything(cluster, tmp_path):
    lines = [json.dumps(t) for t in many("bulk-never", 3)]
    (tmp_path / "broken.jsonl").write_text("\n".join(lines[:2] + ["{oops"] + lines[2:]))
    (tmp_path / "scalar.json").write_text(json.dumps(many("bulk-never", 2) + [7]))
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "huge.json").write_text(json.dumps([{"plugin": "echo", "action": "echo",
                                                      "args": ["x" * (1 << 20)]}]))
    cases = ((["--file", "broken.jsonl"], "line 3 of broken.jsonl is not valid JSON"),
             (["--file", "scalar.json"], "task 2 in scalar.json is not a JSON object"),
             (["--file", "empty.json"], "empty.json holds no tasks"),
             (["--file", "huge.json"], "task 0 in huge.json is 1048"),
             (["--file", "missing.json"], "cannot read missing.json"),
             (["echo", "echo", "--file", "broken.jsonl"], "PLUGIN ACTION or --file, not both"),
             (["--file", "empty.json", "--max-retries", "2"], "--max-retries does not apply"),
             ([], "needs PLUGIN ACTION, or --file"))
    for args, text in cases:
        env = {"PWD": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-m", "octopus", "tasks", "create"] + args,
                              env=dict(environment(cluster), **env), capture_output=True,
                              text=True, timeout=60, cwd=str(tmp_path))
        assert proc.returncode == 2 and text in one_line_error(proc.stderr), (args, proc.stderr)
    assert count(cluster, "bulk-never") == 0


def test_bulk_cancel_and_delete_go_on_past_refused_tasks(cluster):
    code, out, err = octopus(cluster, "tasks", "create", "--file", "-", "--json",
                             input=json.dumps(many("bulk-cancel", 3)))
    assert code == 0, err
    ids = [t["id"] for t in json.loads(out)["tasks"]]
    code, out, err = octopus(cluster, "tasks", "cancel", ids[0], ID, *ids[1:], ids[0],
                             "--progress")
    assert code == 2 and out == "Cancelled 3 of 4 task(s); 1 refused\n"
    assert "octopus: task %s: not found" % ID in err
    assert err.splitlines()[-1] == "cancelled 4/4 tasks (100%)"
    api = cluster.api()
    assert all(api.call("GET", "/tasks/" + i)[1]["status"] == "cancelled" for i in ids)
    api.close()
    code, out, err = octopus(cluster, "tasks", "delete", "-", "--json",
                             input="%s\n%s %s\n" % tuple(ids))
    assert code == 0 and err == "" and json.loads(out) == {"deleted": ids, "refused": []}
    assert count(cluster, "bulk-cancel") == 0


def test_progress_on_a_terminal_is_redrawn_on_one_line(cluster, tmp_path):
    data = str(cluster.root / "server")
    code, out, err = octopus_on_a_terminal(cluster, "db", "backup", str(tmp_path / "tty.db"),
                                           "--data-dir", data, "--step-pages", "2")
    assert code == 0 and out.startswith("Backed up "), err
    # One line, redrawn with \r and ended once (the terminal turns \n into \r\n).
    assert err.startswith("\rcopied ") and err.endswith("(100%)\r\n"), repr(err)
    assert err.count("\n") == 1
    code, out, err = octopus_on_a_terminal(cluster, "db", "backup", str(tmp_path / "q.db"),
                                           "--data-dir", data, "--quiet")
    assert (code, out, err) == (0, "", "")


def test_db_backup_with_progress_makes_a_copy_db_check_accepts(cluster, tmp_path):
    data, copy = str(cluster.root / "server"), str(tmp_path / "copy.db")
    code, out, err = octopus(cluster, "db", "backup", copy, "--data-dir", data,
                             "--step-pages", "4", "--progress")
    assert code == 0 and out.startswith("Backed up "), err
    pages = re.findall(r"^copied (\d+)/(\d+) pages \((\d+)%\)$", err, re.M)
    assert pages and len(pages) == len(err.splitlines()), err
    assert pages[-1][0] == pages[-1][1] and pages[-1][2] == "100"
    assert int(re.search(r"(\d+) pages in", out).group(1)) == int(pages[-1][1])
    code, out, err = octopus(cluster, "db", "check", "--progress",
                             env={"OCTOPUS_DB_FILE": copy})
    assert code == 0 and out.startswith(copy + ": ok (schema version "), err
    assert re.fullmatch(r"check of \S+ started\ncheck of \S+ finished in \d+\.\d\ds\n", err), err
    code, out, err = octopus(cluster, "db", "backup", copy, "--data-dir", data)
    assert code == 2 and "exists" in err and "copied" not in err


def test_progress_redraws_at_most_ten_times_a_second_and_always_shows_the_end():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    now = [0.0]
    stream = Terminal()
    progress = Progress(True, stream, clock=lambda: now[0])
    for step in range(1, 101):  # 100 updates in 0.99 s
        progress.update("step %d" % step)
        now[0] += 0.01
    progress.done()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) <= 11 and frames[0] == "step 1" and frames[-1] == "step 100\n"
    log = io.StringIO()
    progress = Progress(True, log, clock=lambda: now[0])
    progress.update("a")
    progress.update("b")
    progress.done()
    assert log.getvalue() == "a\nb\n"  # plain lines: the held-back last state still shown


def test_agents_lists_a_fleet_bigger_than_one_page(tmp_path):
    """GET /agents pages (at most 1000 an answer): the command reads every page."""
    with Cluster(tmp_path / "big") as big:
        big.start_server()
        big.heartbeats("n%04d" % i for i in range(1003))
        code, out, _ = octopus(big, "agents")
        assert code == 0 and "1003 agent(s), 1003 online" in out
        assert "n0000" in out and "n1002" in out
        code, out, _ = octopus(big, "agents", "--json")
        listed = json.loads(out)
        assert listed["total"] == 1003 and len({a["name"] for a in listed["agents"]}) == 1003
