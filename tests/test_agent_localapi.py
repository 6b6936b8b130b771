"""The agent's local API, on a real server and a real agent process; and the
server's POST /agent/tasks behind it, through the app."""
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from octopus import config as settings
from octopus.harness import ADMIN_TOKEN, AGENT_TOKEN, Api, Cluster, free_port, wait_for

pytestmark = pytest.mark.processes  # real server, agent or script processes

NAME = "local-1"
ECHO = {"plugin": "echo", "action": "echo"}


def assert_error(status, body, expected, field=None):
    """An error reply in the server's shape, without a traceback."""
    assert status == expected, (status, body)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "field"}, body
    assert body["error"]["message"].strip() and "Traceback" not in body["error"]["message"]
    assert body["error"]["field"] == field, body
    return body["error"]["message"]


def listening_ports(pid):
    """``(address, port)`` of every TCP socket process ``pid`` listens on."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A server, an agent with its local API on (generated token) and one without."""
    with Cluster(tmp_path_factory.mktemp("localapi"), env={"OCTOPUS_CONCURRENCY": "4"}) as cluster:
        cluster.start_server()
        cluster.local_port = free_port()
        cluster.start_agent(NAME, env={"OCTOPUS_LOCAL_API_PORT": str(cluster.local_port)})
        cluster.start_agent("plain")
        token_file = cluster.root / ("agent-" + NAME) / "local-api.token"
        cluster.local_token = token_file.read_text().strip()
        yield cluster


@pytest.fixture
def lapi(local):
    api = Api(local.local_port, local.local_token)
    yield api
    api.close()


@pytest.fixture
def server(local):
    api = local.api()
    yield api
    api.close()


def post_task(lapi, body, path="/tasks"):
    status, task = lapi.call("POST", path, body)
    assert status == 201, (status, task)
    return task


def final(server, task_id):
    return wait_for(lambda: _final(server, task_id), 30, what="task %s final" % task_id)


def _final(server, task_id):
    _, task = server.call("GET", "/tasks/%s?wait=5" % task_id)
    return task if task["status"] not in ("Created", "Active") else None


def running_run(lapi, task_id):
    def find():
        _, body = lapi.call("GET", "/tasks")
        return next((r for r in body["running"] if r["task_id"] == task_id), None)

    return wait_for(find, 20, what="a run of task %s running" % task_id)


# -- on, off, where ------------------------------------------------------------


def test_off_by_default():
    assert settings.load(settings.AGENT_SETTINGS, None, {}, None).LOCAL_API_PORT == 0


def test_an_agent_without_the_setting_listens_nowhere(local):
    assert listening_ports(local.agents["plain"].pid) == set()
    assert not (local.root / "agent-plain" / "local-api.token").exists()


def test_it_listens_on_127_0_0_1_only_and_logs_where_not_the_token(local):
    assert listening_ports(local.agents[NAME].pid) == {("0100007F", local.local_port)}
    token_file = local.root / ("agent-" + NAME) / "local-api.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    log = (local.root / ("agent-" + NAME) / "logs" / "client.log").read_text()
    assert "Local API listening on http://127.0.0.1:%d" % local.local_port in log
    assert local.local_token not in log and local.local_token not in local.agents[NAME].log()


def test_a_port_in_use_stops_the_agent_with_one_line(local):
    with __import__("socket").socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = local.start_agent("busy", env={"OCTOPUS_LOCAL_API_PORT": str(port)}, wait=False)
        proc.popen.wait(30)
    assert proc.stop() == 2
    out = proc.log()
    assert "LOCAL_API_PORT: cannot listen on 127.0.0.1:%d" % port in out
    assert "Traceback" not in out


