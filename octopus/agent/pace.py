"""When the agent heartbeats on its own, and when its asks for work carry it.

An agent holding a long-poll heartbeats every HEARTBEAT_INTERVAL on its own
connection.  Past the server's waiter cap it asks every TASK_CHECK_INTERVAL,
or less often when the server paces a big fleet (``retry_after``): then each
ask carries the heartbeat that would fall due before the next ask, and the
heartbeat loop, given a little slack, finds it done.  One request per ask
instead of two, for every agent past the cap.

The server's heartbeat reply says how often it needs a heartbeat (a third of
its CLIENT_TIMEOUT): the shorter of that and HEARTBEAT_INTERVAL is used, so a
server with a short timeout never sees a healthy agent go offline.
"""
import random

SLACK = 1.1  # a paced agent's heartbeat waits this much past its asks' interval
MIN_INTERVAL = 0.2  # seconds: the shortest heartbeat interval a server may ask for
JITTER = 0.1  # asks told the same delay are spread over this fraction of it


class Pace:
    def __init__(self, heartbeat_interval, task_check_interval, rand=random.random):
        self._own_interval = heartbeat_interval
        self._heartbeat_interval = heartbeat_interval
        self._task_check_interval = task_check_interval
        self._rand = rand
        self.beat_at = float("-inf")  # when the last heartbeat the server took was sent
        self.asks_every = None  # seconds between asks while past the cap, else None
        self._paced = 0.0  # the server's retry_after: how far it stretched the asks

    @property
    def interval(self):
        """Seconds between heartbeats: this agent's HEARTBEAT_INTERVAL, or the
        server's ``heartbeat_interval`` when that is shorter."""
        return self._heartbeat_interval

    def server_asks(self, interval):
        """The heartbeat reply's ``heartbeat_interval`` (a third of the server's
        CLIENT_TIMEOUT): beat at least that often, or the server counts this
        agent offline between beats."""
        if (isinstance(interval, (int, float)) and not isinstance(interval, bool)
                and interval == interval):  # not NaN
            self._heartbeat_interval = min(self._own_interval, max(MIN_INTERVAL, interval))

    def beat_taken(self, sent):
        self.beat_at = max(self.beat_at, sent)  # a held ask's reply may come after a newer beat

    def beat_due(self, now):
        """Seconds until a heartbeat of its own is due (<= 0: now).

        Stretched only as far as the server paces the asks (it keeps
        retry_after under CLIENT_TIMEOUT / 3), never by this agent's own
        TASK_CHECK_INTERVAL, which knows nothing of the server's timeout.
        """
        interval = self._heartbeat_interval
        if self.asks_every is not None:
            interval = max(interval, self._paced * SLACK)
        return self.beat_at + interval - now

    def carry(self, now):
        """Should an ask sent ``now`` carry the heartbeat?"""
        return self.beat_due(now) < (self.asks_every or self._task_check_interval) * (1 + JITTER)

    def capped(self, retry_after):
        """The ask was answered at once at the waiter cap: seconds to the next one."""
        self._paced = retry_after or 0.0
        self.asks_every = max(self._task_check_interval, self._paced)
        return self.asks_every * (1 - JITTER / 2 + self._rand() * JITTER)

    def held(self):
        """The ask was held (the server has room for this agent's waits)."""
        self.asks_every = None
