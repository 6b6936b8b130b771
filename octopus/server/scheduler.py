"""The server's background loop, made of small steps that tests call directly.

Each step takes ``now`` (epoch seconds) so tests drive time by hand.
"""
import logging
import threading
import time

from octopus.server.dispatch import hand_out
from octopus.store.guard import DatabaseUnusable
from octopus.timeutil import iso

log = logging.getLogger("octopus.scheduler")

TICK = 0.1  # seconds; bounds how late a task with a start time is offered
RELEASE_OVERLAP = 1.0  # seconds each look at due tasks reaches back
FIRE_BATCH = 200  # recurring tasks fired per write transaction, so others get the lock between
FIRE_BUDGET = 1.0  # seconds one tick may spend firing before sweeping and looking again
HEARTBEAT_FLUSH = 1.0  # seconds between writes of heartbeat times kept in memory (store.agents)
SWEEP_SLACK = 0.05  # seconds past a deadline the sweep looks: times are stored to the millisecond


class Scheduler:
    def __init__(self, config, store, dispatcher, clock=time.time):
        self._config = config
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._stop = threading.Event()
        self._thread = None
        self._released_at = clock()
        self._started = clock()
        self._next_sweep = 0.0
        self._next_flush = 0.0
        self._online = set()
        self._onlines = None  # the store's count of agents come online, when the sweep was planned

    def release_due(self, now):
        """Offer tasks whose start time, or a waiting run's due time, fell in
        (last release, now]; fire every recurring task whose slot has come."""
        until = iso(now)
        # The window overlaps the last one: a task committed just after that
        # look is not skipped (handing out twice is harmless: it is a no-op).
        due = self._store.due_between(iso(min(now, self._released_at) - RELEASE_OVERLAP), until)
        self._released_at = now
        for i in range(0, len(due), FIRE_BATCH):
            hand_out(self._store, self._dispatcher, due[i:i + FIRE_BATCH])
        return len(due) + self.fire_due(now)

    def fire_due(self, now):
        """Fire every recurring task whose slot has come, in batches, until none
        is left or FIRE_BUDGET seconds have gone (the rest go next tick).
        Not windowed: firing moves a task's slot on, so what is left is still due."""
        fired, started = 0, time.monotonic()
        while time.monotonic() - started < FIRE_BUDGET:
            tasks = self._store.recurring_due(iso(now), FIRE_BATCH)
            if not tasks:
                break
            woken = self._store.fire(tasks, self._dispatcher.waiting_names())
            self._dispatcher.wake(woken)
            self._dispatcher.wake_late_askers(len(tasks), woken)
            fired += len(tasks)
            if len(tasks) < FIRE_BATCH:
                break
        return fired

    def sweep_agents(self, now):
        """Agents silent for CLIENT_TIMEOUT, or stopped, are offline: their
        unfinished runs are lost."""
        online = set(self._store.online_agents())
        for name in sorted(self._online - online):
            log.warning("Agent %s offline: stopped, or no heartbeat for %ds", name,
                        self._config.CLIENT_TIMEOUT)
            self._dispatcher.release_all(name)
        self._online = online
        # Silence is counted from our own start too: after the server was
        # down, agents get CLIENT_TIMEOUT to come back before runs are lost.
        if now - self._started < self._config.CLIENT_TIMEOUT:
            return online
        cutoff = iso(now - self._config.CLIENT_TIMEOUT)
        for agent in self._store.agents_with_open_runs():
            if agent["last_heartbeat"] < cutoff or agent["stopped_at"] is not None:
                finished, requeued = self._store.lose_runs(agent["name"], silent_since=cutoff)
                log.warning("Agent %s is offline: its runs are recorded as lost (tasks given "
                            "another try: %s)", agent["name"], ", ".join(requeued) or "none")
                self._dispatcher.tasks_finished(finished)
                if requeued:
                    hand_out(self._store, self._dispatcher, requeued)
        return online

    def next_sweep(self, now):
        """When to sweep next: when the first online agent's CLIENT_TIMEOUT runs
        out (so its runs are lost then), at the end of the start-up grace, or
        HEARTBEAT_CLEANUP_INTERVAL from now, whichever is first.

        The store's times are at most a heartbeat flush old, so a deadline is
        early, never late: a sweep that finds the agent heard from meanwhile
        loses nothing, and the next deadline is later.
        """
        self._onlines = self._store.agents_came_online()
        timeout = self._config.CLIENT_TIMEOUT
        at = now + self._config.HEARTBEAT_CLEANUP_INTERVAL
        if now - self._started < timeout:
            at = min(at, self._started + timeout + SWEEP_SLACK)
        earliest = self._store.earliest_heartbeat(iso(now - timeout))
        if earliest is not None:
            at = min(at, earliest + timeout + SWEEP_SLACK)
        return max(at, now + TICK)

    def step(self, now):
        self.release_due(now)
        if now >= self._next_flush:
            self._store.flush_heartbeats()
            self._next_flush = now + HEARTBEAT_FLUSH
        if now >= self._next_sweep:
            self._store.flush_heartbeats()
            self.sweep_agents(now)
            self._next_sweep = self.next_sweep(now)
        elif self._store.agents_came_online() != self._onlines:
            # An agent came online: its deadline may come before the one planned.
            self._next_sweep = min(self._next_sweep, self.next_sweep(now))

    def run(self):
        while not self._stop.wait(TICK):
            try:
                self.step(self._clock())
            except DatabaseUnusable:  # said once in the log, where it was found
                pass
            except Exception:  # keep scheduling; the next tick may succeed
                log.exception("Scheduler step failed")

    def start(self):
        self._thread = threading.Thread(target=self.run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
