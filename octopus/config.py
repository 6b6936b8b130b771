"""Settings: one table per role drives validation, ``--help`` and docs.

Precedence, lowest first: defaults < config file < environment
``OCTOPUS_<NAME>`` < command-line flags.  A bad value raises ConfigError with
one line naming the setting and what it accepts.
"""
import difflib
import os
from typing import Any, Callable, NamedTuple

ENV_PREFIX = "OCTOPUS_"


class ConfigError(Exception):
    pass


def _int(low=None, high=None):
    def parse(text):
        value = int(str(text).strip())
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError
        return value

    if low is not None and high is not None:
        parse.accepts = "an integer from %d to %d" % (low, high)
    elif low is not None:
        parse.accepts = "an integer >= %d" % low
    else:
        parse.accepts = "an integer"
    return parse


def _float(low=0.0, high=float("inf")):
    def parse(text):
        value = float(str(text).strip())
        if value != value or value < low or value >= high:
            raise ValueError
        return value

    parse.accepts = ("a number >= %g" % low if high == float("inf")
                     else "a number from %g to %g" % (low, high))
    return parse


def _bool(text):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


_bool.accepts = "true or false"


def _choice(*options):
    def parse(text):
        value = str(text).strip().upper()
        if value not in options:
            raise ValueError
        return value

    parse.accepts = "one of " + ", ".join(options)
    return parse


def _text(text):
    return str(text).strip()


_text.accepts = "text"


def _url(text):
    value = str(text).strip().rstrip("/")
    if not (value.startswith("http://") or value.startswith("https://")) or len(value) < 9:
        raise ValueError
    return value


_url.accepts = "an http:// or https:// URL"


def _name(text):
    value = str(text).strip()
    if value == "":
        return value  # the host name is used
    if (len(value) > 128 or not value.isprintable()
            or any(c.isspace() or c in "/\\" for c in value) or value in ("ALL", "Anyone")):
        raise ValueError
    return value


_name.accepts = "1-128 printable characters without spaces or slashes, not ALL or Anyone"


def _cron(text):
    from octopus.schedule import ScheduleError, check_cron

    value = " ".join(str(text).split())
    if value == "":
        return value  # never
    try:
        check_cron(value)
    except ScheduleError:
        raise ValueError
    return value


_cron.accepts = "a 5-field cron expression (UTC), or empty for never"


def _run_as(text):
    from octopus.agent.isolation import resolve_run_as

    value = str(text).strip()
    resolve_run_as(value)  # ValueError: a user or group this host does not know
    return value


_run_as.accepts = "a user or user:group known on this host, or empty"


class Setting(NamedTuple):
    # A NamedTuple, not a dataclass: dataclasses pulls in inspect, ~1.5 MB
    # in every agent for four fields.
    name: str
    default: Any
    parse: Callable
    help: str


_LOG_LEVEL = _choice("DEBUG", "INFO", "WARNING", "ERROR")
try:  # the CPUs this process may use (containers and taskset narrow it)
    _CPUS = len(os.sched_getaffinity(0))
except AttributeError:
    _CPUS = os.cpu_count() or 1

COMMON_SETTINGS = [
    Setting("DATA_DIR", "./octopus-data", _text,
            "Folder for the database, logs, generated tokens and the agent's plugin cache."),
    Setting("LOG_LEVEL", "INFO", _LOG_LEVEL, "DEBUG, INFO, WARNING or ERROR."),
    Setting("LOG_MAX_SIZE", 10 * 1024 * 1024, _int(1024), "Bytes before a log file rotates."),
    Setting("LOG_BACKUP_COUNT", 5, _int(0, 1000), "Rotated log files kept."),
]

