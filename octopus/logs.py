"""Logging: one logger per component, a rotating file per role.

The server writes ``octopus.server``/``octopus.store``/... to its file and the
agent ``octopus.agent`` to its own, so ``--server --agent`` in one process
still gives two logs, server.log and client.log, as earlier Octopus did.
"""
import logging
import logging.handlers
import os
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(config, loggers, filename):
    """Send ``loggers`` to a rotating file (if ``filename``) and to stderr.

    With a log file, stderr gets only warnings unless it is a terminal: under
    a service manager the file has the full log, and every line written twice
    would cost the server time on each task.
    """
    level = "DEBUG" if getattr(config, "DEBUG_MODE", False) else config.LOG_LEVEL
    console = logging.StreamHandler(sys.stderr)
    if filename and not _is_terminal(sys.stderr):
        console.setLevel(logging.WARNING)
    handlers = [console]
    if filename:
        path = config.path(filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handlers.append(RotatingFile(path, maxBytes=config.LOG_MAX_SIZE,
                                     backupCount=config.LOG_BACKUP_COUNT, encoding="utf-8"))
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    for name in loggers:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        for handler in handlers:
            logger.addHandler(handler)


class RotatingFile(logging.handlers.RotatingFileHandler):
    """Rotates by size like its parent, at a fraction of the cost per line.

    The parent stats the file twice per record (to never rotate a device
    such as /dev/null), formats each record twice and seeks to its end: a
    few per cent of the server's time when every run logs a line or two.
    Here whether the file is a regular one is learnt when it is opened, and
    its size is counted as lines are formatted (characters, so a little under
    the bytes when the text is not ASCII).
    """

    def _open(self):
        stream = super()._open()
        self._regular = os.path.isfile(self.baseFilename)
        self._size = os.path.getsize(self.baseFilename) if self._regular else 0
        return stream

    def format(self, record):
        line = super().format(record)
        self._size += len(line) + 1
        return line

    def shouldRollover(self, record):
        if self.stream is None:
            self.stream = self._open()
        return self._regular and 0 < self.maxBytes <= self._size


class AtMostEvery(logging.Filter):
    """Lets one record through per ``seconds``: for a warning that can come a
    thousand times a second (waitress's "Task queue depth is N" under load),
    where one line says as much and costs far less."""

    def __init__(self, seconds, clock=time.monotonic):
        super().__init__()
        self._seconds, self._clock = seconds, clock
        self._next = float("-inf")

    def filter(self, record):
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self._seconds
        return True


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
