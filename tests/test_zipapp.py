"""The built zipapp, octopus.pyz, under every supported CPython found in pyenv.

Runs the real file people download: ``python3.X octopus.pyz ...`` for X in
9..13, each with the version check, a server and an agent that runs one task.
Build it first with ./build_zipapp.sh (scripts/test.sh always does).
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes  # real server, agent or script processes

REPO = Path(__file__).resolve().parent.parent
PYZ = REPO / "octopus.pyz"
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
SUPPORTED_MINORS = (9, 10, 11, 12, 13)

ADMIN_TOKEN = "admintok"
AGENT_TOKEN = "agenttok"
START_DEADLINE = 30.0  # the first start of a build extracts the pyz into SHIV_ROOT
TASK_DEADLINE = 30.0
POLL = 0.1

posix_only = pytest.mark.skipif(os.name != "posix", reason="process handling assumes POSIX")


def find_python(minor):
    """Newest pyenv CPython 3.<minor>.N (plain builds only, not 3.13.0t), or None."""
    found = []
    for exe in PYENV_VERSIONS.glob("3.%d.*/bin/python3" % minor):
        match = re.fullmatch(r"3\.%d\.(\d+)" % minor, exe.parent.parent.name)
        if match and os.access(str(exe), os.X_OK):
            found.append((int(match.group(1)), exe))
    return max(found)[1] if found else None


def source_version():
    """octopus.__version__ of the source tree the pyz is built from (read, not imported)."""
    text = (REPO / "octopus" / "__init__.py").read_text()
    return re.search(r"^__version__ = [\"']([^\"']+)[\"']", text, re.M).group(1)


def python_or_skip(minor):
    exe = find_python(minor)
    if exe is None:
        pytest.skip("no CPython 3.%d at %s/3.%d.*/bin/python3" % (minor, PYENV_VERSIONS, minor))
    return exe


@pytest.fixture(scope="module")
def pyz():
    if not PYZ.is_file():
        pytest.skip("%s is missing: run ./build_zipapp.sh first (scripts/test.sh does)" % PYZ)
    return PYZ


@pytest.fixture(scope="session")
def shiv_root(tmp_path_factory):
    """One extraction folder for the whole session, instead of ~/.shiv."""
    return tmp_path_factory.mktemp("shiv-root")


@pytest.fixture
def base_env(shiv_root):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OCTOPUS_", "SHIV_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["SHIV_ROOT"] = str(shiv_root)
    return env


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return "<%s: %s>" % (path, exc)
    return "\n".join(text.splitlines()[-lines:])


class Proc:
    """A child process whose stdout+stderr go to a log file."""

    def __init__(self, name, argv, env, log_path):
        self.name = name
        self.log_path = log_path
        self._log = open(str(log_path), "wb")
        self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.popen.poll() is None

    def describe(self):
        state = "running" if self.alive() else "exited with %s" % self.popen.returncode
        return "%s %s; its output (%s):\n%s" % (self.name, state, self.log_path, tail(self.log_path))

    def stop(self):
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout=10)
        finally:
            self._log.close()


def http(method, url, token=None, body=None, timeout=5.0):
    """(status, parsed JSON or raw text) for one request; HTTP errors are returned, not raised."""
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_healthy(base, server):
    deadline = time.monotonic() + START_DEADLINE
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            pytest.fail("server died before answering /health\n" + server.describe())
        try:
            status, body = http("GET", base + "/health", timeout=2.0)
        except (OSError, urllib.error.URLError) as exc:  # not listening yet
            last = repr(exc)
        else:
            if status == 200 and isinstance(body, dict) and body.get("status") == "ok":
                return body
            last = "%s %r" % (status, body)
        time.sleep(POLL)
    pytest.fail("GET /health not ok within %gs (last: %s)\n%s"
                % (START_DEADLINE, last, server.describe()))


def wait_task_done(base, task_id, procs):
    deadline = time.monotonic() + TASK_DEADLINE
    task = None
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                pytest.fail("%s died while task %s was pending (last: %r)\n%s"
                            % (proc.name, task_id, task, proc.describe()))
        status, task = http("GET", "%s/tasks/%s" % (base, task_id), token=ADMIN_TOKEN)
        assert status == 200, (status, task)
        if task.get("status") in ("success", "failed"):
            return task
        time.sleep(POLL)
    pytest.fail("task %s not done within %gs (last: %r)\n%s"
                % (task_id, TASK_DEADLINE, task, "\n".join(p.describe() for p in procs)))


@posix_only
@pytest.mark.parametrize("minor", SUPPORTED_MINORS, ids=lambda m: "py3%d" % m)
def test_version(pyz, base_env, minor):
    python = python_or_skip(minor)
    out = subprocess.run([str(python), str(pyz), "--version"], env=base_env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    assert "Traceback" not in out.stderr, out.stderr
    assert source_version() in out.stdout, out


@posix_only
@pytest.mark.parametrize("minor", SUPPORTED_MINORS, ids=lambda m: "py3%d" % m)
def test_server_and_agent_run_a_task(pyz, base_env, tmp_path, minor):
    python = python_or_skip(minor)
    name = "py3%d" % minor
    port = free_port()
    base = "http://127.0.0.1:%d" % port
    server_dir, agent_dir = tmp_path / "server-data", tmp_path / "agent-data"
    server_dir.mkdir()
    agent_dir.mkdir()

    server_env = dict(base_env, OCTOPUS_ADMIN_TOKEN=ADMIN_TOKEN, OCTOPUS_AGENT_TOKEN=AGENT_TOKEN)
    agent_env = dict(base_env, OCTOPUS_AGENT_TOKEN=AGENT_TOKEN)
    procs = []
    try:
        server = Proc("server", [str(python), str(pyz), "--server", "--host", "127.0.0.1",
                                 "--port", str(port), "--data-dir", str(server_dir)],
                      server_env, tmp_path / "server.log")
        procs.append(server)
        health = wait_healthy(base, server)
        assert health["status"] == "ok"

        agent = Proc("agent", [str(python), str(pyz), "--agent", "--server-url", base,
                               "--name", name, "--data-dir", str(agent_dir)],
                     agent_env, tmp_path / "agent.log")
        procs.append(agent)

        status, created = http("POST", base + "/tasks", token=ADMIN_TOKEN, body={
            "plugin": "echo", "action": "echo", "args": [1, "a"], "kwargs": {"k": "v"},
            "owner": name})
        assert status == 201, (status, created)
        assert isinstance(created, dict) and created.get("id") is not None, created

        task = wait_task_done(base, created["id"], procs)
        context = "%r\n%s" % (task, "\n".join(p.describe() for p in procs))
        assert task["status"] == "success", context
        assert task["result"] == {"args": [1, "a"], "kwargs": {"k": "v"}}, context
        executions = task.get("executions")
        assert isinstance(executions, list) and len(executions) == 1, context
        assert executions[0]["client"] == name, context
        assert executions[0]["status"] == "success", context
    finally:
        for proc in reversed(procs):
            proc.stop()


@posix_only
def test_python_38_is_refused_in_one_line(pyz, base_env):
    python = find_python(8)
    if python is None:
        pytest.skip("no CPython 3.8 at %s/3.8.*/bin/python3" % PYENV_VERSIONS)
    out = subprocess.run([str(python), str(pyz), "--version"], env=base_env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not supported" in lines[0], out.stderr
    assert out.stdout == "", out.stdout