SERVER_SETTINGS = COMMON_SETTINGS + [
    Setting("SERVER_HOST", "0.0.0.0", _text, "Address the server listens on."),
    Setting("SERVER_PORT", 8000, _int(0, 65535), "Port the server listens on (0 picks a free one)."),
    Setting("DEBUG_MODE", False, _bool, "Log at DEBUG and include tracebacks of server errors in the log."),
    Setting("DB_FILE", "", _text, "SQLite database file; empty means DATA_DIR/octopus.db."),
    Setting("CLIENT_TIMEOUT", 30, _int(1), "Seconds without a heartbeat before an agent counts as offline."),
    Setting("HEARTBEAT_CLEANUP_INTERVAL", 60, _int(1), "Longest time between sweeps for agents that went silent (a silent agent's runs are lost at CLIENT_TIMEOUT whatever this says)."),
    Setting("AGENT_FORGET_AFTER", 86400, _int(0), "Seconds of silence after which an agent that never asked for work is forgotten (its row removed); 0: never."),
    Setting("TASK_ASSIGNMENT_DELAY", 0, _float(0), "Seconds a new task waits before it is handed out; 0: at once (waiting agents are woken; earlier Octopus paused 2 s for its polling loop)."),
    Setting("TASK_CLEANUP_INTERVAL", 300, _int(1), "Seconds between retention passes (old tasks and executions deleted, WAL checkpointed)."),
    Setting("RETENTION_DAYS", 30, _float(0), "Days a finished task and its executions are kept; 0 keeps them for ever."),
    Setting("VACUUM_SCHEDULE", "0 3 * * 0", _cron, "When to VACUUM the database (cron, UTC); empty: never."),
    Setting("REINDEX_SCHEDULE", "0 3 1 * *", _cron, "When to REINDEX the database (cron, UTC); empty: never."),
    Setting("OPTIMIZE_SCHEDULE", "30 3 * * *", _cron, "When to run PRAGMA optimize (cron, UTC); empty: never."),
    Setting("METRICS_TOKEN", "", _text, "Bearer token for GET /metrics besides the admin token; empty: the admin token only."),
    Setting("RETRY_MAX_DELAY", 3600, _float(0, 10 ** 7), "Longest wait before a retry, whatever a task's retry_delay and retry_backoff."),
    Setting("LOG_FILE", "logs/server.log", _text, "Server log, relative to DATA_DIR unless absolute; empty logs to stderr only."),
    Setting("ADMIN_TOKEN", "", _text, "Admin bearer token; empty means generated into DATA_DIR/admin.token."),
    Setting("AGENT_TOKEN", "", _text, "Shared agent bearer token; empty means generated into DATA_DIR/agent.token."),
    Setting("REQUIRE_ENROLLMENT", False, _bool, "Accept the shared agent token only to enroll (POST /agent/enroll); false: it also speaks for agents that never enrolled."),
    Setting("PLUGINS_DIR", "", _text, "Folder of plugin modules; empty means the plugins bundled with Octopus."),
    Setting("RUN_TIMEOUT", 0, _float(0), "Seconds a run may take when its task sets no timeout; 0: no limit."),
    Setting("THREADS", 16, _int(1, 512), "Worker threads for ordinary requests."),
    Setting("MAX_WAITERS", 256, _int(0, 10000), "Agents allowed to hold a long-poll for work at once; others poll."),
    Setting("MAX_POLL_RATE", 1000, _int(0, 1000000), "Asks a second the server invites from agents past MAX_WAITERS: more agents are told to ask less often (at most every CLIENT_TIMEOUT / 3 s); 0: each asks every TASK_CHECK_INTERVAL."),
    Setting("TRUSTED_PROXY", "", _text, "Address of a reverse proxy whose X-Forwarded-For/-Proto are believed (client addresses in the audit log and the failed-login limit); empty: none, such headers are dropped."),
    Setting("LONG_POLL_TIMEOUT", 25, _int(1, 300), "Longest time a waiting agent is held before it asks again."),
]

