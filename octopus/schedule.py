"""When recurring work is due: Interval tasks (every N seconds from an anchor)
and cron expressions (Scheduled tasks and maintenance), in epoch seconds.

Cron is parsed by cronsim, which follows Debian cron across daylight-saving
changes: a time that does not exist that day runs at the first minute after
the gap, and a time that happens twice runs once.  Time zones come from the
host's database, or from the bundled ``tzdata`` package where it has none.
"""
import zoneinfo
from datetime import datetime, timezone

from octopus.timeutil import LAST_TIME

MAX_INTERVAL = 10 ** 8  # seconds (about three years)


class ScheduleError(ValueError):
    pass


class EndOfTime(ScheduleError):
    """The next time would be after timeutil.LAST_TIME: there is none."""

    def __init__(self):
        super().__init__("the next run would be after the end of the year 9999, the last "
                         "time Octopus can store")


def zone(name):
    """The IANA time zone ``name`` (None or "UTC": UTC), or ScheduleError."""
    if name in (None, "", "UTC"):
        return timezone.utc
    if (not isinstance(name, str) or len(name) > 64 or name.startswith("/") or ".." in name
            or not name.isprintable()):
        raise ScheduleError("not a time zone name")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError("unknown time zone %s" % name)


def check_cron(expr, tz=None):
    """Raise ScheduleError unless ``expr`` is a 5-field cron that ever fires."""
    if not isinstance(expr, str) or len(expr) > 256 or len(expr.split()) != 5:
        raise ScheduleError("cron must be 5 fields: minute hour day-of-month month day-of-week")
    next_cron(expr, 0.0, tz)


def next_cron(expr, after, tz=None):
    """The first time ``expr`` fires strictly after epoch ``after``."""
    from cronsim import CronSim, CronSimError

    tzinfo = tz if tz is not None else timezone.utc
    try:
        it = CronSim(expr, datetime.fromtimestamp(after, tzinfo))
        return next(it).timestamp()
    except StopIteration:
        raise ScheduleError("cron %r never fires" % expr)
    except CronSimError as e:
        raise ScheduleError("cron %r: %s" % (expr, e))
    except (ValueError, OverflowError):  # cronsim stepped past the year 9999
        raise EndOfTime()


def next_interval(seconds, anchor, after):
    """The first of ``anchor + k * seconds`` (k >= 0) strictly after ``after``."""
    if after < anchor:
        return anchor
    return anchor + (int((after - anchor) // seconds) + 1) * seconds


def next_fire(kind, interval, tz, anchor, after):
    """Next fire time after ``after`` of a recurring task, by its type;
    EndOfTime past the last time the database can hold."""
    if kind == "Interval":
        following = next_interval(int(interval), anchor, after)
    else:
        following = next_cron(interval, after, tz)
    if following > LAST_TIME:
        raise EndOfTime()
    return following


def next_fire_or_none(kind, interval, tz, anchor, after):
    """next_fire, or None where there is no next time (EndOfTime)."""
    try:
        return next_fire(kind, interval, tz, anchor, after)
    except EndOfTime:
        return None
