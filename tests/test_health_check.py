"""scripts/health_check.sh against a real server, a closed port, stubs for the
replies a real server cannot be made to give on demand, and without curl."""
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from octopus.harness import REPO_ROOT, Cluster, finishes_within, free_port

pytestmark = pytest.mark.processes  # real server, agent or script processes

SCRIPT = str(REPO_ROOT / "scripts" / "health_check.sh")
SH = shutil.which("sh")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("health")) as c:
        c.start_server()
        c.start_agent("hc-agent")
        yield c


def check(*args, path=None):
    env = {k: v for k, v in os.environ.items() if k != "OCTOPUS_SERVER_URL"}
    if path is not None:
        env["PATH"] = path
    proc = subprocess.run([SH, SCRIPT] + list(args), env=env, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout.strip()


def test_healthy_server(cluster):
    code, out = check(cluster.url)
    assert code == 0, out
    assert out == ("octopus %s: ok, database ok, 0 pending, 0 active, 0 running, "
                   "1 agent(s) online" % cluster.url)
    assert check("--require-agents", "1", cluster.url)[0] == 0


def test_too_few_agents_exits_3(cluster):
    code, out = check("--require-agents", "2", cluster.url)
    assert code == 3 and "NOT ENOUGH AGENTS (need 2)" in out


def test_url_from_the_environment(cluster):
    env = dict(os.environ, OCTOPUS_SERVER_URL=cluster.url + "/")
    proc = subprocess.run([SH, SCRIPT], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and cluster.url + ": ok" in proc.stdout


def test_nothing_listening_exits_1():
    url = "http://127.0.0.1:%d" % free_port()
    code, out = check(url)
    assert code == 1 and out.startswith("octopus %s: UNREACHABLE" % url)
    assert check("--quiet", url) == (1, "")


def test_without_curl_it_uses_python(cluster, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "tr", "tail", "awk"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    os.symlink(sys.executable, bin_dir / "python3")
    code, out = check(cluster.url, path=str(bin_dir))
    assert code == 0 and "1 agent(s) online" in out, out
    code, out = check("http://127.0.0.1:%d" % free_port(), path=str(bin_dir))
    assert code == 1 and "UNREACHABLE" in out


class Stub(http.server.BaseHTTPRequestHandler):
    reply = (503, b'{"status": "error", "database": "unusable: disk I/O error"}')

    def do_GET(self):
        code, body = self.reply
        if code is None:  # never answer
            time.sleep(5)
            return
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_unusable_database_exits_2(stub):
    code, out = check(stub[1])
    assert code == 2 and "UNHEALTHY (HTTP 503, database unusable: disk I/O error)" in out


def test_a_server_that_never_answers_times_out(stub, monkeypatch):
    monkeypatch.setattr(Stub, "reply", (None, b""))
    code, out = finishes_within(10, lambda: check("--timeout", "1", stub[1]),
                                "health_check.sh --timeout 1 against a silent server")
    assert code == 1 and "UNREACHABLE" in out


def test_not_an_octopus_reply_exits_1(stub, monkeypatch):
    monkeypatch.setattr(Stub, "reply", (200, b"<html>hello</html>"))
    code, out = check(stub[1])
    assert code == 1 and "UNREACHABLE" in out


def test_each_count_is_read_from_its_own_field(stub, monkeypatch):
    monkeypatch.setattr(Stub, "reply", (200, b'{"status": "ok", "database": "ok", "pending": 2, '
                                             b'"active": 1, "running": 3, "agents_online": 4}'))
    assert check(stub[1]) == (0, "octopus %s: ok, database ok, 2 pending, 1 active, 3 running, "
                                 "4 agent(s) online" % stub[1])


def test_bad_usage_exits_64():
    assert check("--require-agents", "x")[0] == 64
    assert check("--nope")[0] == 64
