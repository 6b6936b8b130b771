"""Per-agent credentials, revocation, the failed-authentication slowdown and
CORS: in-process against the real app and store, and with real processes."""
import hashlib
import os
import stat
import threading

import pytest

from conftest import AppClient
from octopus.harness import ADMIN_TOKEN, AGENT_TOKEN, Api, wait_for
from octopus.server.auth import FAIL_LIMIT, MAX_ADDRESSES, FailedAuth


def enroll(api, name, token=AGENT_TOKEN):
    resp = api.call("POST", "/agent/enroll", {"client": name}, token=token)
    assert resp.status_code == 201, resp.json
    assert resp.json["client"] == name
    return resp.json["token"]


def db_bytes(path):
    return b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))


def test_an_enrolled_agent_speaks_with_its_own_token_and_only_its_hash_is_stored(api, store):
    token = enroll(api, "a1")
    assert len(token) >= 40
    assert api.call("POST", "/heartbeat", {"client": "a1"}, token=token).status_code == 200
    assert api.call("POST", "/agent/work", {"client": "a1", "wait": 0},
                    token=token).status_code == 200
    assert api.call("GET", "/plugins", token=token).status_code == 200
    [agent] = api.call("GET", "/agents").json["agents"]
    assert (agent["name"], agent["credential"], agent["revoked_at"]) == ("a1", "enrolled", None)
    assert agent["enrolled_at"] and agent["status"] == "online"
    # An agent's token is an agent token: not an admin one.
    assert api.call("GET", "/tasks", token=token).status_code == 403
    stored = db_bytes(store.path)
    assert token.encode() not in stored
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored


def test_a_name_enrolls_once_unless_its_own_token_renews_it(api):
    token = enroll(api, "a1")
    again = api.call("POST", "/agent/enroll", {"client": "a1"}, token=AGENT_TOKEN)
    assert again.status_code == 409 and "already enrolled" in again.json["error"]["message"]
    assert api.call("POST", "/agent/enroll", {"client": "a1"}).status_code == 409  # admin too
    renewed = enroll(api, "a1", token=token)
    assert renewed != token
    assert api.call("POST", "/heartbeat", {"client": "a1"}, token=token).status_code == 401
    assert api.call("POST", "/heartbeat", {"client": "a1"}, token=renewed).status_code == 200
    # Its own token renews only its own name.
    other = api.call("POST", "/agent/enroll", {"client": "b1"}, token=renewed)
    assert other.status_code == 403 and other.json["error"]["field"] == "client"
    bad = api.call("POST", "/agent/enroll", {"client": "ALL"}, token=AGENT_TOKEN)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "client"


def test_an_agents_token_cannot_speak_for_another_agent(api, store):
    token_a, token_b = enroll(api, "a"), enroll(api, "b")
    for path, body in (("/heartbeat", {"client": "b"}),
                       ("/agent/work", {"client": "b", "wait": 0}),
                       ("/agent/results", {"client": "b", "results": [{"id": 1, "status": "success"}]}),
                       ("/agent/tasks", {"client": "b", "plugin": "echo", "action": "echo"})):
        resp = api.call("POST", path, body, token=token_a)
        assert resp.status_code == 403, path
        assert resp.json["error"]["field"] == "client" and "cannot speak for b" in \
            resp.json["error"]["message"]
    # Nor report b's run under its own name: the run is fenced.
    assert api.call("POST", "/heartbeat", {"client": "b"}, token=token_b).status_code == 200
    task = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo", "owner": "b"}).json
    [run] = api.call("POST", "/agent/work", {"client": "b", "wait": 0}, token=token_b).json["runs"]
    stolen = api.call("POST", "/agent/results", {"client": "a", "results": [
        {"id": run["id"], "status": "failed", "result": "forged", "lease": run["lease"]}]},
        token=token_a)
    assert stolen.status_code == 409 and stolen.json["rejected"][0]["reason"].startswith("fenced")
    mine = api.call("POST", "/agent/results", {"client": "b", "results": [
        {"id": run["id"], "status": "success", "result": 1, "lease": run["lease"]}]}, token=token_b)
    assert mine.json["acked"] == [run["id"]]
    assert api.call("GET", "/tasks/" + task["id"]).json["status"] == "success"


