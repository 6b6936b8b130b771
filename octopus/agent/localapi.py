"""The agent's local API: the runs this agent holds, stopped from this host,
and plugin actions run on this agent now.

Off unless LOCAL_API_PORT is set; listens on 127.0.0.1 only, with a bearer
token of its own.  Standard library only, like the rest of the agent.

  GET    /tasks        runs going, and the last RECENT_RUNS finished
  GET    /tasks/{id}   one of them (a run id, or a task id: its newest run here)
  POST   /tasks        {plugin, action, args, kwargs, timeout}: a task for this
                       agent alone, created on the server (?wait=N: until final)
  PUT    /tasks/{id}   {"status": "cancelled"}: stop it, as a server cancel does
  DELETE /tasks/{id}   the same
"""
import collections
import hmac
import json
import logging
import re
import threading
import time
import urllib.parse

from octopus.agent.client import ServerError, Unreachable
from octopus.agent.localhttp import ApiError, Server
from octopus.config import ConfigError, load_or_create_token
from octopus.timeutil import iso

log = logging.getLogger("octopus.agent")

HOST = "127.0.0.1"  # never another address: this API can run code on the host
TOKEN_FILE = "local-api.token"
MAX_WAIT = 60          # seconds a POST /tasks?wait= may hold, as the server's GET /tasks/{id}
RECENT_RUNS = 100
TASK_FIELDS = ("plugin", "action", "args", "kwargs", "timeout")
PASSED_ON = (400, 404, 409, 413)  # server refusals that are the local caller's to fix
_RUN_ID = re.compile(r"[1-9][0-9]{0,17}")
_TASK_ID = re.compile(r"[0-9a-f]{32}")


def start(agent, client_factory):
    """The local API of ``agent``, listening; ConfigError if its port cannot be had."""
    config = agent.config
    token, created = load_or_create_token(config.LOCAL_API_TOKEN, config.path(TOKEN_FILE))
    try:
        api = LocalApi(agent, client_factory, config.LOCAL_API_PORT, token)
    except OSError as e:
        raise ConfigError("LOCAL_API_PORT: cannot listen on %s:%d: %s"
                          % (HOST, config.LOCAL_API_PORT, e.strerror or e))
    log.info("Local API listening on http://%s:%d (token %s)", HOST, config.LOCAL_API_PORT,
             "from LOCAL_API_TOKEN" if config.LOCAL_API_TOKEN else "in " + config.path(TOKEN_FILE))
    if created:
        log.info("Local API token generated into %s", created)
    return api


class Ledger:
    """The runs this agent took since it started: going, and the last finished."""

    def __init__(self):
        self._lock = threading.Lock()
        self._going = {}  # run id -> (monotonic start, entry)
        self._recent = collections.deque(maxlen=RECENT_RUNS)

    def started(self, run):
        entry = {"run_id": run["id"], "task_id": run["task_id"], "plugin": run["plugin"],
                 "action": run["action"], "attempt": run.get("attempt"),
                 "timeout": run.get("timeout"), "started_at": iso(time.time())}
        with self._lock:
            self._going[run["id"]] = (time.monotonic(), entry)

    def finished(self, result):
        with self._lock:
            _, entry = self._going.pop(result["id"], (None, None))
            if entry is not None:  # not so for results from before a restart
                self._recent.append(dict(entry, state="finished", status=result["status"],
                                         finished_at=iso(time.time()),
                                         duration=result.get("duration")))

    def snapshot(self):
        """``(runs going, with their elapsed seconds; runs finished, newest first)``."""
        now = time.monotonic()
        with self._lock:
            going = [dict(entry, elapsed=round(now - t0, 3)) for t0, entry in self._going.values()]
            return going, list(self._recent)[::-1]


