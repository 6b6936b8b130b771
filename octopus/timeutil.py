"""Times as the API and the database show them: ISO 8601, UTC, ``Z``."""
from datetime import datetime, timezone


def iso(ts):
    """Epoch seconds -> fixed-width ISO text, so text order is time order."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def parse_iso(text):
    """ISO 8601 text -> epoch seconds; a time without an offset is UTC.

    Raises ValueError for anything else.
    """
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        raise ValueError("not an ISO 8601 time")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)  # 3.9 accepts the common forms we emit
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