def test_the_shared_token_speaks_only_for_names_that_never_enrolled(api):
    enroll(api, "enrolled")
    refused = api.heartbeat("enrolled")
    assert refused.status_code == 403 and refused.json["error"]["field"] == "client"
    assert api.heartbeat("newcomer").status_code == 200  # the guide's curl heartbeat
    assert api.call("POST", "/agent/work", {"client": "enrolled", "wait": 0},
                    token=AGENT_TOKEN).status_code == 403
    # The admin token speaks for anyone.
    assert api.call("POST", "/heartbeat", {"client": "enrolled"}).status_code == 200


def test_require_enrollment_leaves_the_shared_token_only_enrolling(tmp_path, store):
    api = AppClient(tmp_path, store, REQUIRE_ENROLLMENT="true")
    refused = api.heartbeat("newcomer")
    assert refused.status_code == 403 and "only to enroll" in refused.json["error"]["message"]
    assert api.call("GET", "/plugins", token=AGENT_TOKEN).status_code == 403
    token = enroll(api, "newcomer")
    assert api.call("POST", "/heartbeat", {"client": "newcomer"}, token=token).status_code == 200


def test_revoking_refuses_the_token_and_loses_the_agents_runs_at_once(api, store):
    token = enroll(api, "r1")
    assert api.call("POST", "/heartbeat", {"client": "r1"}, token=token).status_code == 200
    task = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo", "owner": "Anyone"}).json
    [run] = api.call("POST", "/agent/work", {"client": "r1", "wait": 0}, token=token).json["runs"]
    assert api.call("POST", "/agents/r1/revoke", token=AGENT_TOKEN).status_code == 403
    resp = api.call("POST", "/agents/r1/revoke")
    assert resp.status_code == 200
    assert resp.json["credential"] == "revoked" and resp.json["tasks"] == [task["id"]]
    assert api.call("POST", "/agents/r1/revoke").status_code == 200  # again: no change
    gone = api.call("POST", "/heartbeat", {"client": "r1"}, token=token)
    assert gone.status_code == 401 and "revoked" in gone.json["error"]["message"]
    assert api.heartbeat("r1").status_code == 403  # nor the shared token for it
    [agent] = api.call("GET", "/agents").json["agents"]
    assert (agent["credential"], agent["status"]) == ("revoked", "offline")
    assert api.call("GET", "/health").json["agents_online"] == 0  # offline there too
    stats = api.call("GET", "/stats").json["agents"]
    assert (stats["online"], stats["offline"]) == (0, 1)
    runs = api.call("GET", "/tasks/" + task["id"]).json["executions"]
    assert (run["id"], "lost") in {(e["id"], e["status"]) for e in runs}
    assert any(e["status"] == "queued" and e["attempt"] == 2 for e in runs)
    # Another agent gets the retry.
    assert api.heartbeat("r2").status_code == 200
    [retry] = api.call("POST", "/agent/work", {"client": "r2", "wait": 0},
                       token=AGENT_TOKEN).json["runs"]
    assert retry["task_id"] == task["id"] and retry["attempt"] == 2
    # Revoked names do not enroll again until forgotten.
    again = api.call("POST", "/agent/enroll", {"client": "r1"}, token=AGENT_TOKEN)
    assert again.status_code == 409 and "DELETE /agents/r1" in again.json["error"]["message"]
    assert api.call("DELETE", "/agents/r1").status_code == 204
    assert [a["name"] for a in api.call("GET", "/agents").json["agents"]] == ["r2"]
    assert api.call("DELETE", "/agents/r1").status_code == 404
    assert api.call("POST", "/agents/nobody/revoke").status_code == 404
    new = enroll(api, "r1")
    assert api.call("POST", "/heartbeat", {"client": "r1"}, token=new).status_code == 200


def test_revoking_answers_the_agents_held_ask_at_once(api):
    token = enroll(api, "h1")
    assert api.call("POST", "/heartbeat", {"client": "h1"}, token=token).status_code == 200
    replies = []
    held = threading.Thread(target=lambda: replies.append(api.call(
        "POST", "/agent/work", {"client": "h1", "wait": 20}, token=token)), daemon=True)
    held.start()
    wait_for(lambda: api.dispatcher.waiting() == 1, 10, what="the ask held")
    assert api.call("POST", "/agents/h1/revoke").status_code == 200
    [reply] = wait_for(lambda: replies, 10, what="the held ask answered, not held its 20 s")
    assert reply.status_code == 200 and reply.json["runs"] == []
    assert api.call("POST", "/agent/work", {"client": "h1", "wait": 20},
                    token=token).status_code == 401


def test_revoking_a_name_that_never_enrolled_bars_the_shared_token(api):
    assert api.heartbeat("plain").status_code == 200
    assert api.call("POST", "/agents/plain/revoke").json["credential"] == "revoked"
    assert api.heartbeat("plain").status_code == 403
    assert api.call("DELETE", "/agents/plain").status_code == 204
    assert api.heartbeat("plain").status_code == 200


