"""Checks on what clients send; each failure names its field."""
import re
import time

from octopus import schedule
from octopus.constants import CatchUp, Overlap, TaskOwnership, TaskType
from octopus.plugins import valid_name
from octopus.server.errors import bad_request
from octopus.store.recurring import first_slot
from octopus.timeutil import iso, parse_iso

SERVER_FIELDS = ("id", "status", "executor", "result", "updated_at", "created_at",
                 "next_run_at", "executions", "cancelled_at")
TASK_FIELDS = ("plugin", "action", "args", "kwargs", "owner", "type",
               "execution_start_time", "execution_end_time", "interval", "timezone", "timeout",
               "overlap", "catch_up", "max_retries", "retry_delay", "retry_backoff",
               "keep_processes")
DEFAULTS = {"args": [], "kwargs": {}, "owner": TaskOwnership.ANYONE, "type": TaskType.ADHOC,
            "execution_start_time": None, "execution_end_time": None, "interval": None,
            "timezone": None, "timeout": None, "overlap": Overlap.SKIP,
            "catch_up": CatchUp.ONCE, "max_retries": 0, "retry_delay": 10, "retry_backoff": 2,
            "keep_processes": False}
MAX_TIMEOUT = 10 ** 7  # seconds: about 115 days
MAX_RETRIES = 100
MAX_BACKOFF = 10
MAX_NAME = 128
MAX_OFFSET = 10 ** 9  # rows skipped by ?offset= in a listing
MAX_QUERY = 200  # characters of a task search (?q=)
# C0 and C1 controls and the Unicode line and paragraph separators: what could end
# or forge a log line (the OpenAPI document has the same as a pattern).
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
CONTROL = re.compile("[%s]" % CONTROL_CHARACTERS)
_WHOLE = re.compile(r"[+-]?[0-9]{1,4300}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def agent_name(value, field="client"):
    """An agent's name: 1-128 printable characters without spaces or slashes."""
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or not value.isprintable()
            or any(c.isspace() or c in "/\\" for c in value)
            or value in (TaskOwnership.ALL, TaskOwnership.ANYONE)):
        raise bad_request("%s must be 1-%d printable characters without spaces or slashes, "
                          "and not ALL or Anyone" % (field, MAX_NAME), field)
    return value


