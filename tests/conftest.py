"""Shared fixtures: a real SQLite store, the real app over it, real processes.

Tests that start processes (a server, an agent, the pyz, a browser, a
script) are marked ``processes``, so ``pytest -m "not processes"`` runs the
fast part alone: a module says so with ``pytestmark``, a test with the mark,
and a test using the ``cluster`` fixture is marked here.  An unmarked test
that starts a process fails and says so.
"""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from octopus import config as settings  # noqa: E402
from octopus.harness import ADMIN_TOKEN, AGENT_TOKEN, Cluster  # noqa: E402


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    from octopus.store import Store

    s = Store(str(tmp_path / "octopus.db"), clock=clock, client_timeout=30)
    yield s
    s.close()


def server_config(tmp_path, **overrides):
    env = {"OCTOPUS_" + k: str(v) for k, v in overrides.items()}
    env.setdefault("OCTOPUS_DATA_DIR", str(tmp_path))
    return settings.load(settings.SERVER_SETTINGS, None, env, None)


class AppClient:
    """falcon's TestClient over the real app and store, with tokens at hand."""

    def __init__(self, tmp_path, store, **overrides):
        import falcon.testing

        from octopus import resources
        from octopus.plugins import Registry
        from octopus.server.app import create_app
        from octopus.server.dispatch import Dispatcher

        self.config = server_config(tmp_path, **overrides)
        self.store = store
        self.registry = Registry(str(resources.bundled_plugins_dir()))
        self.dispatcher = Dispatcher(self.config.MAX_WAITERS, self.config.MAX_POLL_RATE,
                                     max_delay=self.config.CLIENT_TIMEOUT / 3)
        app = create_app(self.config, store, self.registry, self.dispatcher, ADMIN_TOKEN,
                         AGENT_TOKEN, str(resources.static_dir()), clock=store.clock)
        self.client = falcon.testing.TestClient(app)

    def call(self, method, path, body=None, token=ADMIN_TOKEN, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = "Bearer " + token
        if body is not None:
            kwargs["json"] = body
        return self.client.simulate_request(method, path, headers=headers, **kwargs)

    def heartbeat(self, name, **info):
        return self.call("POST", "/heartbeat", dict({"client": name}, **info), token=AGENT_TOKEN)


@pytest.fixture
def api(tmp_path, store):
    return AppClient(tmp_path, store)


@pytest.fixture
def cluster(tmp_path):
    with Cluster(tmp_path / "cluster") as c:
        yield c


def pytest_collection_modifyitems(items):
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.processes)


@pytest.fixture(autouse=True)
def _processes_are_marked(request, monkeypatch):
    if request.node.get_closest_marker("processes") is not None:
        return
    name = request.node.nodeid

    def refuse(self, *args, **kwargs):
        raise AssertionError("%s starts a process: mark it @pytest.mark.processes" % name)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def pytest_report_header(config):
    return "octopus tests: real SQLite, real processes on 127.0.0.1 (python %s)" % sys.version.split()[0]