def test_failed_authentication_is_slowed_down_but_good_tokens_pass(api, clock):
    addr, other = "192.0.2.7", "192.0.2.8"
    assert api.call("GET", "/tasks", remote_addr=addr).status_code == 200
    for _ in range(FAIL_LIMIT):
        assert api.call("GET", "/tasks", token="guess", remote_addr=addr).status_code == 401
    slowed = api.call("GET", "/tasks", token="guess", remote_addr=addr)
    assert slowed.status_code == 429
    assert int(slowed.headers["Retry-After"]) >= 1
    assert "too many failed" in slowed.json["error"]["message"]
    # Not even the right token is checked unless it worked from here before ...
    assert api.call("POST", "/heartbeat", {"client": "x"}, token=AGENT_TOKEN,
                    remote_addr=addr).status_code == 429
    assert api.call("GET", "/tasks", token=None, remote_addr=addr).status_code == 429
    # ... except an agent's own token (server-made, nothing to guess), even one never
    # seen from here (after a restart, say): a guesser behind the NAT locks no agent out.
    own = enroll(api, "behind-nat", token=ADMIN_TOKEN)
    assert api.call("POST", "/heartbeat", {"client": "behind-nat"}, token=own,
                    remote_addr=addr).status_code == 200
    # ... the admin's did, so it still passes; other addresses are not affected.
    assert api.call("GET", "/tasks", remote_addr=addr).status_code == 200
    assert api.call("GET", "/tasks", token="guess", remote_addr=other).status_code == 401
    assert api.call("GET", "/health", remote_addr=addr).status_code == 200  # public
    clock.advance(61)  # the window slides past the failures
    assert api.call("GET", "/tasks", token="guess", remote_addr=addr).status_code == 401
    assert api.call("POST", "/heartbeat", {"client": "x"}, token=AGENT_TOKEN,
                    remote_addr=addr).status_code == 200


