"""A pipe end the run launcher writes to without ever waiting for its reader.

The launcher is one thread serving the agent and every worker: a blocking
write to one of them (the agent busy, a worker stopped) would stop it serving
all the others, and could close a loop of full pipes.  Data is queued here and
written as the pipe takes it, driven by the launcher's selector.
"""
import collections
import os
import select
import time


class Outlet:
    def __init__(self, fd):
        self.fd = fd
        self.registered = False  # in the launcher's selector, waiting to be writable
        self._chunks = collections.deque()
        self._offset = 0  # bytes of the first chunk already written
        self._gone = False  # the reader is gone: nothing more is kept
        os.set_blocking(fd, False)

    @property
    def pending(self):
        return bool(self._chunks)

    def push(self, data):
        """Queue ``data``; flush() writes it."""
        if not self._gone:
            self._chunks.append(data)

    def flush(self):
        """Write what the pipe takes now; True once nothing is left.
        Raises OSError (BrokenPipeError: the reader is gone)."""
        while self._chunks:
            chunk = self._chunks[0]
            try:
                self._offset += os.write(self.fd, memoryview(chunk)[self._offset:])
            except BlockingIOError:
                return False
            if self._offset >= len(chunk):
                self._chunks.popleft()
                self._offset = 0
        return True

    def discard(self):
        """The reader is gone: drop what is queued, and whatever comes later."""
        self._chunks.clear()
        self._offset = 0
        self._gone = True

    def drain(self, deadline):
        """Write everything, waiting at most until ``deadline`` (monotonic); True if done."""
        while not self.flush():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([], [self.fd], [], left)
        return True
