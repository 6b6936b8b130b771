"""The shared component schemas of ``GET /openapi.json`` (see openapi.py).

Limits come from the modules that enforce them, so the document cannot
promise a number the server does not keep.  Request schemas are as strict as
the server (task bodies refuse unknown fields); reply schemas name the fields
a client may rely on and allow more, so a new column is not a broken contract.
"""
from octopus import nesting, schedule
from octopus.constants import (MAX_RESULT, CatchUp, Overlap, RunStatus, TaskOwnership,
                               TaskStatus, TaskType)
from octopus.server import agents, validate
from octopus.store import previews

NULL_STRING = {"type": "string", "nullable": True}
NULL_NUMBER = {"type": "number", "nullable": True}
ANY = {"description": "Any JSON value."}
TIME = {"type": "string", "description": "ISO 8601 UTC time with milliseconds: "
                                         "2026-11-27T10:21:47.123Z"}
NULL_TIME = dict(TIME, nullable=True)
NAME = {"type": "string", "minLength": 1, "maxLength": 64,
        "pattern": r"^[A-Za-z][A-Za-z0-9_]*$",
        "description": "An identifier not starting with _ and not a Python keyword."}
AGENT_NAME = {"type": "string", "minLength": 1, "maxLength": validate.MAX_NAME,
              "pattern": r"^[^\s/\\]+$",
              "description": "An agent's name: printable, no whitespace, / or \\; "
                             "not %s or %s." % (TaskOwnership.ALL, TaskOwnership.ANYONE)}
RUN_ID = {"type": "integer", "minimum": 1, "maximum": agents.MAX_ID}
TASK_ID = {"type": "string", "description": "32 lowercase hex characters."}
# Agent bodies are lenient (newer agents, older servers): a list of run ids
# that is not one is ignored rather than refused.
LENIENT_IDS = {"description": "An array of run ids; anything else, or an item that is not "
                              "one, is ignored."}


DEPTH = ("Arrays and objects nested at most %d levels (as every JSON field of a request; "
         "deeper is a 400 naming the field)." % nesting.MAX_DEPTH)


def ref(name):
    return {"$ref": "#/components/schemas/" + name}


def array(items, **limits):
    return dict({"type": "array", "items": items}, **limits)


def obj(properties, required=(), closed=False, **extra):
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


KEEP_PROCESSES = {"type": "boolean", "default": False,
                  "description": "Leave running what a run started in the background when "
                                 "it ends; by default it is stopped (SIGTERM, then SIGKILL)."}


def _task_input(required):
    """POST and PUT bodies: the fields of validate.TASK_FIELDS, nothing else."""
    props = {
        "plugin": NAME,
        "action": NAME,
        "args": array(ANY, description=DEPTH),
        "kwargs": {"type": "object", "description": DEPTH},
        "owner": {"type": "string", "minLength": 1, "maxLength": validate.MAX_NAME,
                  "description": "%s, %s or an agent's name (an agent that never connects "
                                 "leaves the task Created)." % (TaskOwnership.ANYONE,
                                                                TaskOwnership.ALL)},
        "type": {"type": "string", "enum": list(TaskType.ALL)},
        "execution_start_time": NULL_STRING,
        "execution_end_time": NULL_STRING,
        "interval": {"nullable": True, "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": schedule.MAX_INTERVAL},
            {"type": "string", "description": "Whole seconds, or a 5-field cron."}]},
        "timezone": NULL_STRING,
        "timeout": {"type": "number", "nullable": True, "exclusiveMinimum": True,
                    "minimum": 0, "maximum": validate.MAX_TIMEOUT},
        "overlap": {"type": "string", "enum": list(Overlap.ALL)},
        "catch_up": {"type": "string", "enum": list(CatchUp.ALL)},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": validate.MAX_RETRIES},
        "retry_delay": {"type": "number", "minimum": 0, "maximum": validate.MAX_TIMEOUT},
        "retry_backoff": {"type": "number", "minimum": 1, "maximum": validate.MAX_BACKOFF},
        "keep_processes": KEEP_PROCESSES,
    }
    assert set(props) == set(validate.TASK_FIELDS), "a task field is missing here"
    return obj(props, required, closed=True)


PREVIEW_TEXT = {"type": "string", "description": "A value named in truncated: the first %d "
                                                 "bytes of its JSON text." % previews.PREVIEW}
TRUNCATED = array({"type": "string", "enum": ["args", "kwargs", "result"]}, description=(
    "The fields given as a string of their JSON text instead of their value: in listings "
    "(GET /tasks, GET /executions, a task's executions) each value over %d bytes of JSON, cut "
    "to its first %d bytes; elsewhere (present only then) a value stored nested deeper than "
    "%d levels, whole. GET /tasks/{id} and GET /executions/{id} give the values whole."
    % (previews.PREVIEW, previews.PREVIEW, nesting.READ_DEPTH)))


