"""Heartbeats: times kept in memory and written once a second (store.agents.Heartbeats),
and heartbeats carried by asks for work."""
import pytest

from octopus.harness import wait_for
from octopus.store import Store
from octopus.timeutil import iso

INFO = {"hostname": "h", "ip": "10.0.0.1", "version": "1", "concurrency": 2}


def db_time(store, name):
    return {a["name"]: a["last_heartbeat"] for a in store.list_agents()}.get(name)


def test_a_first_heartbeat_is_written_at_once_and_says_online(store, clock):
    assert store.heartbeat("a", INFO) is True
    assert db_time(store, "a") == iso(clock())


def test_same_again_within_the_second_stays_in_memory_until_the_flush(store, clock):
    store.heartbeat("a", INFO)
    store.heartbeat("b", INFO)
    clock.advance(0.4)
    assert store.heartbeat("a", INFO) is False
    assert db_time(store, "a") == iso(clock() - 0.4)  # not written yet
    clock.advance(0.7)  # the second is up: this heartbeat writes both
    assert store.heartbeat("b", INFO) is False
    assert db_time(store, "a") == iso(clock() - 0.7)
    assert db_time(store, "b") == iso(clock())
    assert store.flush_heartbeats() == 0  # nothing left


def test_changed_fields_are_written_at_once(store, clock):
    store.heartbeat("a", INFO)
    clock.advance(0.1)
    store.heartbeat("a", dict(INFO, concurrency=8))
    [row] = store.list_agents()
    assert row["concurrency"] == 8 and row["last_heartbeat"] == iso(clock())


def test_an_agent_back_after_the_timeout_is_written_and_comes_online(store, clock):
    store.heartbeat("a", INFO)
    clock.advance(31)
    assert store.heartbeat("a", INFO) is True
    assert db_time(store, "a") == iso(clock())


def test_the_flush_never_moves_a_time_back(store, clock):
    store.heartbeat("a", INFO)
    clock.advance(0.5)
    store.heartbeat("a", INFO)  # kept in memory at t+0.5
    clock.advance(0.1)
    store.heartbeat("a", dict(INFO, ip="10.0.0.2"))  # written through at t+0.6
    store.flush_heartbeats()
    assert db_time(store, "a") == iso(clock())


def test_close_writes_what_is_in_memory(tmp_path, clock):
    path = str(tmp_path / "o.db")
    store = Store(path, clock=clock, client_timeout=30)
    store.heartbeat("a", INFO)
    clock.advance(0.5)
    store.heartbeat("a", INFO)
    store.close()
    again = Store(path, clock=clock, client_timeout=30)
    try:
        assert db_time(again, "a") == iso(clock())
    finally:
        again.close()


def test_the_scheduler_flushes_when_heartbeats_stop(store, clock):
    from tests.test_scheduler import make

    scheduler, _ = make(store, clock)
    store.heartbeat("a", INFO)
    clock.advance(0.5)
    store.heartbeat("a", INFO)
    scheduler.step(clock())
    assert db_time(store, "a") == iso(clock())


# -- an ask for work carrying the heartbeat (agents past the waiter cap) -------

def _requests(api, route, method):
    import re

    status, text = api.call("GET", "/metrics")
    assert status == 200
    pattern = r'octopus_http_requests_total\{route="%s",method="%s",code="200"\} (\d+)' % (
        re.escape(route), method)
    return sum(int(n) for n in re.findall(pattern, text))


def test_an_ask_carrying_a_heartbeat_brings_the_agent_online_and_hands_it_work(api):
    from tests.test_api import AGENT_TOKEN, create

    task = create(api)
    r = api.call("POST", "/agent/work", {"client": "new", "capacity": 1, "wait": 0,
                                         "heartbeat": dict(INFO, running=[])}, token=AGENT_TOKEN)
    assert r.status_code == 200 and r.json["heartbeat"] is True
    assert [run["task_id"] for run in r.json["runs"]] == [task["id"]]  # in the same answer
    [agent] = api.call("GET", "/agents").json["agents"]
    assert (agent["name"], agent["status"], agent["concurrency"]) == ("new", "online", 2)


