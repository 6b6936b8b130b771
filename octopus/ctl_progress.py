"""Progress of long CLI work (bulk task commands, ``db backup``) on stderr.

Stdout is left to results, so ``--json`` and ``--quiet`` output stays
parseable.  On a terminal the line is redrawn in place with ``\\r``; into a
file or pipe (``--progress``) each update is a plain line.  Redraws are
rate-limited: a 10,000-step backup must not spend its time writing to a
terminal, nor fill a log with 10,000 lines.  Standard library only.
"""
import sys
import time

TTY_INTERVAL = 0.1   # seconds between redraws on a terminal (10 a second)
LINE_INTERVAL = 1.0  # seconds between plain lines: a log reads better with fewer


def wanted(args, stream=None):
    """Progress when asked with --progress, else on a terminal unless --quiet."""
    if getattr(args, "progress", False):
        return True
    return not getattr(args, "quiet", False) and _isatty(stream or sys.stderr)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced
        return False


def percent(done, total, what):
    """"3000/10000 tasks (30%)"."""
    return "%d/%d %s (%d%%)" % (done, total, what, 100 * done // total if total else 100)


class Progress:
    """Rate-limited progress; ``line`` writes a message without garbling it."""

    def __init__(self, enabled, stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and _isatty(self.stream)
        self.interval = TTY_INTERVAL if self.tty else LINE_INTERVAL
        self._clock = clock
        self._drawn_at = None
        self._pending = None  # the newest text held back by the rate limit
        self._shown = ""      # what the terminal line holds now

    def update(self, text):
        if not self.enabled:
            return
        now = self._clock()
        if self._drawn_at is not None and now - self._drawn_at < self.interval:
            self._pending = text
            return
        self._draw(text)
        self._drawn_at = now

    def done(self, text=None):
        """Show the final state even if the rate limit held it back; end the line."""
        if not self.enabled:
            return
        text = text or self._pending
        if text and text != self._shown:
            self._draw(text)
        self.close()

    def close(self):
        """End a terminal line, so whatever is written next starts on its own."""
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown, self._pending = "", None

    def line(self, text):
        """A message on stderr (shown with or without progress), then the progress again."""
        shown = self._shown
        if self.tty and shown:
            self.stream.write("\r" + " " * len(shown) + "\r")
        self.stream.write(text + "\n")
        if self.tty and shown:
            self.stream.write(shown)
        self.stream.flush()

    def _draw(self, text):
        if self.tty:
            # Pad over the tail of a longer previous line; no terminal codes needed.
            self.stream.write("\r" + text + " " * max(0, len(self._shown) - len(text)))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._shown, self._pending = text, None
