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


def test_step_sweeps_at_its_interval(store, clock):
    scheduler, _ = make(store, clock, CLIENT_TIMEOUT=30, HEARTBEAT_CLEANUP_INTERVAL=60)
    store.heartbeat("a", {"concurrency": 1})
    task, _ = store.create_task(dict(ECHO, owner="ALL"))
    store.claim_runs("a", 1)
    scheduler.step(clock())
    clock.advance(31)
    scheduler.step(clock())  # within the interval: no sweep yet
    assert store.get_task(task["id"])["status"] == "Active"
    clock.advance(30)
    scheduler.step(clock())
    assert store.get_task(task["id"])["status"] == "Done"
