"""Real server and agent processes on 127.0.0.1, for tests and benchmarks.

Everything here polls with a deadline; nothing sleeps and hopes.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"
AGENT_TOKEN = "test-agent-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=20.0, interval=0.02, what="condition"):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def alive(pid):
    """True while process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            # The state is the first field after the parenthesised command name.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def finishes_within(timeout, call, what="call"):
    """``call()``'s value, or TimeoutError if it has not returned after ``timeout``.

    For a blocking call whose point is that it does not block for long (a wait
    that is woken, a request answered at once): the call runs on a daemon
    thread, so a broken feature fails the test instead of hanging it.
    """
    outcome = []

    def run():
        try:
            outcome.append((True, call()))
        except BaseException as e:  # handed to the caller below
            outcome.append((False, e))

    thread = threading.Thread(target=run, name="finishes-within", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise TimeoutError("%s did not return within %.1fs" % (what, timeout))
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class Api:
    """A tiny JSON client on one keep-alive connection."""

    def __init__(self, port, token=ADMIN_TOKEN, timeout=30.0):
        self.port = port
        self.token = token
        self._timeout = timeout
        self._conn = None

    def call(self, method, path, body=None, token=None, raw_body=None, headers=None):
        """Returns ``(status, decoded JSON or text)``."""
        hdrs = dict(headers or {})
        token = self.token if token is None else token
        if token:
            hdrs["Authorization"] = "Bearer " + token
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self._timeout)
            try:
                self._conn.request(method, path, body=data, headers=hdrs)
                resp = self._conn.getresponse()
                payload = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        text = payload.decode("utf-8", "replace")
        try:
            return resp.status, json.loads(text) if text else None
        except ValueError:
            return resp.status, text

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Process:
    """One octopus process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, args, log_path, env, cwd=None):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                      cwd=cwd)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def kill9(self):
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout=15.0):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


def octopus_command(pyz=None, python=None):
    python = python or sys.executable
    return [python, str(pyz)] if pyz else [python, "-m", "octopus"]


class Cluster:
    """A server and any number of agents, each a real process."""

    def __init__(self, root, pyz=None, python=None, env=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.command = octopus_command(pyz, python)
        self.port = None
        self.server = None
        self.agents = {}
        self._env = dict(os.environ, OCTOPUS_ADMIN_TOKEN=ADMIN_TOKEN,
                         OCTOPUS_AGENT_TOKEN=AGENT_TOKEN, **(env or {}))
        if not pyz:
            self._env["PYTHONPATH"] = str(REPO_ROOT)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def api(self, token=ADMIN_TOKEN):
        return Api(self.port, token)

    def heartbeats(self, names):
        """One heartbeat for each of ``names`` (clients that never ask for work)."""
        beat = self.api(token=AGENT_TOKEN)
        try:
            for name in names:
                status, body = beat.call("POST", "/heartbeat", {"client": name})
                if status != 200:
                    raise AssertionError("heartbeat of %s -> %d %s" % (name, status, body))
        finally:
            beat.close()

    def start_server(self, *extra, env=None, port=None, timeout=30.0):
        self.port = port or self.port or free_port()
        args = self.command + ["--server", "--host", "127.0.0.1", "--port", str(self.port),
                               "--data-dir", str(self.root / "server")] + list(extra)
        self.server = Process(args, self.root / "server.out", dict(self._env, **(env or {})))
        api = self.api()
        wait_for(lambda: self._healthy(api), timeout, what="server /health")
        api.close()
        return self.server

    def _healthy(self, api):
        if not self.server.alive():
            raise RuntimeError("server exited:\n" + self.server.log()[-3000:])
        try:
            status, _ = api.call("GET", "/health")
            return status == 200
        except OSError:
            api.close()
            return False

    def start_agent(self, name, *extra, env=None, wait=True, timeout=30.0):
        args = self.command + ["--agent", "--server-url", self.url, "--name", name,
                               "--data-dir", str(self.root / ("agent-" + name))] + list(extra)
        proc = Process(args, self.root / ("agent-%s.out" % name), dict(self._env, **(env or {})))
        self.agents[name] = proc
        if wait:
            self.wait_online(name, timeout)
        return proc

    def wait_online(self, name, timeout=30.0):
        api = self.api()

        def online():
            if not self.agents[name].alive():
                raise RuntimeError("agent %s exited:\n%s" % (name, self.agents[name].log()[-3000:]))
            _, body = api.call("GET", "/agents?prefix=" + urllib.parse.quote(name, safe=""))
            return any(a["name"] == name and a["status"] == "online" for a in body["agents"])

        try:
            wait_for(online, timeout, what="agent %s online" % name)
        finally:
            api.close()

    def run_task(self, api, body, timeout=30.0):
        """Create a task and wait until it is final; returns the final task."""
        status, task = api.call("POST", "/tasks", body)
        if status != 201:
            raise AssertionError("POST /tasks -> %d %s" % (status, task))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, task = api.call("GET", "/tasks/%s?wait=%d" % (task["id"], min(10, timeout)))
            if task["status"] not in ("Created", "Active"):
                return task
        raise TimeoutError("task %s not final after %.0fs: %s" % (task["id"], timeout, task))

    def __enter__(self):
        return self

    def __exit__(self, *exc):  # a failed setup must not leave processes running
        self.stop()

    def stop(self):
        for proc in list(self.agents.values()):
            proc.stop()
        if self.server is not None:
            self.server.stop()
