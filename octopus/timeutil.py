"""Times as the API and the database show them: ISO 8601, UTC, ``Z``."""
import re
from datetime import datetime, timedelta, timezone

# The one form accepted from clients, the same on every Python: date, "T" or
# a space, time with optional fraction, then "Z", an offset, or nothing (UTC).
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
                  r"(Z|z|[+-]\d{2}:?\d{2})?")
MIN_YEAR, MAX_YEAR = 1970, 9999
# The last time iso() can show (and so the database hold).
LAST_TIME = datetime(MAX_YEAR, 12, 31, 23, 59, 59, 999000, timezone.utc).timestamp()


def iso(ts):
    """Epoch seconds -> fixed-width ISO text, so text order is time order."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond // 1000)


def parse_iso(text):
    """ISO 8601 text -> epoch seconds; a time without an offset is UTC.

    Raises ValueError for anything else, and for years outside 1970-9999.
    """
    match = _ISO.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError("not an ISO 8601 time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                  int((fraction or "0").ljust(6, "0")), tzinfo=_zone(zone))
    if not MIN_YEAR <= dt.astimezone(timezone.utc).year <= MAX_YEAR:
        raise ValueError("year out of range")
    return dt.timestamp()


def _zone(text):
    if text in (None, "Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError("bad offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