def printable_text(body, field, limit=256):
    """An optional text field an agent sends about itself (hostname, ip, version,
    instance): at most ``limit`` characters and no control characters, which
    would reach the server's log (a newline there could forge a line)."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or CONTROL.search(value):
        raise bad_request("%s must be text of at most %d printable characters (no newline or "
                          "other control character)" % (field, limit), field)
    return value


def _reject_unknown(body):
    for key in body:
        if key in SERVER_FIELDS:
            raise bad_request("field %s is set by the server" % key, key)
        if key not in TASK_FIELDS:
            raise bad_request("unknown field %s" % key[:64], key[:64])


def time_field(body, field):
    value = body.get(field)
    if value is None:
        return None
    try:
        return iso(parse_iso(value))
    except (ValueError, OverflowError, OSError, TypeError):
        raise bad_request("%s must be an ISO 8601 time such as 2026-01-31T12:00:00Z" % field, field)


def task_fields(body, registry, existing=None):
    """Validate a task definition (a new one, or changes to ``existing``).

    Returns the clean fields to store.
    """
    _reject_unknown(body)
    merged = dict(DEFAULTS if existing is None else {k: existing[k] for k in TASK_FIELDS})
    merged.update(body)
    clean = {}
    plugin = _plugin(merged.get("plugin"), registry)
    clean["plugin"] = plugin.name
    clean["action"] = _action(merged.get("action"), plugin)
    if not isinstance(merged["args"], list):
        raise bad_request("args must be a JSON array", "args")
    if not isinstance(merged["kwargs"], dict):
        raise bad_request("kwargs must be a JSON object", "kwargs")
    clean["args"], clean["kwargs"] = merged["args"], merged["kwargs"]
    clean["owner"] = _owner(merged["owner"])
    if merged["type"] not in TaskType.ALL:
        raise bad_request("type must be one of %s" % ", ".join(TaskType.ALL), "type")
    clean["type"] = merged["type"]
    clean["execution_start_time"] = time_field(merged, "execution_start_time")
    clean["execution_end_time"] = time_field(merged, "execution_end_time")
    if (clean["execution_start_time"] and clean["execution_end_time"]
            and clean["execution_end_time"] <= clean["execution_start_time"]):
        raise bad_request("execution_end_time must be after execution_start_time",
                          "execution_end_time")
    clean["timezone"] = timezone_field(merged["timezone"])
    clean["interval"] = interval_field(merged["interval"], clean["type"], clean["timezone"])
    if clean["type"] in TaskType.RECURRING:
        _window(clean)
    timeout = merged["timeout"]
    if timeout is not None and not _number(timeout, 0, MAX_TIMEOUT, low_open=True):
        raise bad_request("timeout must be a number of seconds above 0 and at most %d, or null"
                          % MAX_TIMEOUT, "timeout")
    clean["timeout"] = timeout
    clean["overlap"] = _choice(merged, "overlap", Overlap.ALL)
    clean["catch_up"] = _choice(merged, "catch_up", CatchUp.ALL)
    clean.update(_retries(merged))
    if not isinstance(merged["keep_processes"], bool):
        raise bad_request("keep_processes must be true or false", "keep_processes")
    clean["keep_processes"] = merged["keep_processes"]
    if existing is not None:
        clean = {k: v for k, v in clean.items() if existing.get(k) != v}
    return clean


def _number(value, low, high, low_open=False):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (low < value if low_open else low <= value) and value <= high)


def _choice(body, field, options):
    if body[field] not in options:
        raise bad_request("%s must be one of %s" % (field, ", ".join(options)), field)
    return body[field]


def _retries(body):
    if not (isinstance(body["max_retries"], int) and _number(body["max_retries"], 0, MAX_RETRIES)):
        raise bad_request("max_retries must be a whole number from 0 to %d" % MAX_RETRIES,
                          "max_retries")
    if not _number(body["retry_delay"], 0, MAX_TIMEOUT):
        raise bad_request("retry_delay must be a number of seconds from 0 to %d" % MAX_TIMEOUT,
                          "retry_delay")
    if not _number(body["retry_backoff"], 1, MAX_BACKOFF):
        raise bad_request("retry_backoff must be a number from 1 to %d" % MAX_BACKOFF,
                          "retry_backoff")
    return {k: body[k] for k in ("max_retries", "retry_delay", "retry_backoff")}


def timezone_field(name):
    if name is None:
        return None
    try:
        schedule.zone(name)
    except schedule.ScheduleError as e:
        raise bad_request("timezone: %s; use an IANA name such as Europe/Paris" % e, "timezone")
    return name


def interval_field(value, kind, tz_name):
    """Interval: whole seconds; Scheduled: a cron; Adhoc: none."""
    if kind == TaskType.ADHOC:
        if value is not None:
            raise bad_request("interval is only for Interval and Scheduled tasks", "interval")
        return None
    if kind == TaskType.INTERVAL:
        if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,11}\s*", value):
            value = int(value)
        if not (isinstance(value, int) and _number(value, 1, schedule.MAX_INTERVAL)):
            raise bad_request("interval of an Interval task must be whole seconds from 1 to %d"
                              % schedule.MAX_INTERVAL, "interval")
        return str(value)
    if not isinstance(value, str):
        raise bad_request("interval of a Scheduled task must be a 5-field cron expression such "
                          "as \"*/5 * * * *\"", "interval")
    expr = " ".join(value.split())
    try:
        schedule.check_cron(expr, schedule.zone(tz_name))
    except schedule.ScheduleError as e:
        raise bad_request("interval of a Scheduled task must be a 5-field cron expression: %s"
                          % e, "interval")
    return expr


def _window(clean):
    """A recurring task must have a slot, inside its window."""
    probe = dict(clean, created_at=iso(time.time()))
    try:
        first = first_slot(probe, parse_iso(probe["created_at"]))
        iso(first)
    except (schedule.ScheduleError, ValueError, OverflowError):
        raise bad_request("no run can be scheduled after execution_start_time",
                          "execution_start_time")
    if clean["execution_end_time"] is None:
        return
    if first > parse_iso(clean["execution_end_time"]):
        raise bad_request("execution_end_time is before the task's first run (%s)" % iso(first),
                          "execution_end_time")


def _plugin(name, registry):
    if name is None:
        raise bad_request("plugin is required", "plugin")
    if not valid_name(name):
        raise bad_request("plugin must be an identifier not starting with _", "plugin")
    plugin = registry.get(name)
    if plugin is None:
        raise bad_request("unknown plugin %s" % name, "plugin")
    return plugin


def _action(name, plugin):
    if name is None:
        raise bad_request("action is required", "action")
    if not valid_name(name):
        raise bad_request("action must be an identifier not starting with _", "action")
    if name not in plugin.actions:
        raise bad_request("plugin %s has no action %s (it has: %s)"
                          % (plugin.name, name, ", ".join(sorted(plugin.actions))), "action")
    return name


def _owner(value):
    if value in (TaskOwnership.ALL, TaskOwnership.ANYONE):
        return value
    return agent_name(value, "owner")


def int_param(req, name, default, low, high):
    raw = req.get_param(name)
    if raw is None:
        return default
    # int() would also take "1_0", " 5" and non-ASCII digits.
    if not _WHOLE.fullmatch(raw):
        raise bad_request("%s must be a whole number" % name, name)
    value = int(raw)
    if not low <= value <= high:
        raise bad_request("%s must be between %d and %d" % (name, low, high), name)
    return value


def float_param(req, name, default, low, high):
    raw = req.get_param(name)
    if raw is None:
        return default
    # float() would also take "nan", "inf", "1_0" and non-ASCII digits.
    if not _DECIMAL.fullmatch(raw):
        raise bad_request("%s must be a number" % name, name)
    value = float(raw)
    if not low <= value <= high:
        raise bad_request("%s must be between %g and %g" % (name, low, high), name)
    return value


def choice_params(req, options):
    """Filters with a fixed set of values (``{"status": TaskStatus.ALL}``): any
    other value is a mistake, answered like an unknown parameter, not with an
    empty page."""
    for name, allowed in options.items():
        value = req.get_param(name)
        if value is not None and value not in allowed:
            raise bad_request("%s must be one of %s" % (name, ", ".join(allowed)), name)


def only_params(req, allowed):
    for name, value in req.params.items():
        if name not in allowed:
            raise bad_request("unknown query parameter %s" % name[:64], name[:64])
        if isinstance(value, list):  # falcon would quietly take one of them
            raise bad_request("query parameter %s is given more than once" % name, name)
