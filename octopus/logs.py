"""Logging: one logger per component, a rotating file per role.

The server writes ``octopus.server``/``octopus.store``/... to its file and the
agent ``octopus.agent`` to its own, so ``--server --agent`` in one process
still gives two logs, server.log and client.log, as earlier Octopus did.

Log files are 0600 whatever the umask (they hold task names, agents'
addresses, error messages).  A line is always one line: control characters
in a message (a newline in a field some client sent) are escaped.  A log file
that cannot be written (a full disk) is said once on stderr, not once a line.
"""
import logging
import logging.handlers
import os
import re
import sys
import time

from octopus.files import private_opener

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What str.splitlines() breaks on, and the other C0/C1 controls; a tab is harmless.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


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
    formatter = OneLineFormatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    for name in loggers:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        for handler in handlers:
            logger.addHandler(handler)


def escape_controls(text):
    """``text`` with control characters as escapes (``\\n``, ``\\x1b``): one line."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class OneLineFormatter(logging.Formatter):
    """Escapes control characters in the message, so no field a client sent can
    start a forged line; a traceback after it keeps its lines."""

    def formatMessage(self, record):
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class RotatingFile(logging.handlers.RotatingFileHandler):
    """Rotates by size like its parent, at a fraction of the cost per line.

    The parent stats the file twice per record (to never rotate a device
    such as /dev/null), formats each record twice and seeks to its end: a
    few per cent of the server's time when every run logs a line or two.
    Here whether the file is a regular one is learnt when it is opened, and
    its size is counted as lines are formatted (characters, so a little under
    the bytes when the text is not ASCII).
    """

    _failing = None  # the error that stopped writing, until a line is written again
    _lost = 0

    def _open(self):
        stream = open(self.baseFilename, self.mode, encoding=self.encoding,
                      errors=self.errors, opener=private_opener)
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

    def emit(self, record):
        self._erred = False
        super().emit(record)  # calls handleError when the line could not be written
        if self._failing is not None and not self._erred:
            _stderr("octopus: writing %s works again (%d log lines were lost)"
                    % (self.baseFilename, self._lost))
            self._failing, self._lost = None, 0

    def handleError(self, record):
        """One line on stderr when writing starts to fail, then quiet: a full disk
        must not turn every log line into a traceback."""
        self._erred = True
        self._lost += 1
        if self._failing is None:
            error = sys.exc_info()[1]
            self._failing = error or "error"
            _stderr("octopus: cannot write %s (%s): log lines are lost until it works again"
                    % (self.baseFilename, getattr(error, "strerror", None) or error))


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


def _stderr(line):
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # no stderr left either: nothing to do
        pass


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
