"""Waking agents that wait for work, and clients that wait for a task.

The store decides who runs what; this only wakes the requests held for
them.  An agent registers as a waiter *before* it looks for work, so work
handed to it between its look and its wait still wakes it.
"""
import threading


class Waiter:
    __slots__ = ("name", "event")

    def __init__(self, name):
        self.name = name
        self.event = threading.Event()


class Dispatcher:
    def __init__(self, max_waiters):
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        self._waiters = {}          # agent name -> [Waiter]
        self._count = 0
        self._task_waits = {}       # task id -> [Event]
        self.closed = False

    # -- agents -----------------------------------------------------------

    def register(self, name):
        """A Waiter for ``name``, or None when the cap on waiters is reached."""
        with self._lock:
            if self._count >= self.max_waiters or self.closed:
                return None
            waiter = Waiter(name)
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

    def waiting(self):
        with self._lock:
            return self._count

    def wake(self, names):
        """Wake the agents named: they have work."""
        with self._lock:
            chosen = [w for n in names for w in self._waiters.get(n, ())]
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
