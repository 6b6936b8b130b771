"""The shell plugin and run clean-up on a real agent: a server and an agent process."""
import os
import shutil
import signal
import time

import pytest

from octopus.harness import REPO_ROOT, Cluster, alive, wait_for

pytestmark = pytest.mark.processes  # real launcher, worker, server or agent processes

BROKEN = '"""Fails as it is imported."""\nraise RuntimeError("no settings file")\n\n\n' \
         'def go():\n    """Never reached."""\n'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("shell")
    plugins = root / "plugins"
    shutil.copytree(REPO_ROOT / "plugins", plugins)
    (plugins / "broken.py").write_text(BROKEN)
    with Cluster(root / "cluster") as c:
        c.start_server(env={"OCTOPUS_PLUGINS_DIR": str(plugins)})
        c.start_agent("sh-agent")
        yield c


@pytest.fixture
def api(cluster):
    a = cluster.api()
    yield a
    a.close()


def shell(command, **fields):
    return dict({"plugin": "shell", "action": "run", "args": [command]}, **fields)


def test_the_tasks_timeout_governs_a_shell_run(cluster, api):
    started = time.monotonic()
    task = cluster.run_task(api, shell("sleep 10", timeout=3))
    assert time.monotonic() - started < 9  # stopped at its 3 s, not at the command's end
    assert [e["status"] for e in task["executions"]] == ["timeout"]
    assert task["result"]["error"]["type"] == "Timeout"


def test_a_nonzero_exit_fails_the_run_with_its_code_and_output_and_is_retried(cluster, api):
    task = cluster.run_task(api, shell("echo out; echo oops >&2; exit 3", max_retries=1,
                                       retry_delay=0))
    assert task["status"] == "failed"
    assert [(e["attempt"], e["status"]) for e in task["executions"]] == [(1, "failed"),
                                                                        (2, "failed")]
    result = task["result"]
    assert result["error"]["type"] == "CommandFailed"
    assert result["error"]["message"] == "exit status 3"
    assert (result["returncode"], result["stdout"], result["stderr"]) == (3, "out\n", "oops\n")
    assert result["error"]["traceback"].splitlines()[1].startswith('  File "')
    assert "shell.py" in result["error"]["traceback"].splitlines()[1]


def test_check_false_keeps_a_nonzero_exit_a_success(cluster, api):
    task = cluster.run_task(api, shell("exit 3", kwargs={"check": False}))
    assert task["status"] == "success"
    assert task["result"] == {"returncode": 3, "stdout": "", "stderr": ""}


def test_a_background_process_a_run_left_is_stopped_when_it_ends(cluster, api):
    task = cluster.run_task(api, shell("sleep 300 >/dev/null 2>&1 & echo $!"))
    assert task["status"] == "success"
    pid = int(task["result"]["stdout"])
    wait_for(lambda: not alive(pid), 10, what="the background sleep stopped")


def test_a_task_that_keeps_its_processes_leaves_them_running(cluster, api):
    task = cluster.run_task(api, shell("sleep 300 >/dev/null 2>&1 & echo $!",
                                       keep_processes=True))
    pid = int(task["result"]["stdout"])
    try:
        assert task["status"] == "success" and task["keep_processes"] is True
        # Runs after it end (and are swept) while it goes on.
        for _ in range(2):
            assert cluster.run_task(api, shell("true"))["status"] == "success"
        assert alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_plugin_that_raises_on_import_fails_as_plugin_import_error(cluster, api):
    task = cluster.run_task(api, {"plugin": "broken", "action": "go"})
    assert task["status"] == "failed"
    error = task["result"]["error"]
    assert error["type"] == "PluginImportError"
    assert error["message"] == "plugin broken failed to import: RuntimeError: no settings file"
    assert error["traceback"].splitlines()[1].endswith('broken.py", line 2, in <module>')
    echo = cluster.run_task(api, {"plugin": "echo", "action": "fail", "args": ["boom"]})
    error = echo["result"]["error"]
    assert (error["type"], error["message"]) == ("RuntimeError", "boom")  # its own type
    assert error["traceback"].splitlines()[1].endswith('echo.py", line %d, in fail'
                                                       % _line_of("echo", "raise"))


def _line_of(plugin, text):
    lines = (REPO_ROOT / "plugins" / (plugin + ".py")).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)
