"""waitress's main loop on epoll, costing O(busy connections) per turn, not O(open).

waitress's own loop (``wasyncore.poll2``) builds a new poll set on every turn
from every open connection, asking each for ``readable()`` and ``writable()``.
With thousands of agents keeping a connection open and a few thousand turns a
second (every request, response and wake-up is a turn) that alone is more
than a core.  A connection's answers change only when

- it had an event (the loop itself read, wrote or closed it),
- a worker thread finished its request or left output to send,
- it was just accepted, or
- the server's maintenance marked it idle (every ``cleanup_interval``).

So this loop asks again only the connections those touched, the listening
socket and the trigger every turn, and every connection once a second (which
also covers the last case).  Registrations live in one epoll set.  Where
epoll does not exist, waitress's own loop runs unchanged.
"""
import collections
import logging
import select
import time

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer

log = logging.getLogger("octopus.server")

SWEEP_INTERVAL = 1.0  # seconds between asking every connection


def available():
    return hasattr(select, "epoll")


def install(server):
    """Run ``server`` (a waitress server, not yet running) on an EpollLoop.

    An address that resolves to several sockets (``localhost``: 127.0.0.1 and
    ::1) gives a MultiSocketServer, whose listeners each make the channels.
    """
    if not available():
        return None
    loop = EpollLoop()
    listeners = [o for o in server.map.values() if isinstance(o, BaseWSGIServer)] \
        if isinstance(server, MultiSocketServer) else [server]
    for listener in listeners:
        listener.channel_class = channel_class(loop)
    server.asyncore = loop  # waitress's run() calls self.asyncore.loop(...)
    return loop


def channel_class(loop):
    class Channel(HTTPChannel):
        """An HTTP connection that tells ``loop`` when its answers may have changed."""

        def add_channel(self, map=None):
            super().add_channel(map)
            loop.touch(self, wake=False)  # accepted on the loop's own thread

        def del_channel(self, map=None):  # the loop's thread, or a worker's (send_continue)
            fd = self._fileno
            super().del_channel(map)
            loop.forget(fd, self)

        def service(self):  # on a worker thread
            try:
                super().service()
            finally:
                loop.touch(self)

        def write_soon(self, data):  # on a worker thread
            written = super().write_soon(data)
            # waitress pulls the trigger here only when a large output is
            # left unsent; the loop must then know which connection it is.
            if self.total_outbufs_len >= self.adj.send_bytes:
                loop.touch(self)
            return written

    return Channel


class EpollLoop:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._epoll = select.epoll()
        self._flags = {}  # fd -> (the object, the flags) registered in the epoll set
        self._forgotten = collections.deque()  # (fd, object) closed, from any thread
        self._touched = collections.deque()  # appended by any thread, drained by the loop
        self._map = {}
        self._always = []  # the listening socket and the trigger: asked every turn
        self._next_sweep = 0.0
        self._trigger = None

    # -- the interface waitress calls (``self.asyncore.loop``) ---------------

    def loop(self, timeout=30.0, use_poll=True, map=None, count=None):
        self._map = map
        try:
            while map:
                self.turn(timeout)
        finally:
            self._epoll.close()

    # -- what channels call --------------------------------------------------

    def touch(self, channel, wake=True):
        self._touched.append(channel)
        if wake and self._trigger is not None:
            self._trigger.pull_trigger()

    def forget(self, fd, obj):
        """``obj`` closed its socket ``fd``: done on the loop's next turn, so the
        epoll set and ``_flags`` are only ever changed by the loop's thread."""
        if fd is not None:
            self._forgotten.append((fd, obj))

    def _drop(self, fd, obj=None):
        entry = self._flags.get(fd)
        if entry is None or (obj is not None and entry[0] is not obj):
            return  # already gone, or the number now belongs to a newer socket
        del self._flags[fd]
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # closed already, which removed it from the set

    # -- one turn -------------------------------------------------------------

    def turn(self, timeout):
        forgotten = self._forgotten
        while forgotten:
            self._drop(*forgotten.popleft())
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            candidates = list(self._map.values())
            self._always = [o for o in candidates if not isinstance(o, HTTPChannel)]
            self._trigger = next((o for o in self._always if hasattr(o, "pull_trigger")), None)
        else:
            candidates = list(self._always)
            touched = self._touched
            while touched:
                candidates.append(touched.popleft())
        for obj in candidates:
            self._update(obj)
        try:
            events = self._epoll.poll(timeout)
        except InterruptedError:
            events = ()
        for fd, flags in events:
            obj = self._map.get(fd)
            if obj is None:
                continue
            wasyncore.readwrite(obj, flags)
            self._touched.append(obj)

    def _update(self, obj):
        fd = obj._fileno
        if fd is None or self._map.get(fd) is not obj:
            return  # closed since it was touched
        flags = 0
        if obj.readable():
            flags = select.EPOLLIN | select.EPOLLPRI
        if obj.writable() and not obj.accepting:
            flags |= select.EPOLLOUT
        entry = self._flags.get(fd)
        if entry is not None and entry[0] is obj and entry[1] == flags:
            return
        # Like poll2, a connection that wants nothing is not watched at all:
        # epoll would still report its hang-up, and waitress does not expect
        # one while a worker thread holds the request.
        if not flags:
            self._drop(fd)
            return
        try:
            try:
                self._epoll.modify(fd, flags)
            except FileNotFoundError:  # not in the set (new, or unwatched for a while)
                self._epoll.register(fd, flags)
        except OSError as e:  # closed by a worker thread meanwhile: its forget follows
            log.debug("epoll: fd %d not watched: %s", fd, e)
            self._flags.pop(fd, None)
            return
        self._flags[fd] = (obj, flags)
