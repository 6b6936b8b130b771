"""PUT /plugins/{name}: an admin uploads a plugin, tried in a separate process first."""
import pytest

from octopus.harness import wait_for
from test_api import AGENT_TOKEN, assert_error, unchanged

pytestmark = pytest.mark.processes  # real server, agent or script processes

GOOD = b'"""Greets."""\n\n\ndef hello(name):\n    """Say hello."""\n    return "hello " + name\n'


@pytest.fixture
def uploads(api, tmp_path):
    api.registry.folders.append(str(tmp_path / "uploads"))
    api.registry.upload_dir = str(tmp_path / "uploads")
    return tmp_path / "uploads"


def test_an_uploaded_plugin_is_served_and_usable_at_once(api, uploads):
    r = api.client.simulate_put("/plugins/greet", body=GOOD, headers={
        "Authorization": "Bearer test-admin-token", "Content-Type": "text/x-python"})
    assert r.status_code == 201, r.text
    assert r.json["name"] == "greet" and r.json["actions"] == ["hello"]
    assert (uploads / "greet.py").read_bytes() == GOOD
    listed = api.call("GET", "/plugins").json["plugins"]
    assert "greet" in [p["name"] for p in listed]
    r = api.call("POST", "/tasks", {"plugin": "greet", "action": "hello", "args": ["x"]})
    assert r.status_code == 201
    again = api.client.simulate_put("/plugins/greet", body=GOOD + b"\n\ndef bye():\n    pass\n",
                                    headers={"Authorization": "Bearer test-admin-token"})
    assert again.status_code == 200 and again.json["actions"] == ["bye", "hello"]


@pytest.mark.parametrize("source, words", [
    (b"def broken(:\n", "not valid Python"),
    (b"import module_that_does_not_exist\n\ndef run():\n    pass\n", "ModuleNotFoundError"),
    (b"raise SystemExit(3)\n\ndef run():\n    pass\n", "exit status 3"),
    (b"X = 1\n", "no action"),
    (b"def run():\n    pass\n\x00", "not valid Python"),
])
def test_a_plugin_that_does_not_import_is_refused(api, uploads, source, words):
    with unchanged(api):
        r = api.client.simulate_put("/plugins/bad", body=source,
                                    headers={"Authorization": "Bearer test-admin-token"})
        assert_error(r, 400, "source")
    assert words in r.json["error"]["message"]
    assert not (uploads / "bad.py").exists()


def test_upload_needs_the_admin_token_and_a_good_name(api, uploads):
    r = api.client.simulate_put("/plugins/greet", body=GOOD,
                                headers={"Authorization": "Bearer " + AGENT_TOKEN})
    assert_error(r, 403)
    r = api.client.simulate_put("/plugins/_private", body=GOOD,
                                headers={"Authorization": "Bearer test-admin-token"})
    assert_error(r, 400, "name")
    r = api.client.simulate_put("/plugins/big", body=b"#" * (1024 * 1024 + 1),
                                headers={"Authorization": "Bearer test-admin-token"})
    assert_error(r, 413)
    assert not uploads.exists() or not list(uploads.iterdir())


def test_a_slow_import_is_refused(api, uploads):
    api.registry.import_timeout = 0.5
    source = b"import time\ntime.sleep(30)\n\ndef run():\n    pass\n"
    r = api.client.simulate_put("/plugins/slow", body=source,
                                headers={"Authorization": "Bearer test-admin-token"})
    assert_error(r, 400, "source")
    assert "longer than" in r.json["error"]["message"]


def put_source(api, name, source):
    return api.client.simulate_put("/plugins/" + name, body=source,
                                   headers={"Authorization": "Bearer test-admin-token"})


def test_the_trial_kills_what_the_plugin_started_and_keeps_only_its_last_words(api, uploads,
                                                                                tmp_path):
    pid_file = tmp_path / "child.pid"
    source = ("import os, sys, time\n"
              "if os.fork() == 0:\n"
              "    open(%r, 'w').write(str(os.getpid()))\n"
              "    time.sleep(60)\n"
              "    os._exit(0)\n"
              "sys.stderr.write('x' * (20 << 20))\n"
              "raise RuntimeError('the last line')\n"
              "def run():\n    pass\n" % str(pid_file)).encode()
    r = put_source(api, "forker", source)
    assert_error(r, 400, "source")
    assert r.json["error"]["message"].endswith("RuntimeError: the last line")
    pid = int(pid_file.read_text())
    wait_for(lambda: not _alive(pid), 5, what="the plugin's child killed with its group")


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def test_an_upload_may_import_what_agents_can(api, uploads):
    source = b"from octopus.timeutil import iso\n\ndef now():\n    return iso(0)\n"
    assert put_source(api, "stamp", source).status_code == 201


def test_a_dangling_link_in_a_plugin_folder_is_skipped(api, uploads):
    uploads.mkdir(exist_ok=True)
    (uploads / "ghost.py").symlink_to(uploads / "nowhere.py")
    api.registry._checked_at = None  # look at the folders now, not within the second
    r = api.call("GET", "/plugins")
    assert r.status_code == 200 and "ghost" not in [p["name"] for p in r.json["plugins"]]
    assert api.call("POST", "/tasks", {"plugin": "echo", "action": "echo"}).status_code == 201
