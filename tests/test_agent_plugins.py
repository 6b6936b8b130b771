"""The agent's plugin cache against a real server."""
import hashlib

from octopus.agent.client import ServerClient
from octopus.agent.plugins import PluginCache, PluginError
from octopus.harness import AGENT_TOKEN

import pytest


@pytest.fixture
def served(cluster):
    cluster.start_server()
    return ServerClient(cluster.url, AGENT_TOKEN)


def test_the_cache_fetches_and_verifies_a_plugin(served, tmp_path):
    cache = PluginCache(str(tmp_path / "cache"), served)
    source, headers = served.request("GET", "/plugins/echo", raw=True)
    sha = headers["X-Plugin-SHA256"]
    assert hashlib.sha256(source).hexdigest() == sha
    path = cache.ensure("echo", sha)
    assert open(path, "rb").read() == source


def test_a_plugin_replaced_since_the_hand_out_is_run_in_its_current_version(served, tmp_path):
    # The agent has an older copy cached; the run was handed out with the
    # sha256 of a version the server has replaced since.
    folder = tmp_path / "cache"
    folder.mkdir()
    older = b"def echo(*args):\n    return 'the older copy'\n"
    (folder / "echo.py").write_bytes(older)
    cache = PluginCache(str(folder), served)
    path = cache.ensure("echo", "0" * 64)
    current, headers = served.request("GET", "/plugins/echo", raw=True)
    assert open(path, "rb").read() == current != older
    assert hashlib.sha256(current).hexdigest() == headers["X-Plugin-SHA256"]


def test_a_plugin_name_that_is_not_an_identifier_is_refused(served, tmp_path):
    cache = PluginCache(str(tmp_path / "cache"), served)
    with pytest.raises(PluginError):
        cache.ensure("../etc/passwd", None)
