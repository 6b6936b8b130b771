"""Waking agents that wait for work, and clients that wait for a task.

The store decides who runs what; this only wakes the requests held for
them.  An agent registers as a waiter *before* it looks for work, so work
handed to it between its look and its wait still wakes it.
"""
import threading
import time


class Waiter:
    __slots__ = ("name", "instance", "capacity", "event", "cancelled")

    def __init__(self, name, instance, capacity):
        self.name = name
        self.instance = instance
        self.capacity = capacity  # 0: a full agent, listening only for cancels
        self.event = threading.Event()
        self.cancelled = False  # its agent restarted: answer without handing out work


PACE_WINDOW = 60.0  # seconds an agent past the waiter cap is counted as polling


class Dispatcher:
    def __init__(self, max_waiters, poll_rate=0, max_delay=10.0, clock=time.monotonic):
        self.max_waiters = max_waiters
        self._poll_rate = poll_rate  # asks a second invited from agents past the cap; 0: any
        self._max_delay = max_delay
        self._clock = clock
        self._pollers = {}  # agents past the cap -> when they last asked
        self._pollers_pruned = clock()
        self._lock = threading.Lock()
        self._waiters = {}          # agent name -> [Waiter]
        self._count = 0
        self._task_waits = {}       # task id -> [Event]
        self._instances = {}        # agent name -> its latest process's instance id
        self._cancelling = set()    # agents that may have runs to stop (looked up in the store)
        self.closed = False

    # -- agents -----------------------------------------------------------

    def register(self, name, instance=None, capacity=1):
        """A Waiter for ``name``, or None when the cap on waiters is reached.

        A request from a new ``instance`` of the agent (it restarted) releases
        the requests its old process left behind: nobody reads their replies.
        """
        with self._lock:
            if self.closed:
                return None
            if self._count >= self.max_waiters:
                return None
            waiter = Waiter(name, instance, capacity)
            self._waiters.setdefault(name, []).append(waiter)
            self._count += 1
            return waiter

    def release_others(self, name, instance):
        """A heartbeat from ``instance`` of agent ``name``: if that is a new process,
        drop the requests its former one left held.  Returns True when it replaces
        a former process this server heard from (not for the first one it hears).
        """
        with self._lock:
            former = self._instances.get(name)
            if instance is None or former == instance:
                return False
            self._instances[name] = instance
            self._release_others(name, instance)
            return former is not None

    def is_latest(self, name, instance):
        """Is ``instance`` agent ``name``'s latest process (or not known to be older)?"""
        with self._lock:
            latest = self._instances.get(name)
        return instance is None or latest is None or latest == instance

    def release(self, name, instance):
        """Agent ``name`` (this ``instance`` of it) is stopping: drop its held requests."""
        with self._lock:
            for waiter in self._waiters.get(name, ()):
                if waiter.instance == instance:
                    waiter.cancelled = True
                    waiter.event.set()

    def release_all(self, name):
        """Agent ``name`` went offline: requests it left held must not take work."""
        with self._lock:
            for waiter in self._waiters.get(name, ()):
                waiter.cancelled = True
                waiter.event.set()

    def _release_others(self, name, instance):
        for old in self._waiters.get(name, ()):
            if instance is not None and old.instance not in (None, instance):
                old.cancelled = True
                old.event.set()

    def unregister(self, waiter):
        with self._lock:
            waiters = self._waiters.get(waiter.name, [])
            if waiter in waiters:
                waiters.remove(waiter)
                self._count -= 1
                if not waiters:
                    del self._waiters[waiter.name]

    def poll_delay(self, name):
        """Seconds agent ``name``, answered at once because of the waiter cap,
        should wait at least before it asks again (it waits its own
        TASK_CHECK_INTERVAL when that is longer).

        The agents past the cap, spread out, ask ``poll_rate`` times a second
        in all: ten thousand asking every 5 s would take the server's whole
        core.  Never more than ``max_delay``, which keeps them online (each
        ask carries the agent's heartbeat).
        """
        now = self._clock()
        with self._lock:
            self._pollers[name] = now
            if now - self._pollers_pruned > PACE_WINDOW / 10:
                cutoff = now - PACE_WINDOW
                self._pollers = {n: t for n, t in self._pollers.items() if t >= cutoff}
                self._pollers_pruned = now
            polling = len(self._pollers)
        if not self._poll_rate:
            return 0.0
        return round(min(self._max_delay, polling / self._poll_rate), 1)

    def waiting(self):
        with self._lock:
            return self._count

    def waiting_names(self):
        """Agents holding a request for work now, not yet woken: each has a free slot.

        One woken for a task is left out until it looks again, so tasks
        arriving together go to different agents.
        """
        with self._lock:
            return [n for n, ws in self._waiters.items()
                    if any(w.capacity and not (w.cancelled or w.event.is_set()) for w in ws)]

    def wake(self, names):
        """Wake the agents named: they have work."""
        with self._lock:
            chosen = [w for n in names for w in self._waiters.get(n, ())]
        for waiter in chosen:
            waiter.event.set()

    def wake_late_askers(self, count, woken=()):
        """Wake up to ``count`` asking agents not in ``woken``.

        A hand-out reads the askers before its transaction, so an agent that
        began to ask meanwhile is missed; woken now, it takes what is left
        (an agent registers before it looks).
        """
        self.wake([n for n in self.waiting_names() if n not in woken][:count])

    def cancel(self, agents, wake=True):
        """Runs on ``agents`` were asked to stop: tell them at once."""
        with self._lock:
            self._cancelling.update(agents)
        if wake:
            self.wake(agents)

    def may_cancel(self, name):
        """Might ``name`` have runs to stop?  Saves a query on every ask."""
        with self._lock:
            return name in self._cancelling

    def cancelled_none(self, name):
        with self._lock:
            self._cancelling.discard(name)

    def widen(self, waiter, capacity):
        """A full agent's held ask has room now: it counts as asking for work."""
        with self._lock:
            waiter.capacity = capacity

    def wake_full(self, name):
        """Wake ``name``'s requests made while it was full: it may have room now."""
        with self._lock:
            chosen = [w for w in self._waiters.get(name, ()) if not w.capacity]
        for waiter in chosen:
            waiter.event.set()

    def close(self):
        """Release every held request, so the server can stop at once."""
        with self._lock:
            self.closed = True
            events = [w.event for ws in self._waiters.values() for w in ws]
            events += [e for es in self._task_waits.values() for e in es]
        for event in events:
            event.set()

    # -- clients waiting for a task to finish -----------------------------

    def watch_task(self, task_id):
        event = threading.Event()
        with self._lock:
            self._task_waits.setdefault(task_id, []).append(event)
        return event

    def unwatch_task(self, task_id, event):
        with self._lock:
            events = self._task_waits.get(task_id, [])
            if event in events:
                events.remove(event)
            if not events:
                self._task_waits.pop(task_id, None)

    def watchers(self, task_id):
        """How many requests are held waiting for ``task_id``."""
        with self._lock:
            return len(self._task_waits.get(task_id, ()))

    def tasks_finished(self, task_ids):
        with self._lock:
            events = [e for t in task_ids for e in self._task_waits.get(t, ())]
        for event in events:
            event.set()


def hand_out(store, dispatcher, task_ids):
    """Hand out due tasks to the agents asking now and wake them."""
    woken = store.hand_out(task_ids, dispatcher.waiting_names())
    dispatcher.wake(woken)
    dispatcher.wake_late_askers(len(task_ids), woken)
    return woken