def test_the_agent_side_imports_nothing_but_the_standard_library():
    code = ("import sys, octopus.agent.localapi; "
            "print(sorted(m for m in ('apsw', 'falcon', 'waitress') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parent.parent), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "wrong", ADMIN_TOKEN, AGENT_TOKEN])
def test_only_its_own_token_opens_it(lapi, token):
    for method, path in (("GET", "/tasks"), ("POST", "/tasks"), ("DELETE", "/tasks/1")):
        status, body = lapi.call(method, path, ECHO if method == "POST" else None,
                                 token=token or "")
        assert_error(status, body, 401)


def test_a_token_without_the_bearer_scheme_is_refused(local):
    conn = http.client.HTTPConnection("127.0.0.1", local.local_port, timeout=10)
    conn.request("GET", "/tasks", headers={"Authorization": local.local_token})
    resp = conn.getresponse()
    assert resp.status == 401 and resp.getheader("WWW-Authenticate") == "Bearer"
    assert_error(resp.status, json.loads(resp.read()), 401)
    conn.close()


# -- running an action here -------------------------------------------------------


def test_post_runs_the_action_on_this_agent_as_a_task_it_owns(lapi, server):
    task = post_task(lapi, dict(ECHO, args=[1, "x"], kwargs={"k": None}))
    assert task["owner"] == NAME and task["type"] == "Adhoc"
    done = final(server, task["id"])
    assert done["status"] == "success" and done["executor"] == NAME
    assert done["result"] == {"args": [1, "x"], "kwargs": {"k": None}}
    assert [e["client"] for e in done["executions"]] == [NAME]

    def reported():
        status, run = lapi.call("GET", "/tasks/" + task["id"])
        return status == 200 and run.get("reported") and run

    run = wait_for(reported, 10, what="the run shown as reported")
    assert run["state"] == "finished" and run["status"] == "success"
    assert run["run_id"] == done["executions"][0]["id"] and run["plugin"] == "echo"
    assert lapi.call("GET", "/tasks/%d" % run["run_id"])[1] == run
    _, listed = lapi.call("GET", "/tasks")
    assert listed["agent"] == NAME and run in listed["recent"]


def test_post_with_wait_returns_the_final_task(lapi):
    task = post_task(lapi, dict(ECHO, args=[2]), "/tasks?wait=20")
    assert task["status"] == "success" and task["result"] == {"args": [2], "kwargs": {}}
    assert task["executions"][0]["client"] == NAME


# -- cancelling -----------------------------------------------------------------


def test_a_sleep_shows_as_running_and_delete_cancels_it(lapi, server):
    task = post_task(lapi, {"plugin": "sleep", "action": "sleep", "args": [60]})
    run = running_run(lapi, task["id"])
    assert run["state"] == "running" and run["plugin"] == "sleep" and "lease" not in run
    assert run["elapsed"] >= 0 and run["attempt"] == 1
    status, stopping = lapi.call("DELETE", "/tasks/%d" % run["run_id"])
    assert status == 202 and stopping["state"] == "stopping"
    done = final(server, task["id"])
    assert done["status"] == "cancelled"
    assert [e["status"] for e in done["executions"]] == ["cancelled"]
    assert done["executions"][0]["duration"] < 30
    status, body = lapi.call("DELETE", "/tasks/%d" % run["run_id"])
    assert "already ended" in assert_error(status, body, 409)


def test_put_status_cancelled_cancels_by_task_id(lapi, server):
    task = post_task(lapi, {"plugin": "sleep", "action": "sleep", "args": [60]})
    running_run(lapi, task["id"])
    status, body = lapi.call("PUT", "/tasks/" + task["id"], {"status": "success"})
    assert_error(status, body, 400, "status")
    status, body = lapi.call("PUT", "/tasks/" + task["id"], {"status": "cancelled", "x": 1})
    assert_error(status, body, 400, "x")
    status, stopping = lapi.call("PUT", "/tasks/" + task["id"], {"status": "cancelled"})
    assert status == 202 and stopping["task_id"] == task["id"]
    assert final(server, task["id"])["status"] == "cancelled"


def test_runs_of_other_agents_are_not_found(lapi, local, server):
    other = local.run_task(server, dict(ECHO, owner="plain"))
    for method in ("GET", "DELETE"):
        for ident in (other["id"], str(other["executions"][0]["id"]), "999999", "not-an-id"):
            status, body = lapi.call(method, "/tasks/" + ident)
            assert_error(status, body, 404)


# -- refusals ---------------------------------------------------------------------


@pytest.mark.parametrize("raw, field", [
    (b"{bad", None), (b"", None), (b"[1]", None), (b'{"plugin": NaN}', None),
    (b"\xff\xfe", None),
    (json.dumps({"plugin": "nope", "action": "echo"}).encode(), "plugin"),
    (json.dumps({"plugin": "echo", "action": "nope"}).encode(), "action"),
    (json.dumps({"action": "echo"}).encode(), "plugin"),
    (json.dumps(dict(ECHO, args={})).encode(), "args"),
    (json.dumps(dict(ECHO, timeout=-1)).encode(), "timeout"),
    (json.dumps(dict(ECHO, owner="plain")).encode(), "owner"),
    (json.dumps(dict(ECHO, type="Interval")).encode(), "type"),
])
def test_a_bad_task_is_a_400_and_creates_nothing(lapi, server, raw, field):
    _, before = server.call("GET", "/tasks?limit=1")
    status, body = lapi.call("POST", "/tasks", raw_body=raw)
    assert_error(status, body, 400, field)
    assert server.call("GET", "/tasks?limit=1")[1]["total"] == before["total"]


@pytest.mark.parametrize("method, path, expected, field", [
    ("GET", "/nope", 404, None), ("GET", "/tasks/1/x", 404, None), ("GET", "/", 404, None),
    ("PATCH", "/tasks", 405, None), ("DELETE", "/tasks", 405, None),
    ("POST", "/tasks/1", 405, None), ("BREW", "/tasks", 405, None),
    ("GET", "/tasks?x=1", 400, "x"), ("POST", "/tasks?wait=x", 400, "wait"),
    ("POST", "/tasks?wait=61", 400, "wait"),
])
def test_routes_methods_and_parameters(lapi, method, path, expected, field):
    status, body = lapi.call(method, path, ECHO if method == "POST" else None)
    assert_error(status, body, expected, field)


def test_a_wrong_method_names_the_allowed_ones(local):
    conn = http.client.HTTPConnection("127.0.0.1", local.local_port, timeout=10)
    conn.request("PATCH", "/tasks/1", headers={"Authorization": "Bearer " + local.local_token})
    resp = conn.getresponse()
    assert resp.status == 405 and resp.getheader("Allow") == "DELETE, GET, PUT"
    conn.close()


def test_a_body_over_the_limit_is_a_413_before_it_is_read(local):
    conn = http.client.HTTPConnection("127.0.0.1", local.local_port, timeout=10)
    conn.putrequest("POST", "/tasks")
    conn.putheader("Authorization", "Bearer " + local.local_token)
    conn.putheader("Content-Length", str(1024 * 1024 + 1))
    conn.endheaders()  # and no body: the answer must not wait for it
    resp = conn.getresponse()
    assert_error(resp.status, json.loads(resp.read()), 413)
    conn.close()


def test_a_chunked_body_is_refused(local):
    import socket

    # The refusal is made on the headers alone.  Only they are sent: a body
    # still being written when the server answers and closes would make the
    # test race the server (a broken pipe here, or a reset before the reply).
    with socket.create_connection(("127.0.0.1", local.local_port), timeout=10) as s:
        s.sendall(b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                  b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                  % local.local_token.encode())
        resp = http.client.HTTPResponse(s)
        resp.begin()
        assert_error(resp.status, json.loads(resp.read()), 411)


def test_http_servers_own_refusals_are_json_too(local):
    import socket

    with socket.create_connection(("127.0.0.1", local.local_port), timeout=10) as s:
        s.sendall(b"GET /tasks HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split()[1] == b"431", reply
    assert set(json.loads(body)) == {"error"}


# -- the server's side: POST /agent/tasks -------------------------------------------


def own_token(api, name="web-01"):
    """The agent's own token: POST /agent/tasks does not take the shared one."""
    r = api.call("POST", "/agent/enroll", {"client": name}, token=AGENT_TOKEN)
    assert r.status_code == 201, r.text
    return r.json["token"]


def test_server_agent_tasks_creates_a_task_owned_by_the_client(api):
    for token in (own_token(api), ADMIN_TOKEN):
        result = api.call("POST", "/agent/tasks", dict(ECHO, client="web-01", args=[1]),
                          token=token)
        assert result.status_code == 201, result.text
        task = result.json
        assert task["owner"] == "web-01" and task["type"] == "Adhoc" and task["args"] == [1]
        assert result.headers["location"] == "/tasks/" + task["id"]
    same = api.call("POST", "/agent/tasks", dict(ECHO, client="web-01", owner="web-01"),
                    token=ADMIN_TOKEN)
    assert same.status_code == 201 and same.json["owner"] == "web-01"


@pytest.mark.parametrize("body, status, field", [
    (dict(ECHO, client="web-01", owner="web-02"), 403, "owner"),
    (dict(ECHO, client="web-01", owner="Anyone"), 403, "owner"),
    (dict(ECHO, client="web-01", owner="ALL"), 403, "owner"),
    (dict(ECHO), 400, "client"),
    (dict(ECHO, client="ALL"), 400, "client"),
    (dict(ECHO, client="web-01", type="Interval", interval=10), 400, "type"),
    (dict(ECHO, client="web-01", plugin="nope"), 400, "plugin"),
    (dict(ECHO, client="web-01", status="success"), 400, "status"),
])
def test_server_agent_tasks_refuses_and_changes_nothing(api, body, status, field):
    result = api.call("POST", "/agent/tasks", body, token=own_token(api))
    assert result.status_code == status, result.text
    assert result.json["error"]["field"] == field
    assert api.store.list_tasks(limit=10)[1] == 0


def test_server_agent_tasks_needs_the_agents_own_token(api):
    """The shared token speaks for agents that never enrolled; it must not run their plugins."""
    result = api.call("POST", "/agent/tasks", dict(ECHO, client="never-enrolled"),
                      token=AGENT_TOKEN)
    assert result.status_code == 403 and result.json["error"]["field"] == "client"
    assert "own token" in result.json["error"]["message"]
    assert api.store.list_tasks(limit=10)[1] == 0


def test_server_agent_tasks_needs_a_token_and_checks_wait(api):
    assert api.call("POST", "/agent/tasks", dict(ECHO, client="a"), token=None).status_code == 401
    result = api.call("POST", "/agent/tasks?wait=61", dict(ECHO, client="a"), token=AGENT_TOKEN)
    assert result.status_code == 400 and result.json["error"]["field"] == "wait"
    result = api.call("POST", "/agent/tasks?x=1", dict(ECHO, client="a"), token=AGENT_TOKEN)
    assert result.status_code == 400 and result.json["error"]["field"] == "x"
    assert api.store.list_tasks(limit=10)[1] == 0


def test_slow_clients_are_cut_off_at_the_request_deadline_and_starve_nothing(local):
    """16 clients sending a byte a second (the old cap on requests at once):
    real requests meanwhile are all answered, and each slow one is cut off
    once its request has taken REQUEST_DEADLINE (10 s) in all."""
    slow = [socket.create_connection(("127.0.0.1", local.local_port)) for _ in range(16)]
    started = time.monotonic()
    stop = threading.Event()

    def trickle():  # "GEEE...": a request line that never ends
        while not stop.is_set():
            for s in slow:
                try:
                    s.sendall(b"E" if time.monotonic() - started > 0.5 else b"G")
                except OSError:
                    pass
            stop.wait(1.0)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        stop.wait(2.0)  # every slow client has begun its request
        api = Api(local.local_port, local.local_token)
        statuses = [api.call("GET", "/tasks")[0] for _ in range(25)]
        api.close()
        assert statuses == [200] * 25
        for s in slow:
            s.settimeout(max(0.1, started + 30 - time.monotonic()))
            try:
                assert s.recv(4096) == b""  # closed by the agent
            except ConnectionResetError:
                pass
        took = time.monotonic() - started
        assert 9.5 <= took < 30, took
    finally:
        stop.set()
        for s in slow:
            s.close()