def _or_text(schema):
    return {"anyOf": [schema, PREVIEW_TEXT]}


TASK = obj({
    "id": TASK_ID, "owner": {"type": "string"}, "plugin": {"type": "string"},
    "action": {"type": "string"}, "args": _or_text(array(ANY)),
    "kwargs": _or_text({"type": "object"}), "truncated": TRUNCATED,
    "type": {"type": "string", "enum": list(TaskType.ALL)},
    "execution_start_time": NULL_TIME, "execution_end_time": NULL_TIME,
    "interval": NULL_STRING, "timezone": NULL_STRING, "timeout": NULL_NUMBER,
    "overlap": {"type": "string"}, "catch_up": {"type": "string"},
    "max_retries": {"type": "integer"}, "retry_delay": {"type": "number"},
    "retry_backoff": {"type": "number"}, "keep_processes": {"type": "boolean"},
    "cancelled_at": NULL_TIME,
    "status": {"type": "string", "enum": [TaskStatus.CREATED, TaskStatus.ACTIVE]
               + list(TaskStatus.FINAL)},
    "executor": NULL_STRING, "result": ANY,
    "created_at": TIME, "updated_at": TIME, "next_run_at": NULL_TIME,
}, required=("id", "owner", "plugin", "action", "args", "kwargs", "type", "status",
             "created_at", "updated_at"))

EXECUTION = obj({
    "id": RUN_ID, "task_id": TASK_ID, "client": NULL_STRING,
    "status": {"type": "string", "enum": list(RunStatus.PENDING + RunStatus.FINAL)},
    "attempt": {"type": "integer"}, "due_at": NULL_TIME, "result": ANY, "truncated": TRUNCATED,
    "created_at": TIME, "updated_at": TIME, "started_at": NULL_TIME,
    "finished_at": NULL_TIME, "duration": NULL_NUMBER,
}, required=("id", "task_id", "status"))

PRINTABLE = {"type": "string", "maxLength": 256, "nullable": True,
             "pattern": "^[^%s]*$" % validate.CONTROL_CHARACTERS}
HEARTBEAT_FIELDS = {
    "hostname": PRINTABLE,
    "ip": PRINTABLE,
    "version": PRINTABLE,
    "concurrency": {"type": "integer", "minimum": 1, "maximum": agents.MAX_CAPACITY},
    "running": dict(LENIENT_IDS, description="Runs the agent answers for now (array of run "
                                             "ids); anything else is ignored."),
}

