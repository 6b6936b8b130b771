"""The server's background steps, driven by hand with a fake clock."""
from octopus import config as settings
from octopus.server.dispatch import Dispatcher
from octopus.server.scheduler import Scheduler
from octopus.timeutil import iso

ECHO = {"plugin": "echo", "action": "echo", "args": [], "kwargs": {}, "owner": "Anyone",
        "type": "Adhoc"}


def make(store, clock, **env):
    config = settings.load(settings.SERVER_SETTINGS, None,
                           {"OCTOPUS_" + k: str(v) for k, v in env.items()}, None)
    dispatcher = Dispatcher(10)
    return Scheduler(config, store, dispatcher, clock), dispatcher


def test_a_task_with_a_start_time_is_handed_out_when_due(store, clock):
    scheduler, dispatcher = make(store, clock)
    store.heartbeat("a", {"concurrency": 1})
    waiter = dispatcher.register("a")
    task, woken = store.create_task(dict(ECHO, execution_start_time=iso(clock() + 5)))
    assert woken == [] and task["status"] == "Created"
    clock.advance(4.9)
    assert scheduler.release_due(clock()) == 0
    assert not waiter.event.is_set()
    clock.advance(0.2)
    assert scheduler.release_due(clock()) == 1
    assert waiter.event.is_set()
    assert store.get_task(task["id"])["executor"] == "a"
    assert scheduler.release_due(clock()) == 0  # handed out once


def test_an_offline_agents_runs_are_lost_at_the_sweep(store, clock):
    scheduler, dispatcher = make(store, clock, CLIENT_TIMEOUT=30)
    store.heartbeat("a", {"concurrency": 1})
    store.ask_for_work("a")
    task, _ = store.create_task(dict(ECHO, owner="ALL"))
    store.claim_runs("a", 1)
    watch = dispatcher.watch_task(task["id"])
    scheduler.sweep_agents(clock())
    assert store.get_task(task["id"])["status"] == "Active"
    clock.advance(31)
    scheduler.sweep_agents(clock())
    done = store.get_task(task["id"])
    assert done["status"] == "Done" and done["result"]["lost"] == 1
    assert watch.is_set()


def test_step_loses_a_silent_agents_runs_at_client_timeout_whatever_the_interval(store, clock):
    """Once a bug: runs of an agent gone silent stayed running until the next
    HEARTBEAT_CLEANUP_INTERVAL sweep, up to a minute after CLIENT_TIMEOUT."""
    scheduler, _ = make(store, clock, CLIENT_TIMEOUT=3, HEARTBEAT_CLEANUP_INTERVAL=60)
    clock.advance(10)  # past the start-up grace
    store.heartbeat("a", {"concurrency": 1})
    task, _ = store.create_task(dict(ECHO, owner="a"))
    store.claim_runs("a", 1)
    scheduler.step(clock())
    clock.advance(1)
    store.heartbeat("a", {"concurrency": 1})  # kept in memory: the store's time is a flush late
    last = clock()
    while clock() < last + 3 - 0.1:  # ticks up to its deadline: nothing lost yet
        clock.advance(0.1)
        scheduler.step(clock())
        assert first_run(store, task) == "running", clock() - last
    for _ in range(2):  # within two ticks of CLIENT_TIMEOUT
        clock.advance(0.1)
        scheduler.step(clock())
    assert first_run(store, task) == "lost"


def first_run(store, task):
    return store.get_task(task["id"], True)["executions"][0]["status"]


def test_the_sweep_waits_for_the_earliest_deadline_or_the_interval(store, clock):
    scheduler, _ = make(store, clock, CLIENT_TIMEOUT=5, HEARTBEAT_CLEANUP_INTERVAL=60)
    clock.advance(10)
    scheduler.step(clock())
    assert scheduler.next_sweep(clock()) == clock() + 60  # no agent: the interval
    store.heartbeat("a", {})
    store.heartbeat("b", {})
    clock.advance(2)
    store.heartbeat("b", dict(ip="x"))  # written through: b's deadline moves on, a's stays
    assert abs(scheduler.next_sweep(clock()) - (clock() - 2 + 5)) < 0.1


def test_an_agent_coming_online_wakes_a_sweep_planned_later(store, clock):
    scheduler, _ = make(store, clock, CLIENT_TIMEOUT=3, HEARTBEAT_CLEANUP_INTERVAL=60)
    clock.advance(10)
    scheduler.step(clock())  # no agent: the next sweep is a minute away
    store.heartbeat("late", {"concurrency": 1})
    task, _ = store.create_task(dict(ECHO, owner="late"))
    store.claim_runs("late", 1)
    scheduler.step(clock())
    clock.advance(3.2)
    scheduler.step(clock())
    assert first_run(store, task) == "lost"