class LocalApi:
    def __init__(self, agent, client_factory, port, token):
        self._agent = agent
        self._client = client_factory
        self._token = token.encode("utf-8")
        self._ledger = Ledger()
        self._http = Server(self, (HOST, port))
        self._thread = threading.Thread(target=self._http.serve_forever, name="agent-local-api",
                                        daemon=True)
        self._thread.start()

    def started(self, run):
        self._ledger.started(run)

    def finished(self, result):
        self._ledger.finished(result)

    def close(self):
        self._http.shutdown()
        self._http.server_close()

    # -- requests -------------------------------------------------------------

    def handle(self, method, target, headers, read_body):
        """One request; returns ``(status, JSON body)`` or raises ApiError."""
        url = urllib.parse.urlsplit(target)
        routes, ident = self._route(url.path)
        if routes is None:
            raise ApiError(404, "no such route: %s %s" % (method, url.path[:200]))
        if not self._authorized(headers.get("Authorization") or ""):
            raise ApiError(401, "missing or wrong token; send Authorization: Bearer <token> "
                           "(the agent's local API token)", headers={"WWW-Authenticate": "Bearer"})
        if method not in routes:
            raise ApiError(405, "method %s is not allowed on %s" % (method, url.path[:200]),
                           headers={"Allow": ", ".join(sorted(routes))})
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        return routes[method](query, read_body, *ident)

    def _route(self, path):
        if path == "/tasks":
            return {"GET": self._list, "POST": self._create}, ()
        head, _, ident = path.rpartition("/")
        if head == "/tasks" and ident:
            return {"GET": self._show, "PUT": self._update, "DELETE": self._cancel}, (ident,)
        return None, ()

    def _authorized(self, header):
        scheme, _, given = header.partition(" ")
        given = given.strip().encode("utf-8", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self._token)

    def _list(self, query, read_body):
        _only_params(query, ())
        going, recent = self._runs()
        return 200, {"agent": self._agent.name, "running": going, "recent": recent}

    def _show(self, query, read_body, ident):
        _only_params(query, ())
        going, recent = self._matching(ident)
        return 200, (going + recent)[0]

    def _update(self, query, read_body, ident):
        _only_params(query, ())
        body = _json_object(read_body())
        for key in body:
            if key != "status":
                raise ApiError(400, "unknown field %s; only status can be set" % key[:64], key[:64])
        if body.get("status") != "cancelled":
            raise ApiError(400, "status can only be set to cancelled", "status")
        return self._cancel(query, read_body, ident)

    def _cancel(self, query, read_body, ident):
        _only_params(query, ())
        going, recent = self._matching(ident)
        stopped = [run for run in going if self._agent.cancel_run(run["run_id"])]
        if not stopped:
            ended = (going or recent)[0]
            raise ApiError(409, "run %d has already ended%s" % (
                ended["run_id"], ": " + ended["status"] if "status" in ended else ""))
        return 202, dict(stopped[0], state="stopping")

    def _create(self, query, read_body):
        _only_params(query, ("wait",))
        wait = _wait_param(query)
        fields = _task_body(_json_object(read_body()))
        path = "/agent/tasks" + ("?wait=%g" % wait if wait else "")
        client = self._client(timeout=wait + 15)
        try:
            return 201, client.request("POST", path, dict(fields, client=self._agent.name))
        except ServerError as e:
            if e.status in PASSED_ON:
                raise ApiError(e.status, e.message, e.field)
            raise ApiError(502, "the server refused the task: %s" % e.message)
        except Unreachable as e:
            raise ApiError(503, "cannot reach the server: %s" % e)
        finally:
            client.close()

    def _runs(self):
        """Runs going (with their state) and finished (with whether the server has them)."""
        running, stopping, unreported = self._agent.held_runs()
        going, recent = self._ledger.snapshot()
        # One the agent no longer runs is on its way to ``recent``.
        going = [dict(r, state="stopping" if r["run_id"] in stopping else "running")
                 for r in going if r["run_id"] in running]
        recent = [dict(r, reported=r["run_id"] not in unreported) for r in recent]
        return going, recent

    def _matching(self, ident):
        """The runs ``ident`` names (a run id or a task id), going and finished; 404 if none."""
        if _RUN_ID.fullmatch(ident):
            key, value = "run_id", int(ident)
        elif _TASK_ID.fullmatch(ident):
            key, value = "task_id", ident
        else:
            raise ApiError(404, "%s is neither a run id nor a task id" % ident[:64])
        going, recent = self._runs()
        going = [r for r in going if r[key] == value]
        recent = [r for r in recent if r[key] == value]
        if not going and not recent:
            raise ApiError(404, "this agent holds no run of %s %s" % (key[:-3], ident))
        return going, recent


def _only_params(query, allowed):
    for name in query:
        if name not in allowed:
            raise ApiError(400, "unknown query parameter %s" % name[:64], name[:64])


def _wait_param(query):
    raw = query.get("wait", ["0"])[-1]
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT:
        raise ApiError(400, "wait must be a number of seconds from 0 to %d" % MAX_WAIT, "wait")
    return wait


def _task_body(body):
    for key in body:
        if key == "owner":
            raise ApiError(400, "owner is always this agent", "owner")
        if key not in TASK_FIELDS:
            raise ApiError(400, "unknown field %s; a task here has %s" % (
                key[:64], ", ".join(TASK_FIELDS)), key[:64])
    return body


def _json_object(data):
    if not data.strip():
        raise ApiError(400, "request body is empty; expected a JSON object")
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "request body is not valid JSON: %s" % (str(e)[:200],))
    if not isinstance(value, dict):
        raise ApiError(400, "request body must be a JSON object")
    return value


def _no_constant(name):
    raise ValueError("%s is not a JSON number" % name)
