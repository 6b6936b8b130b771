"""Checks on what clients send; each failure names its field."""
from octopus.constants import TaskOwnership, TaskType
from octopus.plugins import valid_name
from octopus.server.errors import bad_request
from octopus.timeutil import iso, parse_iso

SERVER_FIELDS = ("id", "status", "executor", "result", "updated_at", "created_at",
                 "next_run_at", "executions")
TASK_FIELDS = ("plugin", "action", "args", "kwargs", "owner", "type",
               "execution_start_time", "execution_end_time", "interval", "timeout")
DEFAULTS = {"args": [], "kwargs": {}, "owner": TaskOwnership.ANYONE, "type": TaskType.ADHOC,
            "execution_start_time": None, "execution_end_time": None, "interval": None,
            "timeout": None}
MAX_TIMEOUT = 10 ** 7  # seconds: about 115 days
SUPPORTED_TYPES = (TaskType.ADHOC,)
MAX_NAME = 128


def agent_name(value, field="client"):
    """An agent's name: 1-128 printable characters without spaces or slashes."""
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or not value.isprintable()
            or any(c.isspace() or c in "/\\" for c in value)
            or value in (TaskOwnership.ALL, TaskOwnership.ANYONE)):
        raise bad_request("%s must be 1-%d printable characters without spaces or slashes, "
                          "and not ALL or Anyone" % (field, MAX_NAME), field)
    return value


def _reject_unknown(body):
    for key in body:
        if key in SERVER_FIELDS:
            raise bad_request("field %s is set by the server" % key, key)
        if key not in TASK_FIELDS:
            raise bad_request("unknown field %s" % key[:64], key[:64])


def _time(body, field):
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
    if merged["type"] not in SUPPORTED_TYPES:
        raise bad_request("type %s is not supported by this server version; use Adhoc"
                          % merged["type"], "type")
    clean["type"] = merged["type"]
    clean["execution_start_time"] = _time(merged, "execution_start_time")
    clean["execution_end_time"] = _time(merged, "execution_end_time")
    if (clean["execution_start_time"] and clean["execution_end_time"]
            and clean["execution_end_time"] <= clean["execution_start_time"]):
        raise bad_request("execution_end_time must be after execution_start_time",
                          "execution_end_time")
    interval = merged["interval"]
    if interval is not None and (not isinstance(interval, (str, int)) or isinstance(interval, bool)
                                 or len(str(interval)) > 256):
        raise bad_request("interval must be a string or a whole number", "interval")
    clean["interval"] = None if interval is None else str(interval)
    timeout = merged["timeout"]
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or not 0 < timeout <= MAX_TIMEOUT):
        raise bad_request("timeout must be a number of seconds above 0 and at most %d, or null"
                          % MAX_TIMEOUT, "timeout")
    clean["timeout"] = timeout
    if existing is not None:
        clean = {k: v for k, v in clean.items() if existing.get(k) != v}
    return clean


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
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("%s must be a whole number" % name, name)
    if not low <= value <= high:
        raise bad_request("%s must be between %d and %d" % (name, low, high), name)
    return value


def float_param(req, name, default, low, high):
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request("%s must be a number" % name, name)
    if not low <= value <= high:
        raise bad_request("%s must be between %g and %g" % (name, low, high), name)
    return value


def only_params(req, allowed):
    for name in req.params:
        if name not in allowed:
            raise bad_request("unknown query parameter %s" % name[:64], name[:64])