AGENT_SETTINGS = COMMON_SETTINGS + [
    Setting("SERVER_URL", "http://localhost:8000", _url, "Where the agent finds its server."),
    Setting("CLIENT_ID", "", _name, "This agent's name; empty means the host name."),
    Setting("AGENT_TOKEN", "", _text, "Shared agent bearer token; empty means read from DATA_DIR/agent.token."),
    Setting("HEARTBEAT_INTERVAL", 10, _int(1), "Seconds between heartbeats."),
    Setting("TASK_CHECK_INTERVAL", 5, _int(1), "Seconds between asks for work when the server cannot hold a long-poll."),
    Setting("MAX_RETRY_ATTEMPTS", 3, _int(0, 100), "Retries of a failed report before the agent waits and starts over."),
    Setting("RETRY_DELAY", 2, _float(0), "Seconds between report retries."),
    Setting("CONCURRENCY", _CPUS, _int(1, 1024), "Runs this agent executes at once (default: CPU count)."),
    Setting("MAX_OUTPUT", 1024 * 1024, _int(1024, 64 * 1024 * 1024), "Bytes of a run's stdout and stderr kept; the rest is cut and marked."),
    Setting("RUNS_PER_WORKER", 100, _int(1, 1000000),
            "Runs a worker process does before it is replaced; 1 gives every run a fresh process."),
    Setting("LOG_FILE", "logs/client.log", _text, "Agent log, relative to DATA_DIR unless absolute; empty logs to stderr only."),
    Setting("LOCAL_API_PORT", 0, _int(0, 65535),
            "Port of the agent's local API on 127.0.0.1 (its runs: list, cancel, run an action now); 0: off."),
    Setting("LOCAL_API_TOKEN", "", _text,
            "Bearer token of the local API; empty means generated into DATA_DIR/local-api.token."),
    Setting("RUN_AS", "", _run_as,
            "User (or user:group) runs switch to when the agent runs as root; empty: the agent's user."),
]


class Config:
    """Resolved settings of one role, read as attributes (``config.SERVER_PORT``)."""

    def __init__(self, values):
        self.__dict__.update(values)

    def path(self, value):
        """A path setting resolved against DATA_DIR."""
        return os.path.abspath(os.path.join(self.DATA_DIR, os.path.expanduser(value)))


def read_file(path):
    """Read ``NAME = value`` lines; ``#`` starts a comment.  Same format as env files."""
    values = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError("config file %s: %s" % (path, e.strerror or e))
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if name.startswith(ENV_PREFIX):
            name = name[len(ENV_PREFIX):]
        if not sep or not name:
            raise ConfigError("config file %s line %d: expected NAME = value" % (path, number))
        values[name] = value.strip().strip('"').strip("'")
    return values


def load(settings, file_values=None, environ=None, flags=None):
    """Resolve ``settings`` from the layers; raise ConfigError on a bad value."""
    environ = os.environ if environ is None else environ
    known = {s.name for s in settings}
    for name in (file_values or {}):
        if name not in known and name not in _ALL_NAMES:
            raise ConfigError("config file names an unknown setting %s" % name)
    values = {}
    for s in settings:
        raw, source = s.default, None
        for layer, label in ((file_values, "config file"), (environ, "environment"), (flags, "command line")):
            key = s.name if layer is not environ else ENV_PREFIX + s.name
            if layer and layer.get(key) is not None:
                raw, source = layer[key], label
        values[s.name] = raw if source is None else _parse(s, raw, source)
    return Config(values)


def layered(settings, config_file=None, flags=None):
    """``settings`` resolved as a process of this host would: defaults < the
    config file (``config_file``, else $OCTOPUS_CONFIG) < OCTOPUS_* < ``flags``.
    Returns ``(config, file_values)``."""
    path = config_file or os.environ.get(ENV_PREFIX + "CONFIG")
    file_values = read_file(path) if path else {}
    return load(settings, file_values, os.environ, flags), file_values


