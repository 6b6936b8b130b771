"""Sleep plugin: waits for a given number of seconds."""

import time


def sleep(seconds):
    """Sleep for `seconds` (a non-negative number); return the seconds actually slept."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError("seconds must be a number, got %s" % type(seconds).__name__)
    if seconds != seconds or seconds < 0:
        raise ValueError("seconds must be a non-negative number, got %r" % (seconds,))
    start = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - start
