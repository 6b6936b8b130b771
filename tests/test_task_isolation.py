"""What a task can read: no agent or server token, no agent folder, and, with
RUN_AS, not the server's files.  Real server and agent processes."""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from octopus.harness import ADMIN_TOKEN, AGENT_TOKEN, Cluster, Process

pytestmark = pytest.mark.processes  # real server, agent and launcher processes

REPO = Path(__file__).resolve().parent.parent
PYZ = REPO / "octopus.pyz"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
SECRETS = (ADMIN_TOKEN, AGENT_TOKEN)


def _shell(cluster, command):
    task = cluster.run_task(cluster.api(), {"plugin": "shell", "action": "run",
                                            "args": [command]})
    assert task["status"] == "success", (task, task.get("result"))
    return task, task["result"]["stdout"]


def _combined(cluster, env=None):
    server = cluster.start_server("--agent", "--name", "local", env=env)
    cluster.agents["local"] = server
    cluster.wait_online("local")
    del cluster.agents["local"]
    return server


# The task's environment, then its worker's (the shell's parent) as the worker
# was started: neither may hold a setting or a token.
ENV = "env; echo WORKER-ENV; tr '\\0' '\\n' </proc/$PPID/environ"


def _assert_clean(task, env_text, worker_readable=True):
    assert "WORKER-ENV" in env_text, env_text
    own, worker = env_text.split("WORKER-ENV", 1)
    if not worker_readable:  # with RUN_AS, the task cannot even read it
        assert worker.strip() == "" and "Permission denied" in task["result"]["stderr"]
    for text in (own, worker) if worker_readable else (own,):
        names = [line.split("=", 1)[0] for line in text.splitlines() if "=" in line]
        assert names and not [n for n in names if n.startswith("OCTOPUS_")], text
        assert not [s for s in SECRETS if s in text]
    assert "RUN_ID=" in own and "TASK_ID=%s" % task["id"] in own


def test_a_task_on_a_separate_agent_sees_no_octopus_variable_and_no_token(cluster):
    cluster.start_server()
    cluster.start_agent("sep")  # given OCTOPUS_AGENT_TOKEN (and the admin token) in its env
    task, out = _shell(cluster, ENV)
    _assert_clean(task, out)


def test_a_task_on_a_combined_server_sees_no_octopus_variable_and_no_token(cluster):
    server = _combined(cluster)
    task, out = _shell(cluster, "echo CWD=$(pwd) MODE=$(stat -c %a .); " + ENV)
    _assert_clean(task, out)
    cwd = out.split("CWD=")[1].split()[0]
    assert "MODE=700" in out and not os.path.exists(cwd)  # its own folder, gone after
    warnings = [line for line in server.log().splitlines() if "RUN_AS" in line]
    if os.geteuid() == 0:
        assert len(warnings) == 1 and "can read the server's files" in warnings[0]
    else:
        assert warnings == []


@as_root
def test_run_as_root_still_warns_that_tasks_run_as_root(cluster):
    # RUN_AS naming root itself switched nobody, and the warning was skipped.
    server = _combined(cluster, env={"OCTOPUS_RUN_AS": "root"})
    task, out = _shell(cluster, "id -u")
    assert out.strip() == "0"
    warnings = [line for line in server.log().splitlines() if "set RUN_AS" in line]
    assert len(warnings) == 1 and "can read the server's files" in warnings[0], server.log()


def _others_can_read(path):
    """True if a user with no groups of ours could read ``path`` (a stdlib file)."""
    path = Path(path).resolve()
    if not path.stat().st_mode & 0o004:
        return False
    return all(p.stat().st_mode & 0o001 for p in path.parents)


def _python_for_others(tmp_path):
    """An interpreter whose standard library RUN_AS's user can read, with the pyz
    (a pyenv under /root is closed to other users), else the test's own."""
    if _others_can_read(os.__file__):
        return None, None
    if not (PYZ.is_file() and os.path.exists("/usr/bin/python3")):
        pytest.skip("no Python whose standard library other users can read")
    shiv = Path(tempfile.mkdtemp(prefix="octopus-shiv-"))
    shiv.chmod(0o755)
    return "/usr/bin/python3", shiv


def _runs_folders():
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("octopus-runs-")}


