"""PUT /plugins/{name}: an admin uploads a plugin, tried in a separate process first."""
import pytest

from test_api import AGENT_TOKEN, assert_error, unchanged

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