def test_failed_authentication_tables_are_bounded(clock):
    failures = FailedAuth(clock)
    for i in range(MAX_ADDRESSES + 500):
        failures.failed("10.%d.%d.1" % (i // 256, i % 256))
    assert len(failures._failures) == MAX_ADDRESSES
    for _ in range(100):
        failures.failed("10.0.0.1")
    assert len(failures._failures["10.0.0.1"]) == FAIL_LIMIT


@pytest.mark.parametrize("method, path", [("OPTIONS", "/tasks"), ("OPTIONS", "/heartbeat"),
                                          ("GET", "/tasks"), ("GET", "/health"),
                                          ("OPTIONS", "/health"), ("GET", "/")])
def test_no_cors_headers_on_any_response(api, method, path):
    resp = api.call(method, path, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert not [h for h in resp.headers if h.lower().startswith("access-control-")]


# -- real processes -----------------------------------------------------------


def test_an_agent_enrolls_once_and_keeps_its_identity_across_restarts(cluster):
    cluster.start_server()
    cluster.start_agent("e1")
    identity = cluster.root / "agent-e1" / "agent" / "identity.token"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    name, token = identity.read_text().split()
    assert name == "e1" and len(token) >= 43
    api = cluster.api()
    [agent] = api.call("GET", "/agents")[1]["agents"]
    assert agent["credential"] == "enrolled"
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo"})["executor"] == "e1"
    assert cluster.agents["e1"].stop() == 0
    cluster.start_agent("e1")
    assert identity.read_text().split() == ["e1", token]
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo"})["executor"] == "e1"
    server_log = (cluster.root / "server" / "logs" / "server.log").read_text()
    assert server_log.count("Agent e1 enrolled") == 1
    # Its token speaks for it, the shared token no longer does; new names still may.
    with_token = Api(cluster.port, token)
    assert with_token.call("POST", "/heartbeat", {"client": "e1"})[0] == 200
    assert with_token.call("POST", "/heartbeat", {"client": "e2"})[0] == 403
    shared = cluster.api(AGENT_TOKEN)
    assert shared.call("POST", "/heartbeat", {"client": "e1"})[0] == 403
    assert shared.call("POST", "/heartbeat", {"client": "curl-test"})[0] == 200
    status, _ = cluster.api(ADMIN_TOKEN).call("GET", "/tasks")
    assert status == 200
    stored = db_bytes(str(cluster.root / "server" / "octopus.db"))
    assert stored and token.encode() not in stored
    for client in (api, with_token, shared):
        client.close()


def test_a_revoked_agent_stops_and_its_run_is_tried_again_on_another(cluster, tmp_path):
    cluster.start_server()
    doomed = cluster.start_agent("doomed", env={"OCTOPUS_CONCURRENCY": "1"})
    token = (cluster.root / "agent-doomed" / "agent" / "identity.token").read_text().split()[1]
    api = cluster.api()
    started = tmp_path / "started"
    _, task = api.call("POST", "/tasks", {"plugin": "shell", "action": "run", "args": [
        "if [ -e {0} ]; then echo second try; else touch {0}; sleep 60; fi".format(started)]})
    wait_for(started.exists, 10, what="run started")
    cluster.start_agent("spare", env={"OCTOPUS_CONCURRENCY": "1"})
    status, body = api.call("POST", "/agents/doomed/revoke")
    assert status == 200 and body["tasks"] == [task["id"]]
    wait_for(lambda: not doomed.alive(), 20, what="the revoked agent to exit")
    assert doomed.stop() == 3
    assert "this agent's credential was revoked" in doomed.log()
    assert Api(cluster.port, token).call("POST", "/heartbeat", {"client": "doomed"})[0] == 401
    done = wait_for(lambda: _final(api, task["id"]), 30, what="the retry on the spare agent")
    assert done["status"] == "success" and done["result"]["stdout"] == "second try\n"
    assert [(e["status"], e["attempt"], e["client"]) for e in done["executions"]] == [
        ("lost", 1, "doomed"), ("success", 2, "spare")]
    # Started again, it cannot enroll while revoked; once forgotten, it can.
    again = cluster.start_agent("doomed", wait=False)
    wait_for(lambda: not again.alive(), 20, what="the refused agent to exit")
    assert again.stop() == 3 and "will not enroll agent doomed" in again.log()
    assert api.call("DELETE", "/agents/doomed")[0] == 204
    cluster.start_agent("doomed")
    [agent] = [a for a in api.call("GET", "/agents")[1]["agents"] if a["name"] == "doomed"]
    assert agent["credential"] == "enrolled" and agent["status"] == "online"
    api.close()


def _final(api, task_id):
    _, task = api.call("GET", "/tasks/%s?wait=5" % task_id)
    return task if task["status"] not in ("Created", "Active") else None


def test_an_agents_own_proposed_token_makes_enrolling_safe_to_repeat(api):
    token = "t" * 43
    for _ in range(2):  # the first answer lost: asked again, answered the same
        r = api.call("POST", "/agent/enroll", {"client": "p1", "token": token}, token=AGENT_TOKEN)
        assert r.status_code == 201 and r.json["token"] == token
    assert api.call("POST", "/heartbeat", {"client": "p1"}, token=token).status_code == 200
    other = api.call("POST", "/agent/enroll", {"client": "p1", "token": "u" * 43},
                     token=AGENT_TOKEN)
    assert other.status_code == 409  # the name is someone else's token now
    taken = api.call("POST", "/agent/enroll", {"client": "p3", "token": token}, token=AGENT_TOKEN)
    assert taken.status_code == 409 and taken.json["error"]["field"] == "token"  # p1's token
    for bad in ("short", "x" * 43 + "!", 5, "y" * 257):
        r = api.call("POST", "/agent/enroll", {"client": "p2", "token": bad}, token=AGENT_TOKEN)
        assert r.status_code == 400 and r.json["error"]["field"] == "token"
    assert api.call("GET", "/agents").json["agents"] == [] or all(
        a["name"] != "p2" for a in api.call("GET", "/agents").json["agents"])


def test_a_forgotten_agent_enrolls_its_token_again_and_goes_on(cluster):
    cluster.start_server()
    cluster.start_agent("phoenix", env={"OCTOPUS_HEARTBEAT_INTERVAL": "1"})
    api = cluster.api()
    assert api.call("DELETE", "/agents/phoenix")[0] == 204
    agent = cluster.agents["phoenix"]
    wait_for(lambda: "enrolling it again" in agent.log(), 20, what="the agent to notice")
    cluster.wait_online("phoenix")
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo", "owner": "phoenix"})[
        "status"] == "success"
    assert agent.alive()


LONG_ADMIN, LONG_SHARED, LONG_METRICS = "A" * 43, "S" * 43, "M" * 43


def _app_with_proposable_tokens(tmp_path, store):
    """The real app with admin, shared and metrics tokens of the proposable kind
    (as generated ones are: 43 URL-safe characters)."""
    import falcon.testing

    from conftest import server_config
    from octopus import resources
    from octopus.plugins import Registry
    from octopus.server.app import create_app
    from octopus.server.dispatch import Dispatcher

    config = server_config(tmp_path, METRICS_TOKEN=LONG_METRICS)
    app = create_app(config, store, Registry(str(resources.bundled_plugins_dir())),
                     Dispatcher(config.MAX_WAITERS, config.MAX_POLL_RATE), LONG_ADMIN,
                     LONG_SHARED, str(resources.static_dir()), clock=store.clock)
    return falcon.testing.TestClient(app)


def test_a_proposed_token_of_the_server_or_of_an_agent_gets_one_same_refusal(tmp_path, store):
    client = _app_with_proposable_tokens(tmp_path, store)

    def propose(name, token):
        return client.simulate_post("/agent/enroll", json={"client": name, "token": token},
                                    headers={"Authorization": "Bearer " + LONG_SHARED})

    mine = "m" + "y" * 42
    assert propose("first", mine).status_code == 201
    answers = [propose("second", token) for token in (mine, LONG_ADMIN, LONG_SHARED,
                                                      LONG_METRICS)]
    assert [(r.status_code, r.json) for r in answers] == [
        (409, {"error": {"message": "choose another token", "field": "token"}})] * 4
    # None of them became an agent's token: the admin token is still only the admin's.
    assert store.credentials() and [c["name"] for c in store.credentials()] == ["first"]
    tasks = client.simulate_get("/tasks", headers={"Authorization": "Bearer " + LONG_ADMIN})
    assert tasks.status_code == 200


def test_an_agent_whose_proposed_token_is_refused_makes_a_new_one(cluster, monkeypatch, tmp_path):
    """An agent proposes a token the server refuses (here: the shared token itself,
    as a broken random source could): it makes a fresh one and enrolls with it."""
    from octopus.agent import identity as identity_module
    from octopus.agent.client import ServerClient, ServerError

    shared = "s" * 43
    cluster.start_server(env={"OCTOPUS_AGENT_TOKEN": shared})
    made = iter([shared, "f" * 43])
    monkeypatch.setattr(identity_module.secrets, "token_urlsafe", lambda n: next(made))
    ident = identity_module.Identity(str(tmp_path / "agent"), "fresh", shared,
                                     on_revoked=lambda: None)
    client = ServerClient(cluster.url, ident)
    with pytest.raises(ServerError) as refused:
        ident.enroll(client)
    assert (refused.value.status, refused.value.field) == (409, "token")
    assert not ident.revoked and not ident.ready
    ident.enroll(client)  # the next try, as the agent's heartbeat loop makes it
    assert ident.ready and ident.token() == "f" * 43
    assert (tmp_path / "agent" / "identity.token").read_text().split() == ["fresh", "f" * 43]
    client.close()
    api = cluster.api()
    assert api.call("POST", "/heartbeat", {"client": "fresh"}, token="f" * 43)[0] == 200


def test_an_enrolled_agent_restarts_without_the_shared_token(cluster):
    """Only enrolling needs the shared token: restarted with no
    OCTOPUS_AGENT_TOKEN at all, an enrolled agent runs on its own token."""
    cluster.start_server()
    cluster.start_agent("solo", env={"OCTOPUS_HEARTBEAT_INTERVAL": "1"})
    assert cluster.agents["solo"].stop() == 0
    del cluster._env["OCTOPUS_AGENT_TOKEN"]  # nor is there an agent.token in its data dir
    assert not (cluster.root / "agent-solo" / "agent.token").exists()
    solo = cluster.start_agent("solo", env={"OCTOPUS_HEARTBEAT_INTERVAL": "1"})
    api = cluster.api()
    assert cluster.run_task(api, {"plugin": "echo", "action": "echo", "owner": "solo"})[
        "status"] == "success"
    # A name that never enrolled still needs it, and says so at start.
    fresh = cluster.start_agent("fresh", wait=False)
    wait_for(lambda: not fresh.alive(), 20, what="the agent without a token to exit")
    assert fresh.stop() != 0 and "no agent token" in fresh.log()
    assert "Traceback" not in fresh.log()
    # Forgotten, it would have to enroll again: it stops and says what it needs.
    assert api.call("DELETE", "/agents/solo")[0] == 204
    wait_for(lambda: not solo.alive(), 20, what="the forgotten agent to stop")
    assert "no shared agent token" in solo.log() and "OCTOPUS_AGENT_TOKEN" in solo.log()
    api.close()