@as_root
def test_run_as_nobody_cannot_read_the_servers_files(tmp_path):
    python, shiv = _python_for_others(tmp_path)
    env = {"SHIV_ROOT": str(shiv)} if shiv else {}
    before = _runs_folders()
    with Cluster(tmp_path / "cluster", pyz=PYZ if python else None, python=python,
                 env=env) as cluster:
        data = cluster.root / "server"
        _combined(cluster, env={"OCTOPUS_RUN_AS": "nobody"})
        _shell(cluster, "true")  # so the shell plugin is in the agent's cache
        secret = [data / "agent" / "identity.token", data / "agent" / "plugins" / "shell.py"]
        assert all(p.is_file() for p in secret), secret
        # Written only when not given in the environment (the harness gives them).
        secret += [p for p in (data / "agent.token", data / "admin.token") if p.exists()]
        reads = "".join("cat %s >/dev/null 2>&1; echo %s=$?; " % (p, p.name) for p in secret)
        # A worker that switched users is not dumpable: its environ is root's.
        task, out = _shell(cluster, "id -u; cat %s/admin.token 2>&1; echo rc=$?; %s%s || true"
                           % (data, reads, ENV))
        assert out.splitlines()[0] == str(pwd.getpwnam("nobody").pw_uid)
        assert ADMIN_TOKEN not in out and "rc=0" not in out and "Permission denied" in out
        for p in secret:  # each refused: a non-zero status from cat
            assert "%s=" % p.name in out and "%s=0\n" % p.name not in out, (p, out)
        _assert_clean(task, out, worker_readable=False)
        assert "set RUN_AS" not in cluster.server.log()
        cluster.stop()
        assert _runs_folders() <= before  # RUN_AS's folder went with the agent
    if shiv:
        shutil.rmtree(shiv, ignore_errors=True)


def test_an_unknown_run_as_user_stops_start_up_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOPUS_")}
    env.update(PYTHONPATH=str(REPO), OCTOPUS_RUN_AS="no-such-user-here",
               OCTOPUS_AGENT_TOKEN=AGENT_TOKEN)
    result = subprocess.run([sys.executable, "-m", "octopus", "--agent", "--data-dir",
                             str(tmp_path)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "RUN_AS" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.skipif(not PYZ.is_file(), reason="octopus.pyz not built (scripts/test.sh builds it)")
def test_an_octopus_folder_where_the_agent_starts_is_not_imported_by_runs(tmp_path):
    # python octopus.pyz puts the pyz, not the current folder, on sys.path; the
    # launcher once ran with -c there and imported this folder instead.
    start = tmp_path / "start"
    fake = start / "octopus"
    fake.mkdir(parents=True)
    marker = tmp_path / "imported"
    (fake / "__init__.py").write_text("open(%r, 'w').close()\n" % str(marker))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OCTOPUS_", "SHIV_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["SHIV_ROOT"] = str(tmp_path / "shiv")
    with Cluster(tmp_path / "cluster", pyz=PYZ, env=env) as cluster:
        env = cluster._env  # with the tokens, and no PYTHONPATH: the pyz's own code
        cluster.start_server()
        name = "cwd-agent"
        cluster.agents[name] = Process(cluster.command + [
            "--agent", "--server-url", cluster.url, "--name", name, "--data-dir",
            str(tmp_path / "agent-data")], tmp_path / "agent.out", env, cwd=str(start))
        cluster.wait_online(name, 60)
        task = cluster.run_task(cluster.api(), {"plugin": "echo", "action": "echo",
                                                "args": [1]})
        assert task["status"] == "success", (task, task.get("result"))
        assert not marker.exists()


@as_root
@pytest.mark.skipif(not (PYZ.is_file() and os.path.exists("/usr/bin/python3")),
                    reason="needs octopus.pyz and a /usr/bin/python3 other users can run")
def test_run_as_on_an_agent_that_is_not_root_stops_start_up_with_one_line(tmp_path):
    # It could not switch users: running tasks as itself instead would give
    # them more than the operator asked for.
    nobody = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="octopus-nobody-"))
    try:
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SHIV_ROOT": str(home / "shiv"),
               "OCTOPUS_RUN_AS": "root", "OCTOPUS_AGENT_TOKEN": AGENT_TOKEN}
        result = subprocess.run(
            ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
             "--clear-groups", "/usr/bin/python3", str(PYZ), "--agent", "--data-dir",
             str(home / "data")], env=env, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "RUN_AS" in lines[0] and "not running as root" in lines[0]
