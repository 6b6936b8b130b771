"""``GET /openapi.json``: the API's contract as an OpenAPI 3.0 document.

To add a route: add its path to ROUTES below with one ``op(...)`` per method
(the role, a summary, the reply, and its body, query parameters and errors),
and any new shared shape to SCHEMAS in openapi_schemas.py.  tests/test_openapi.py
fails until every path and method the app serves is listed here, and the
fuzzer (tests/test_fuzz.py) then sends the new operation bad input.

401, 403 and 429 are added to every operation that needs a token, 413 to
every one with a body, and each error reply is the Error schema.
"""
import copy
import re

from octopus import __version__
from octopus.constants import RunStatus, TaskStatus, TaskType
from octopus.plugins import MAX_PLUGIN_BYTES
from octopus.server import agents, overview, tasks, validate
from octopus.server.auth import ADMIN, AGENT, METRICS, PUBLIC
from octopus.server.errors import MAX_BODY
from octopus.server.openapi_schemas import (AGENT_NAME, NAME, NULL_TIME, RUN_ID, SCHEMAS, TASK_ID,
                                            TIME, array, obj, ref)
from octopus.store.audit import AUDIT_FILTERS
from octopus.store.maintenance import KINDS
from octopus.store.tasks import FILTERS, MAX_PAGE

SECURITY = {PUBLIC: [], ADMIN: [{"admin": []}], AGENT: [{"agent": []}, {"admin": []}],
            METRICS: [{"admin": []}, {"metrics": []}]}
SECURITY_SCHEMES = {
    "admin": {"type": "http", "scheme": "bearer",
              "description": "OCTOPUS_ADMIN_TOKEN: every route."},
    "agent": {"type": "http", "scheme": "bearer",
              "description": "An agent's own token (from POST /agent/enroll), speaking only "
                             "for its agent; or OCTOPUS_AGENT_TOKEN, shared: enrolling, and "
                             "agents that never enrolled unless REQUIRE_ENROLLMENT."},
    "metrics": {"type": "http", "scheme": "bearer",
                "description": "METRICS_TOKEN, when set: GET /metrics only."},
}
JSON = "application/json"
PAGE = (("limit", "integer", 100, 1, MAX_PAGE), ("offset", "integer", 0, 0, validate.MAX_OFFSET))


def query(name, kind="string", default=None, low=None, high=None, description=None, **extra):
    schema = {"type": kind}
    if default is not None:
        schema["default"] = default
    if low is not None:
        schema["minimum"], schema["maximum"] = low, high
    schema.update(extra)
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def path(name, schema):
    return {"name": name, "in": "path", "required": True, "schema": schema}


def json_body(schema):
    return {"required": True, "content": {JSON: {"schema": schema}}}


def op(role, summary, reply=None, status=200, body=None, params=(), errors=(),
       content=JSON, more=None, body_limit=MAX_BODY):
    """One operation.  ``reply`` is a schema for ``content``; ``errors`` maps
    each 4xx (and 409/503) it may answer to why; ``more`` adds other 2xx replies."""
    responses = {str(status): _reply("Success", reply, content)}
    for code, (why, schema) in (more or {}).items():
        responses[str(code)] = _reply(why, schema, JSON)
    for code, why in dict(errors).items():
        responses[str(code)] = _error(why)
    if role != PUBLIC:
        responses.setdefault("401", _error("Missing or wrong token."))
        responses.setdefault("403", _error("A token of a role this route does not take."))
        responses.setdefault("429", _error("Too many failed authentications from this address: "
                                           "refused before the token is checked; Retry-After "
                                           "says when to try again."))
    if body is not None:
        responses.setdefault("413", _error("The body is larger than %d bytes." % body_limit))
    responses.setdefault("503", _error("The database is busy or its disk full (Retry-After; "
                                       "nothing changed), or its file was deleted, replaced "
                                       "or found corrupt (the message names it)."))
    operation = {"summary": summary, "security": SECURITY[role],
                 "x-role": role, "responses": responses}
    if params:
        operation["parameters"] = list(params)
    if body is not None:
        operation["requestBody"] = body
    return operation