@pytest.mark.parametrize("beat, field", [
    ("yes", "heartbeat"), ([1], "heartbeat"), (dict(INFO, concurrency=0), "concurrency"),
    (dict(INFO, hostname="x" * 300), "hostname")])
def test_a_bad_heartbeat_in_an_ask_is_refused_and_records_nothing(api, beat, field):
    from tests.test_api import AGENT_TOKEN, create

    task = create(api)
    r = api.call("POST", "/agent/work", {"client": "new", "capacity": 1, "wait": 0,
                                         "heartbeat": beat}, token=AGENT_TOKEN)
    assert r.status_code == 400 and r.json["error"]["field"] == field
    assert api.call("GET", "/agents").json["agents"] == []
    assert api.call("GET", "/tasks/" + task["id"]).json["status"] == "Created"


def test_an_agent_past_the_waiter_cap_beats_through_its_asks(cluster):
    """One request per TASK_CHECK_INTERVAL instead of two: no separate heartbeats."""
    # CLIENT_TIMEOUT 6: the server asks for a heartbeat every 2 s, the agent's own interval.
    cluster.start_server(env={"OCTOPUS_MAX_WAITERS": "0", "OCTOPUS_CLIENT_TIMEOUT": "6"})
    cluster.start_agent("capped", env={"OCTOPUS_HEARTBEAT_INTERVAL": "2",
                                       "OCTOPUS_TASK_CHECK_INTERVAL": "1"})
    api = cluster.api()
    first = _requests(api, "/heartbeat", "POST")
    asks = _requests(api, "/agent/work", "POST")
    wait_for(lambda: _requests(api, "/agent/work", "POST") >= asks + 8, timeout=30,
             what="eight asks for work (about eight seconds, four heartbeat intervals)")
    assert _requests(api, "/heartbeat", "POST") <= first + 1
    [agent] = api.call("GET", "/agents")[1]["agents"]
    assert agent["status"] == "online"
    task = cluster.run_task(api, {"plugin": "echo", "action": "echo", "args": [1]})
    assert task["status"] == "success" and task["executor"] == "capped"


def test_past_the_cap_a_big_fleet_is_told_to_ask_less_often(tmp_path, store):
    from tests.conftest import AppClient
    from tests.test_api import AGENT_TOKEN

    api = AppClient(tmp_path, store, MAX_WAITERS=0, MAX_POLL_RATE=4, CLIENT_TIMEOUT=9)

    def ask(name):
        r = api.call("POST", "/agent/work", {"client": name, "wait": 20}, token=AGENT_TOKEN)
        assert r.status_code == 200 and r.json["waited"] is False
        return r.json["retry_after"]

    # n agents polling at 4 asks a second in all: each every n / 4 s, at most 9 / 3 s.
    assert [ask("a%d" % i) for i in range(1, 9)] == [0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 1.8, 2.0]
    assert ask("a1") == 2.0  # an agent asking again is not counted twice
    assert [ask("b%d" % i) for i in range(20)][-1] == 3.0


def test_without_a_poll_rate_agents_past_the_cap_keep_their_own_interval(tmp_path, store):
    from tests.conftest import AppClient
    from tests.test_api import AGENT_TOKEN

    api = AppClient(tmp_path, store, MAX_WAITERS=0, MAX_POLL_RATE=0)
    for i in range(50):
        r = api.call("POST", "/agent/work", {"client": "a%d" % i, "wait": 20}, token=AGENT_TOKEN)
        assert r.json["retry_after"] == 0.0


# -- the agent's side: octopus.agent.pace ---------------------------------------

