"""Schemathesis fuzzes a real server process against GET /openapi.json.

Every operation gets up to MAX_EXAMPLES requests, valid and invalid by the
document (derandomized, so a run is the same run again).  Checked on each:
no 5xx; every 4xx has the JSON error body; the reply is one the document
lists, with its content type and shape; and a refused request on a route
that writes changes no count of tasks, runs, agents or plugins.

The server holds nothing long: MAX_WAITERS=0 answers every ask for work at
once, and a ``wait`` query parameter is cut to WAIT_CAP (the document allows
60 s; the fuzzer would otherwise sit out whole minutes on tasks for agents
that never come).
"""
import json
import os
import sqlite3
import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.specs.openapi import checks  # noqa: E402

from octopus.harness import ADMIN_TOKEN, Cluster  # noqa: E402
from octopus.server import openapi  # noqa: E402

pytestmark = pytest.mark.processes  # real server, agent or script processes

# Left to other tests: the token rules (401/403 in tests/test_api.py; requests
# without one would also trip the limit on failed authentications), and
# "every request the document allows succeeds", which it cannot promise
# (a plugin must exist, a time must parse, a task must not be running).
EXCLUDED_CHECKS = [checks.ignored_auth, checks.missing_required_header,
                   checks.positive_data_acceptance]
MAX_EXAMPLES = 100
WAIT_CAP = 0.2
REQUEST_TIMEOUT = 10.0
WRITES = {"POST", "PUT", "DELETE"}
COUNTED = {"examples": 0, "by_status": {}}


class FuzzServer:
    def __init__(self, root):
        self.cluster = Cluster(root, env={
            "OCTOPUS_LONG_POLL_TIMEOUT": "1", "OCTOPUS_MAX_WAITERS": "0",
            # Agents the fuzzer invents stay online, so none is lost meanwhile.
            "OCTOPUS_CLIENT_TIMEOUT": "86400", "OCTOPUS_RETENTION_DAYS": "0"})
        self.cluster.start_server()
        self.db_path = os.path.join(root, "server", "octopus.db")
        self.uploads = os.path.join(root, "server", "plugins")
        self.seeded = self._seed()

    def _seed(self):
        api = self.cluster.api()
        ids = []
        for owner in ("Anyone", "web-01", "ALL"):
            status, task = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo",
                                                       "args": [owner], "owner": owner})
            assert status == 201, task
            ids.append(task["id"])
        api.close()
        return ids

    def counts(self):
        """Counts only requests change: runs of recurring tasks are made by the
        scheduler in between, so they are left out."""
        conn = sqlite3.connect(self.db_path, timeout=10)
        try:
            tasks, agents, runs = conn.execute(
                "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM agents), "
                "(SELECT count(*) FROM executions e JOIN tasks t ON t.id = e.task_id "
                "WHERE t.type = 'Adhoc')").fetchone()
        finally:
            conn.close()
        plugins = len(os.listdir(self.uploads)) if os.path.isdir(self.uploads) else 0
        return {"tasks": tasks, "agents": agents, "adhoc_runs": runs, "plugins": plugins}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    server = FuzzServer(tmp_path_factory.mktemp("fuzz"))
    started = time.monotonic()
    yield server
    server.cluster.stop()
    log = server.cluster.server.log()
    print("\nfuzz: %d examples in %.1fs, by status %s" % (
        COUNTED["examples"], time.monotonic() - started,
        json.dumps(COUNTED["by_status"], sort_keys=True)))
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:4000]


# The document as Python data: the operations are known when tests are
# collected, before a server runs (schemathesis.pytest.from_fixture, which
# would load it from the server, fails on pytest 9 in this schemathesis).
# test_the_server_serves_this_document ties it to what GET /openapi.json says.
schema = schemathesis.openapi.from_dict(openapi.document())


def test_the_server_serves_this_document(fuzz_server):
    api = fuzz_server.cluster.api(token="")
    status, served = api.call("GET", "/openapi.json")
    api.close()
    assert status == 200 and served == json.loads(json.dumps(openapi.document()))


def _cap_waits(case):
    query = case.query or {}
    raw = query.get("wait")
    try:
        if raw is not None and float(raw) > WAIT_CAP:
            query["wait"] = str(WAIT_CAP)
    except (TypeError, ValueError):
        pass


def assert_error_body(response):
    # schemathesis keeps headers lower-cased, each a list of values
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (response.status_code, response.headers)
    body = response.json()
    error = body["error"]
    assert isinstance(error, dict) and set(error) >= {"message", "field"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert error["field"] is None or isinstance(error["field"], str), body


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_fuzz(case, fuzz_server):
    _cap_waits(case)
    writes = case.method.upper() in WRITES
    before = fuzz_server.counts() if writes else None
    # The admin token on every request: one the fuzzer made up would be a 401
    # (and then a 429), never reaching the code under test.
    case.headers = dict(case.headers or {}, Authorization="Bearer " + ADMIN_TOKEN)
    response = case.call(base_url=fuzz_server.cluster.url, timeout=REQUEST_TIMEOUT)
    COUNTED["examples"] += 1
    code = str(response.status_code)
    COUNTED["by_status"][code] = COUNTED["by_status"].get(code, 0) + 1
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:2000])
    if 400 <= response.status_code < 500:
        if case.method.upper() != "HEAD":  # no body to a HEAD
            assert_error_body(response)
        if writes:
            assert fuzz_server.counts() == before, (case.method, case.formatted_path,
                                                    response.text[:500])
    case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
