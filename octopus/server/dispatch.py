"""Waking agents that wait for work, and clients that wait for a task.

The database says what each agent may run; this only decides whom to wake.
An agent registers as a waiter *before* it looks for work, so a task created
between its look and its wait still wakes it.
"""
import itertools
import threading
from octopus.constants import TaskOwnership


class Waiter:
    __slots__ = ("name", "running", "order", "event")

    def __init__(self, name, running, order):
        self.name = name
        self.running = running
        self.order = order
        self.event = threading.Event()


class Dispatcher:
    def __init__(self, max_waiters):
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        self._waiters = {}          # agent name -> [Waiter]
        self._count = 0
        self._order = itertools.count()
        self._task_waits = {}       # task id -> [Event]
        self.closed = False

    # -- agents -----------------------------------------------------------

    def register(self, name, running):
        """A Waiter for ``name``, or None when the cap on waiters is reached."""
        with self._lock:
            if self._count >= self.max_waiters or self.closed:
                return None
            waiter = Waiter(name, running, next(self._order))
            self._waiters.setdefault(name, []).append(waiter)
            self._count += 1
            return waiter

    def unregister(self, waiter):
        with self._lock:
            waiters = self._waiters.get(waiter.name, [])
            if waiter in waiters:
                waiters.remove(waiter)
                self._count -= 1
                if not waiters:
                    del self._waiters[waiter.name]

    def less_busy_than(self, name, running):
        """Is another agent waiting with fewer runs going?  It should get Anyone work."""
        with self._lock:
            return any(w.running < running for n, ws in self._waiters.items() if n != name
                       for w in ws)

    def waiting(self):
        with self._lock:
            return self._count

    def offer(self, owner, agents=()):
        """Wake whoever should take a new task of ``owner``.

        Anyone: the waiting agent with the fewest running runs (longest
        waiting on a tie).  A named agent, or the agents an ALL task was
        fanned out to: those.
        """
        with self._lock:
            if owner == TaskOwnership.ANYONE:
                candidates = [w for ws in self._waiters.values() for w in ws]
                chosen = [min(candidates, key=lambda w: (w.running, w.order))] if candidates else []
            else:
                names = agents if owner == TaskOwnership.ALL else (owner,)
                chosen = [w for n in names for w in self._waiters.get(n, ())]
        for waiter in chosen:
            waiter.event.set()

    def wake_all(self):
        with self._lock:
            chosen = [w for ws in self._waiters.values() for w in ws]
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

    def tasks_finished(self, task_ids):
        with self._lock:
            events = [e for t in task_ids for e in self._task_waits.get(t, ())]
        for event in events:
            event.set()