def test_a_paced_agent_carries_every_heartbeat_on_its_asks():
    from octopus.agent.pace import Pace

    pace = Pace(heartbeat_interval=10, task_check_interval=5, rand=lambda: 1.0)  # latest jitter
    now, separate, carried = 0.0, 0, 0
    pace.beat_taken(now)  # the first heartbeat, on its own
    for _ in range(30):  # paced at 10 s (the cap a server at CLIENT_TIMEOUT 30 sends)
        delay = pace.capped(10.0)
        assert 10 <= delay <= 10.5
        # The heartbeat loop wakes when its beat falls due: before the next ask?
        if now + pace.beat_due(now) < now + delay:
            separate += 1
            pace.beat_taken(now + pace.beat_due(now))
        now += delay
        if pace.carry(now):
            carried += 1
            pace.beat_taken(now)
    assert (separate, carried) == (0, 30)


def test_an_agent_holding_long_polls_heartbeats_on_its_own():
    from octopus.agent.pace import Pace

    pace = Pace(heartbeat_interval=10, task_check_interval=5)
    pace.beat_taken(0.0)
    pace.held()
    assert pace.beat_due(4.0) == 6.0
    assert not pace.carry(4.0)  # due in 6 s: more than TASK_CHECK_INTERVAL away
    assert pace.carry(5.5)


def test_a_long_task_check_interval_never_stretches_the_heartbeat():
    from octopus.agent.pace import Pace

    pace = Pace(heartbeat_interval=10, task_check_interval=60)  # asks rarely; CLIENT_TIMEOUT 30
    pace.beat_taken(0.0)
    assert pace.capped(0.0) >= 57  # the server does not pace: its own interval
    assert pace.beat_due(0.0) == 10  # but a heartbeat still every 10 s
    pace.beat_taken(100.0)
    pace.beat_taken(90.0)  # a held ask's late reply does not move it back
    assert pace.beat_at == 100.0


CONTROL = ["evil\n2026-12-04 10:00:00,000 CRITICAL octopus.server: forged", "a\rb", "tab\x1b[31m",
           "nul\x00", "next\x85line", "sep\u2028line"]


@pytest.mark.parametrize("text", CONTROL)
@pytest.mark.parametrize("field", ["hostname", "ip", "version", "instance"])
def test_control_characters_in_what_an_agent_says_of_itself_are_refused(api, field, text):
    from tests.test_api import AGENT_TOKEN, assert_error

    beat = dict(INFO, client="ctl", **{field: text})
    assert_error(api.call("POST", "/heartbeat", beat, token=AGENT_TOKEN), 400, field)
    ask = {"client": "ctl", "capacity": 1, "wait": 0, "heartbeat": dict(INFO, **{field: text})}
    if field == "instance":  # an ask says its instance beside the heartbeat
        ask = {"client": "ctl", "capacity": 1, "wait": 0, "instance": text}
    assert_error(api.call("POST", "/agent/work", ask, token=AGENT_TOKEN), 400, field)
    for name in (text, "ok" + text):
        assert_error(api.call("POST", "/agent/enroll", {"client": name}, token=AGENT_TOKEN), 400,
                     "client")
    assert api.call("GET", "/agents").json["agents"] == []


def test_a_hostname_cannot_forge_a_line_in_the_server_log(cluster):
    cluster.start_server()
    api = cluster.api()
    forged = "h\n2026-12-04 10:00:00,000 CRITICAL octopus.server: the admin token is abc"
    status, body = api.call("POST", "/heartbeat", {"client": "c1", "hostname": forged})
    assert status == 400 and body["error"]["field"] == "hostname"
    assert api.call("POST", "/heartbeat", {"client": "c1", "hostname": "fine"})[0] == 200
    api.close()
    log = cluster.root / "server" / "logs" / "server.log"
    wait_for(lambda: "Heartbeat received from c1" in log.read_text(), 10, what="the log line")
    assert not [line for line in log.read_text().splitlines() if "CRITICAL" in line]