SCHEMAS = {
    "Error": obj({"error": obj({"message": {"type": "string"}, "field": NULL_STRING},
                               required=("message", "field"))}, required=("error",),
                 description="Every error reply; field names the body field or query "
                             "parameter at fault, or is null."),
    "TaskInput": dict(_task_input(("plugin", "action")),
                      example={"plugin": "echo", "action": "echo", "args": [1, 2]}),
    "TaskChanges": _task_input(()),
    "AgentTaskInput": dict(_task_input(("client", "plugin", "action")), properties=dict(
        _task_input(())["properties"], client=AGENT_NAME,
        type={"type": "string", "enum": [TaskType.ADHOC]}),
        example={"client": "web-01", "plugin": "echo", "action": "echo"}),
    "Task": TASK,
    "TaskWithExecutions": {"allOf": [TASK, obj({"executions": array(ref("Execution"))},
                                               required=("executions",))]},
    "TaskList": obj({"tasks": array(ref("Task")), "total": {"type": "integer"},
                     "limit": {"type": "integer"}, "offset": {"type": "integer"}},
                    required=("tasks", "total", "limit", "offset")),
    "Execution": EXECUTION,
    "ExecutionWithOutput": {"allOf": [EXECUTION, obj({"output": NULL_STRING})]},
    "ExecutionList": obj({"executions": array(ref("Execution")), "limit": {"type": "integer"},
                          "offset": {"type": "integer"}},
                         required=("executions", "limit", "offset")),
    "Agent": obj({"name": {"type": "string"}, "hostname": NULL_STRING, "ip": NULL_STRING,
                  "version": NULL_STRING, "concurrency": {"type": "integer"},
                  "first_seen": TIME, "last_heartbeat": TIME, "running": {"type": "integer"},
                  "status": {"type": "string", "enum": ["online", "offline"]},
                  "credential": {"type": "string", "enum": ["enrolled", "revoked"],
                                 "nullable": True},
                  "enrolled_at": NULL_TIME, "revoked_at": NULL_TIME,
                  "takes_work": {"type": "boolean",
                                 "description": "Online and has asked for work since it came "
                                                "online: ALL tasks go to it."},
                  "stopped_at": NULL_TIME},
                 required=("name", "status", "takes_work")),
    "AgentList": obj({"agents": array(ref("Agent")), "total": {"type": "integer"},
                      "limit": {"type": "integer"}, "offset": {"type": "integer"}},
                     required=("agents", "total", "limit", "offset")),
    "Plugin": obj({"name": {"type": "string"}, "sha256": {"type": "string"},
                   "doc": {"type": "string"}, "actions": array({"type": "string"}),
                   "action_docs": array(obj({"name": {"type": "string"},
                                             "doc": {"type": "string"},
                                             "signature": {"type": "string"}}))},
                  required=("name", "sha256", "actions")),
    "Heartbeat": obj(dict(HEARTBEAT_FIELDS, client=AGENT_NAME,
                          instance=dict(PRINTABLE, maxLength=64),
                          stopping={"description": "true: the agent is shutting down; any "
                                                   "other value is ignored."}),
                     required=("client",),
                     example={"client": "web-01", "hostname": "web-01.example.net"}),
    "WorkRequest": obj({
        "client": AGENT_NAME,
        "capacity": {"type": "integer", "minimum": 0, "maximum": agents.MAX_CAPACITY},
        "wait": {"type": "number", "minimum": 0, "maximum": 3600,
                 "description": "Held at most the server's LONG_POLL_TIMEOUT."},
        "instance": dict(PRINTABLE, maxLength=64),
        "stopping_runs": LENIENT_IDS, "running": LENIENT_IDS,
        "heartbeat": obj(HEARTBEAT_FIELDS, nullable=True),
    }, required=("client",), example={"client": "web-01", "capacity": 1, "wait": 0}),
    "Work": obj({"runs": array(obj({"id": RUN_ID, "task_id": TASK_ID,
                                    "plugin": {"type": "string"},
                                    "action": {"type": "string"}, "args": array(ANY),
                                    "kwargs": {"type": "object"},
                                    "plugin_sha256": NULL_STRING, "timeout": NULL_NUMBER,
                                    "keep_processes": {"type": "boolean"},
                                    "attempt": {"type": "integer"},
                                    "lease": {"type": "string"}},
                                   required=("id", "task_id", "plugin", "action"))),
                 "waited": {"type": "boolean"}, "cancel": array(RUN_ID),
                 "plugins": {"type": "string"}, "heartbeat": {"type": "boolean"},
                 "retry_after": {"type": "number", "description": "Past the waiter cap: "
                                                                 "seconds before asking again."}},
                required=("runs", "waited", "cancel", "plugins", "heartbeat")),
    "AuditPage": obj({
        "entries": array(obj({
            "id": {"type": "integer"}, "at": TIME,
            "role": {"type": "string", "description": "admin or agent."},
            "actor": {"type": "string", "description": "The token's name: admin, agent (the "
                                                       "shared token) or an agent's name."},
            "address": NULL_STRING, "action": {"type": "string"}, "target": NULL_STRING,
            "detail": ANY}, required=("id", "at", "role", "actor", "action"))),
        "limit": {"type": "integer"},
        "next_before": {"type": "integer", "nullable": True,
                        "description": "Pass as before= for older entries; null: none left."}},
        required=("entries", "limit", "next_before")),
    "Results": obj({"client": AGENT_NAME, "results": array(obj({
        "id": RUN_ID,
        "status": dict(ANY, description="One of %s; anything else is recorded as failed "
                                        "(the run's result says why: BadReport)."
                                        % ", ".join(RunStatus.REPORTED)),
        "result": dict(ANY, description="Over %d bytes of JSON, or nested more than %d "
                                        "levels: the run is recorded as failed (BadReport)."
                                        % (MAX_RESULT, nesting.MAX_DEPTH)),
        # The server mends these rather than refuse a batch of results: a run
        # must be settled, not lost, whatever an agent wrote.
        "output": dict(ANY, description="Text; anything else is recorded as no output."),
        "duration": dict(ANY, description="Seconds, 0 or more; anything else is recorded as "
                                          "unknown."),
        "lease": dict(ANY, description="The hand-out's lease (text of at most 64 "
                                       "characters); anything else counts as none.")},
        required=("id", "status")),
        minItems=1, maxItems=agents.MAX_RESULTS)}, required=("client", "results")),
    "Acks": obj({"acked": array(RUN_ID),
                 "rejected": array(obj({"id": {"type": "integer"},
                                        "reason": {"type": "string"}}))},
                required=("acked", "rejected")),
    "Health": obj({"status": {"type": "string", "enum": ["ok", "error"]},
                   "database": {"type": "string"}, "version": {"type": "string"},
                   "schema_version": {"type": "integer"}, "uptime": {"type": "number"},
                   "tasks": obj({}, additionalProperties={"type": "integer"}),
                   "pending": {"type": "integer"}, "active": {"type": "integer"},
                   "running": {"type": "integer"}, "agents_online": {"type": "integer"},
                   "agents_waiting": {"type": "integer"}},
                  required=("status", "database")),
}
