"""PUT /plugins/{name}: an admin uploads a plugin, checked by parsing alone: the server
never runs a line of it."""
import socket

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
    (b"def broken(:\n", "not valid Python: line 1: invalid syntax"),
    (b"import os\n\n\ndef run():\n    return (\n", "line 5: '(' was never closed"),
    (b"X = 1\n", "no action"),
    (b"def _private():\n    pass\n", "no action"),
    (b"def run():\n    pass\n\x00", "not valid Python"),
])
def test_a_plugin_that_does_not_parse_is_refused_and_audited(api, uploads, source, words):
    with unchanged(api):
        r = api.client.simulate_put("/plugins/bad", body=source,
                                    headers={"Authorization": "Bearer test-admin-token"})
        assert_error(r, 400, "source")
    assert words in r.json["error"]["message"]
    assert not (uploads / "bad.py").exists()
    entries = api.call("GET", "/audit?action=plugin.refused").json["entries"]
    assert [(e["target"], e["role"]) for e in entries] == [("bad", "admin")]
    assert words in entries[0]["detail"]["reason"]


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


def put_source(api, name, source):
    return api.client.simulate_put("/plugins/" + name, body=source,
                                   headers={"Authorization": "Bearer test-admin-token"})


def test_an_upload_is_never_run_on_the_server(api, uploads, tmp_path):
    """Module code that would leave a file and connect back is accepted by parsing alone:
    neither happens on the server."""
    marker = tmp_path / "ran-on-the-server"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    source = ("import socket\n"
              "open(%r, 'w').write('imported')\n"
              "socket.create_connection(('127.0.0.1', %d)).close()\n"
              "import module_that_does_not_exist\n\n"
              "def run():\n    pass\n" % (str(marker), listener.getsockname()[1])).encode()
    try:
        r = put_source(api, "sneaky", source)
        assert r.status_code == 201, r.text
        assert r.json["actions"] == ["run"]
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert not marker.exists()
    assert (uploads / "sneaky.py").read_bytes() == source


def test_refusals_of_names_and_sizes_are_audited(api, uploads):
    assert_error(put_source(api, "_private", GOOD), 400, "name")
    assert_error(put_source(api, "big", b"#" * (1024 * 1024 + 1)), 413)
    entries = api.call("GET", "/audit?action=plugin.refused").json["entries"]
    assert sorted(e["target"] for e in entries) == ["_private", "big"]
    assert api.call("GET", "/audit?action=plugin.upload").json["entries"] == []


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