def local_url(host, port):
    """The URL a process on this host reaches a server listening on ``host`` with."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return "http://%s:%d" % ("[%s]" % host if ":" in host else host, port)


def _parse(setting, raw, source):
    try:
        return setting.parse(raw)
    except (ValueError, TypeError):
        name = setting.name if source != "environment" else ENV_PREFIX + setting.name
        raise ConfigError("%s=%r (from %s) is invalid: expected %s"
                          % (name, str(raw), source, setting.parse.accepts))


_ALL_NAMES = {s.name for s in SERVER_SETTINGS + AGENT_SETTINGS}
# OCTOPUS_* variables read on purpose that are no setting: the config file's
# path, the agent's worker start-up (agent/runner.py), the dashboard tests'
# screenshots folder and a test's marker (tests/).
NOT_SETTINGS = {"CONFIG", "ORIGINAL_PYTHONPATH", "SCREENSHOTS", "TEST_LEAK"}


def unknown_environment(environ=None):
    """One warning line naming each OCTOPUS_* variable that is no setting of
    either role, with the closest setting; None when there is none.  A misspelt
    variable is otherwise ignored without a word (a config file's is an error)."""
    environ = os.environ if environ is None else environ
    found = []
    for key in sorted(environ):
        name = key[len(ENV_PREFIX):]
        if not key.startswith(ENV_PREFIX) or name in _ALL_NAMES or name in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, sorted(_ALL_NAMES), n=1)
        found.append("%s (did you mean %s?)" % (key, close[0]) if close else key)
    if not found:
        return None
    return "ignoring %s: no such setting: %s" % (
        "an environment variable" if len(found) == 1 else "environment variables",
        "; ".join(found))


def help_table(settings):
    """Markdown table of settings, for --help-settings and the README."""
    rows = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for s in settings:
        default = "CPU count" if s.name == "CONCURRENCY" else str(s.default).lower() \
            if isinstance(s.default, bool) else str(s.default)
        rows.append("| `%s%s` | %s | %s |" % (ENV_PREFIX, s.name, "`%s`" % default if default
                                              else "(empty)", s.help))
    return "\n".join(rows)


def load_or_create_token(value, path):
    """The configured token, else the one in ``path``, else a new one written there
    (mode 0600).  Returns ``(token, created_path_or_None)``.

    Here rather than with the server: the agent generates its local API token too.
    """
    if value:
        return value, None
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        if token:
            return token, None
    except FileNotFoundError:
        pass
    import secrets  # only when a token is made: this module is imported by every process

    token = secrets.token_urlsafe(32)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token, path


def ensure_data_dir(config):
    """Create DATA_DIR (mode 0700) and the log folder or raise a ConfigError naming the
    setting.  Returns warning lines for the caller to log once its log is set up."""
    data_dir = os.path.abspath(config.DATA_DIR)
    _writable_dir("DATA_DIR", data_dir)
    notes = _private_dir(data_dir)
    if config.LOG_FILE:
        _writable_dir("LOG_FILE", os.path.dirname(config.path(config.LOG_FILE)))
    return notes


def _private_dir(path):
    """DATA_DIR holds the tokens and the database: other users must not even list it.

    An existing one open to them is made 0700, as a new one is, unless it is
    not this user's or has the sticky bit (such as /tmp): that is left as it
    is, with a warning.
    """
    st = os.stat(path)
    mode = st.st_mode & 0o7777
    if not mode & 0o077:
        return []
    if st.st_uid != os.geteuid() or mode & 0o1000 or path == os.path.expanduser("~"):
        return ["DATA_DIR %s is open to other users (mode %04o) and is left so (not only "
                "Octopus's folder): use a folder of its own" % (path, mode)]
    try:
        os.chmod(path, mode & 0o700)
    except OSError as e:
        return ["DATA_DIR %s stays open to other users (mode %04o): %s"
                % (path, mode, e.strerror or e)]
    return ["DATA_DIR %s was open to other users (mode %04o): made it %04o"
            % (path, mode, mode & 0o700)]


def _writable_dir(setting, path):
    try:
        os.makedirs(path, 0o700, exist_ok=True)
        probe = os.path.join(path, ".write-test-%d" % os.getpid())
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ConfigError("%s: %s cannot be written: %s" % (setting, path, e.strerror or e))