def _reply(why, schema, content):
    reply = {"description": why}
    if schema is not None:
        reply["content"] = {content: {"schema": schema}}
    return reply


def _error(why):
    return {"description": why, "content": {JSON: {"schema": ref("Error")}}}


BAD = {400: "A field or query parameter is missing, unknown, of the wrong type or out of "
            "range; the body is not a JSON object."}
PAGE_PARAMS = [query(n, k, d, lo, hi) for n, k, d, lo, hi in PAGE]
CHOICES = {"status": {"enum": list(TaskStatus.ALL)}, "type": {"enum": list(TaskType.ALL)}}
TASK_PATH = path("task_id", TASK_ID)
NO_TASK = {404: "No such task."}
AGENT_PATH = path("name", {"type": "string"})
NO_AGENT = {404: "No agent of that name (never seen, never enrolled)."}

ROUTES = {
    "/health": {"get": op(PUBLIC, "Liveness and counts.", ref("Health"),
                          more={503: ("The database is unusable.", ref("Health"))})},
    "/tasks": {
        "post": op(ADMIN, "Create a task, or up to %d (an array, all or none)." % tasks.MAX_BULK,
                   {"anyOf": [ref("Task"), {"type": "object", "required": ["tasks"],
                                            "properties": {"tasks": array(ref("Task"))}}]},
                   status=201, errors=BAD, body=json_body({"anyOf": [
                       ref("TaskInput"),
                       array(ref("TaskInput"), minItems=1, maxItems=tasks.MAX_BULK)]})),
        "get": op(ADMIN, "List tasks, newest first, filtered and paged.", ref("TaskList"),
                  errors=BAD, params=[query(f, description="Exact match.", **CHOICES.get(f, {}))
                                      for f in FILTERS]
                  + PAGE_PARAMS + [query("q", maxLength=validate.MAX_QUERY,
                                         description="Text search.")]),
    },
    "/tasks/{task_id}": {
        "get": op(ADMIN, "One task with its newest executions.", ref("TaskWithExecutions"),
                  errors={**BAD, **NO_TASK}, params=[
                      TASK_PATH,
                      query("wait", "number", 0, 0, tasks.MAX_WAIT,
                            "Seconds to hold the reply until the task is final; past THREADS "
                            "/ 4 waits held at once, the task is answered at once as it is."),
                      query("executions", "integer", MAX_PAGE, 0, MAX_PAGE)]),
        "put": op(ADMIN, "Change a task's definition (a partial update).", ref("Task"),
                  body=json_body(ref("TaskChanges")), params=[TASK_PATH],
                  errors={**BAD, **NO_TASK, 409: "The task has a run in progress."}),
        "delete": op(ADMIN, "Delete a task and its executions.", status=204,
                     params=[TASK_PATH], errors=NO_TASK),
    },
    "/tasks/{task_id}/cancel": {
        "post": op(ADMIN, "Stop a task's runs; it ends cancelled.", ref("Task"),
                   params=[TASK_PATH],
                   errors={**NO_TASK, 409: "The task has already ended."}),
    },
    "/executions": {
        "get": op(ADMIN, "List runs, newest first.", ref("ExecutionList"), errors=BAD,
                  params=[query("task_id"), query("client"),
                          query("status", enum=list(RunStatus.ALL))] + PAGE_PARAMS),
    },
    "/executions/{run_id}": {
        "get": op(ADMIN, "One run, with its output.", ref("ExecutionWithOutput"),
                  params=[path("run_id", RUN_ID)],
                  errors={404: "No such run (or not a whole number from 1 to %d)."
                               % agents.MAX_ID}),
    },
    "/agents": {"get": op(
        ADMIN, "The agents the server knows, online or offline, by name; paged and filtered.",
        ref("AgentList"), errors=BAD, params=[
            query("status", enum=["online", "offline"]),
            query("prefix", maxLength=validate.MAX_NAME,
                  description="Only agents whose name starts with this."),
            query("limit", "integer", agents.AGENTS_PAGE, 1, agents.MAX_AGENTS_PAGE),
            query("offset", "integer", 0, 0, validate.MAX_OFFSET)])},
    "/agents/{name}": {
        "delete": op(ADMIN, "Forget an agent (revoking it first): its name may enroll again.",
                     status=204, params=[AGENT_PATH], errors=NO_AGENT),
    },
    "/agents/{name}/revoke": {
        "post": op(ADMIN, "Revoke an agent: its token is refused, its held asks answered, "
                   "its unfinished runs lost at once (and tried again).",
                   {"type": "object", "required": ["name", "credential", "revoked_at", "tasks"],
                    "properties": {"name": {"type": "string"},
                                   "credential": {"type": "string", "enum": ["revoked"]},
                                   "enrolled_at": NULL_TIME, "revoked_at": TIME,
                                   "tasks": array(TASK_ID)}},
                   params=[AGENT_PATH], errors=NO_AGENT),
    },
    "/agent/enroll": {
        "post": op(AGENT, "An agent gets its own token, once (with the shared agent token), "
                   "or renews it (with its own).",
                   {"type": "object", "required": ["client", "token"],
                    "properties": {"client": AGENT_NAME, "token": {"type": "string"}}},
                   status=201, body=json_body(obj({
                       "client": AGENT_NAME,
                       "token": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43,256}$",
                                 "nullable": True,
                                 "description": "A token the agent made (32 random bytes or "
                                                "more, URL-safe base64) and wrote down first: "
                                                "asking again with it is answered the same. "
                                                "Absent or null: the server makes one."}},
                       required=("client",))),
                   errors={**BAD, 409: "The name is enrolled already (only its own token may "
                                       "renew it) or revoked (an admin must forget it first); "
                                       "or the proposed token is not taken (field token, "
                                       "\"choose another token\", whatever the reason)."}),
    },
    "/stats": {
        "get": op(ADMIN, "Tasks by status, agents, runs by outcome over time.",
                  {"type": "object", "required": ["tasks", "running", "agents", "runs"]},
                  errors=BAD, params=[
                      query("hours", "number", 1, overview.MIN_HOURS, overview.MAX_HOURS),
                      query("buckets", "integer", 12, 1, overview.MAX_BUCKETS)]),
    },
    "/schedule/preview": {
        "get": op(ADMIN, "The next run times of a cron or interval.",
                  {"type": "object", "required": ["next", "interval", "timezone"],
                   "properties": {"next": array({"type": "string"})}},
                  errors=BAD, params=[
                      query("type", enum=["Scheduled", "Interval"]),
                      dict(query("interval", description="A 5-field cron or whole seconds."),
                           required=True),
                      query("timezone"), query("execution_start_time"),
                      query("count", "integer", 5, 1, overview.MAX_PREVIEW)]),
    },
    "/maintenance": {
        "get": op(ADMIN, "Maintenance runs, settings and next times.",
                  {"type": "object", "required": ["runs", "settings", "next", "last"]},
                  errors=BAD, params=[query("kind", enum=list(KINDS))] + PAGE_PARAMS),
    },
    "/audit": {
        "get": op(ADMIN, "The audit log: who changed what, when, from where; newest first.",
                  ref("AuditPage"), errors=BAD,
                  params=[query(n, **({"enum": [ADMIN, AGENT]} if n == "role" else {}))
                          for n in AUDIT_FILTERS] + [
                      query("limit", "integer", 100, 1, MAX_PAGE),
                      query("before", "integer", None, 1, agents.MAX_ID,
                            description="An entry id: the page of entries older than it "
                                        "(next_before of the page before).")]),
    },
    "/heartbeat": {
        "post": op(AGENT, "An agent says it is alive.",
                   {"type": "object", "required": ["status", "plugins", "heartbeat_interval"],
                    "properties": {"heartbeat_interval": {
                        "type": "number", "description": "Seconds between heartbeats the "
                        "server needs (CLIENT_TIMEOUT / 3): an agent beats at the smaller of "
                        "this and its own HEARTBEAT_INTERVAL."}}},
                   body=json_body(ref("Heartbeat")), errors=BAD),
    },
    "/agent/work": {
        "post": op(AGENT, "An agent asks for runs (long-poll).", ref("Work"),
                   body=json_body(ref("WorkRequest")), errors=BAD),
    },
    "/agent/results": {
        "post": op(AGENT, "An agent reports finished runs.", ref("Acks"),
                   body=json_body(ref("Results")), errors=BAD, body_limit=agents.RESULTS_MAX_BODY,
                   more={409: ("Every result was fenced: nothing recorded.",
                               {"allOf": [ref("Acks"), ref("Error")]})}),
    },
    "/agent/tasks": {
        "post": op(AGENT, "An agent creates an Adhoc task for itself.", ref("Task"),
                   status=201, body=json_body(ref("AgentTaskInput")),
                   params=[query("wait", "number", 0, 0, tasks.MAX_WAIT)],
                   errors={**BAD, 403: "owner is not the client."}),
    },
    "/plugins": {
        "get": op(AGENT, "Plugins, their actions and sha256.",
                  {"type": "object", "required": ["plugins", "digest"],
                   "properties": {"plugins": array(ref("Plugin")),
                                  "digest": {"type": "string"}}}),
    },
    "/plugins/{name}": {
        "get": op(AGENT, "A plugin's source (its sha256 in X-Plugin-SHA256).",
                  {"type": "string"}, content="text/x-python",
                  params=[path("name", {"type": "string"})],
                  errors={404: "No such plugin, or not a plugin name."}),
        "put": op(ADMIN, "Upload a plugin; checked by parsing only, never run on the server.",
                  ref("Plugin"), more={201: ("A new plugin.", ref("Plugin"))},
                  params=[path("name", NAME)],
                  body={"required": True, "content": {"text/x-python": {
                      "schema": {"type": "string", "maxLength": MAX_PLUGIN_BYTES}}}},
                  errors={400: "A bad name, or source that does not parse, has no action "
                               "or fails to import.",
                          404: "A name with a / in it is no route.",
                          413: "The source is larger than %d bytes." % MAX_PLUGIN_BYTES}),
    },
    "/metrics": {"get": op(METRICS, "Prometheus text format 0.0.4.", {"type": "string"},
                           content="text/plain")},
    "/openapi.json": {"get": op(PUBLIC, "This document.", {"type": "object"})},
    "/": {
        "get": op(PUBLIC, "The dashboard page.", {"type": "string"}, content="text/html",
                  errors={404: "The dashboard is not installed."}),
        "head": op(PUBLIC, "The dashboard page's headers.",
                   errors={404: "The dashboard is not installed."}),
    },
    # falcon's static route (app.add_static_route): one path segment or more.
    "/static/{path}": {
        "get": op(PUBLIC, "The dashboard's files.", {"type": "string"}, content="*/*",
                  params=[path("path", {"type": "string"})],
                  errors={404: "No such file."}),
        "head": op(PUBLIC, "The dashboard's files' headers.",
                   params=[path("path", {"type": "string"})], errors={404: "No such file."}),
    },
}


def document():
    """The whole OpenAPI document, a fresh copy (callers may change it)."""
    return copy.deepcopy({
        "openapi": "3.0.3",
        "info": {"title": "Octopus", "version": __version__,
                 "description": "Distributed task orchestration. docs/API.md has the prose; "
                                "every error is {\"error\": {\"message\", \"field\"}}."},
        "paths": ROUTES,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    })


def falcon_path(template):
    """``/executions/{run_id:int(...)}`` -> ``/executions/{run_id}``."""
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", r"{\1}", template)


class OpenApiResource:
    """Public: it tells no more than docs/API.md does, and clients generate from it."""

    auth = PUBLIC

    def __init__(self):
        self._doc = document()

    def on_get(self, req, resp):
        resp.media = self._doc
