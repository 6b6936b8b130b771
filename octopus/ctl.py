"""Operator commands: ``tasks``, ``agents`` and ``plugins`` over the HTTP API.

Standard library only, so they run wherever an agent runs.  Every failure is
one line on stderr and an exit code scripts can tell apart (EXIT_CODES).
Tables are for people; ``--json`` prints the API's JSON as it came.
Many tasks at once (``create --file``, ``cancel|delete ID...``): ctl_bulk.py.
"""
import json
import os
import sys
import time
import urllib.parse

from octopus import config as settings
from octopus.agent.client import ServerClient, ServerError, Unreachable
from octopus.config import ConfigError
from octopus.constants import TaskStatus

OK, FAILED, REFUSED, UNREACHABLE, AUTH = 0, 1, 2, 3, 4
EXIT_CODES = """exit codes:
  0  done
  1  the task did not succeed (tasks create --wait: failed, cancelled, or not final in time)
  2  bad usage, or the server refused the request (400, 404, 405, 409, 413);
     with --file or many IDs: a task was refused (the error says how many were done)
  3  the server is unreachable, timed out or failed (5xx)
  4  no admin token, or the server refused it (401, 403)"""


class CtlError(Exception):
    """A failure reported as one line, with its exit code."""

    def __init__(self, message, code=REFUSED, status=None, field=None, reason=None):
        super().__init__(message)
        self.code = code
        # The server's own words, for callers that restate them (bulk create
        # renumbers "tasks[3].plugin" to the task's index in the whole file).
        self.status, self.field, self.reason = status, field, reason


# -- talking to the server ------------------------------------------------------

class Client(ServerClient):
    """The agent's client, its failures turned into one-line CtlErrors."""

    def __init__(self, url, token, timeout):
        super().__init__(url, token, timeout)
        self.url = url
        self.request_timeout = timeout

    def send(self, method, path, data=None, content_type="application/json", timeout=None):
        """One request; the decoded JSON reply (None when empty), or CtlError."""
        try:
            return self.request(method, path, timeout=timeout, data=data,
                                content_type=content_type)
        except Unreachable as e:
            raise CtlError("cannot reach the server at %s: %s" % (self.url, e), UNREACHABLE)
        except ServerError as e:
            error = _refusal(e.status, e.message, e.field)
            error.status, error.field, error.reason = e.status, e.field, e.message
            raise error
        except ValueError:
            raise CtlError("%s did not answer JSON on %s %s: is it an Octopus server?"
                           % (self.url, method, path), UNREACHABLE)


def _refusal(status, message, field):
    where = " (field %s)" % field if field else ""
    if status in (401, 403):
        return CtlError("the server refused the token (%d %s): set OCTOPUS_ADMIN_TOKEN to the "
                        "admin token, or --data-dir to the server's DATA_DIR"
                        % (status, message), AUTH)
    if status >= 500:
        return CtlError("server error %d: %s" % (status, message), UNREACHABLE)
    if status == 404:
        return CtlError("not found: %s" % message, REFUSED)
    return CtlError("refused (%d): %s%s" % (status, message, where), REFUSED)


def _local_config(args):
    """The server's settings as the server would read them on this host."""
    flags = {"DATA_DIR": args.data_dir} if args.data_dir else None
    return settings.layered(settings.SERVER_SETTINGS, args.config, flags)


def server_url(args, config, file_values):
    url = args.server_url or os.environ.get("OCTOPUS_SERVER_URL") or file_values.get("SERVER_URL")
    if url:
        return url.rstrip("/")
    return settings.local_url(config.SERVER_HOST, config.SERVER_PORT)


def admin_token(args, config):
    token = args.token or config.ADMIN_TOKEN  # env OCTOPUS_ADMIN_TOKEN, else the config file
    if token:
        return _checked(token)
    path = config.path("admin.token")
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise CtlError("no admin token: set OCTOPUS_ADMIN_TOKEN, or --data-dir to the "
                       "server's DATA_DIR (%s: %s)" % (path, e.strerror or e), AUTH)
    if not token:
        raise CtlError("no admin token: %s is empty" % path, AUTH)
    return _checked(token)


def _checked(token):
    # A header cannot carry it; say so without echoing the secret.
    if not token.isprintable() or not token.isascii() or " " in token:
        raise CtlError("the admin token must be printable ASCII without spaces", AUTH)
    return token


def connect(args):
    config, file_values = _local_config(args)
    url = server_url(args, config, file_values)
    if not url.startswith(("http://", "https://")):
        raise CtlError("server URL %r must start with http:// or https://" % url)
    token = admin_token(args, config)
    try:
        return Client(url, token, timeout=args.request_timeout)
    except ValueError as e:  # a bad port or host in the URL
        raise CtlError("server URL %r is not usable: %s" % (url, e))


# -- output -----------------------------------------------------------------------

WIDTH = 40  # longest cell in a table; longer values are cut with "..."
AGENTS_PAGE = 1000  # agents per request when listing them all (the server's largest page)


def cell(value, width=WIDTH):
    if value is None:
        text = "-"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())  # one line per row
    return text if len(text) <= width else text[:width - 3] + "..."


def when(value):
    """2026-11-27T10:21:47.123Z -> 2026-11-27 10:21:47 (UTC), short enough for a table."""
    return value[:19].replace("T", " ") if value else "-"


def table(headers, rows, out=None):
    out = out or sys.stdout
    rows = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers] + rows:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def print_json(value):
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def print_task(task):
    fields = ("id", "status", "type", "owner", "executor", "interval", "timezone",
              "execution_start_time", "execution_end_time", "next_run_at", "timeout",
              "max_retries", "created_at", "updated_at", "cancelled_at")
    print("%-20s %s.%s" % ("plugin.action", task["plugin"], task["action"]))
    for name in fields:
        if task.get(name) is not None:
            print("%-20s %s" % (name, task[name]))
    for name in ("args", "kwargs", "result"):
        print("%-20s %s" % (name, json.dumps(task.get(name), ensure_ascii=False)))
    error = (task.get("result") or {}).get("error") if isinstance(task.get("result"), dict) else None
    if isinstance(error, dict) and error.get("traceback"):  # readable, not one JSON line
        print("\n" + error["traceback"].rstrip())
    runs = task.get("executions") or []
    if runs:
        print("\nruns (%d, oldest first):" % len(runs))
        table(["RUN", "AGENT", "TRY", "STATUS", "STARTED", "DURATION", "RESULT"],
              [[r["id"], r["client"], r.get("attempt"), r["status"], when(r.get("started_at")),
                "-" if r.get("duration") is None else "%.3fs" % r["duration"], r.get("result")]
               for r in runs])


# -- commands ---------------------------------------------------------------------

def tasks_list(client, args):
    query = {k: v for k, v in (("status", args.status), ("type", args.type),
                               ("owner", args.owner), ("plugin", args.plugin),
                               ("executor", args.executor), ("q", args.search),
                               ("limit", args.limit), ("offset", args.offset)) if v is not None}
    reply = client.send("GET", "/tasks?" + urllib.parse.urlencode(query))
    if args.json:
        return print_json(reply)
    table(["ID", "STATUS", "TYPE", "OWNER", "ACTION", "EXECUTOR", "CREATED (UTC)", "NEXT RUN"],
          [[t["id"], t["status"], t["type"], t["owner"], "%s.%s" % (t["plugin"], t["action"]),
            t["executor"], when(t["created_at"]), when(t.get("next_run_at"))]
           for t in reply["tasks"]])
    shown = len(reply["tasks"])
    print("%d of %d task(s)%s" % (shown, reply["total"],
                                  " from offset %d" % reply["offset"] if reply["offset"] else ""))


def _task_path(task_id, suffix=""):
    return "/tasks/" + urllib.parse.quote(task_id, safe="") + suffix


def tasks_show(client, args):
    task = client.send("GET", _task_path(args.id))
    return print_json(task) if args.json else print_task(task)


def _json_arg(text, flag, kind):
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:  # nested past what the parser takes
        raise CtlError("%s is not valid JSON: %s" % (flag, e))
    if not isinstance(value, kind):
        raise CtlError("%s must be a JSON %s" % (flag, "array" if kind is list else "object"))
    return value


CREATE_FIELDS = (("owner", "owner"), ("type", "type"), ("interval", "interval"),
                 ("timezone", "timezone"), ("start", "execution_start_time"),
                 ("end", "execution_end_time"), ("timeout", "timeout"),
                 ("max_retries", "max_retries"), ("retry_delay", "retry_delay"),
                 ("retry_backoff", "retry_backoff"), ("overlap", "overlap"),
                 ("catch_up", "catch_up"), ("keep_processes", "keep_processes"))


def tasks_create(client, args):
    if args.file is not None:
        return _bulk().create(client, _file_only(args))
    if args.plugin is None or args.action is None:
        raise CtlError("tasks create needs PLUGIN ACTION, or --file FILE with many tasks")
    body = {"plugin": args.plugin, "action": args.action}
    if args.args is not None:
        body["args"] = _json_arg(args.args, "--args", list)
    if args.kwargs is not None:
        body["kwargs"] = _json_arg(args.kwargs, "--kwargs", dict)
    body.update({field: getattr(args, attr) for attr, field in CREATE_FIELDS
                 if getattr(args, attr) is not None})
    task = client.send("POST", "/tasks", json.dumps(body).encode())
    if args.wait is not None:
        task = wait_final(client, task, args.wait)
    if args.json:
        print_json(task)
    elif not args.quiet:
        print_task(task)
    return None if args.wait is None else outcome(task)


def wait_final(client, task, seconds):
    """Hold GET /tasks/{id}?wait= (60 s at most each) until final or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while task["status"] not in TaskStatus.FINAL:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        step = min(60.0, left)
        task = client.send("GET", _task_path(task["id"], "?wait=%.3f" % step),
                           timeout=step + client.request_timeout)
    return task


def outcome(task):
    """Exit code for a waited task: 0 only if every run it made succeeded."""
    status, result = task["status"], task.get("result")
    if status == "success" or (status == "Done" and not (
            isinstance(result, dict) and result.get("total", 0) != result.get("success", 0))):
        return OK
    if status not in TaskStatus.FINAL:
        sys.stderr.write("octopus: task %s is still %s\n" % (task["id"], status))
    else:
        sys.stderr.write("octopus: task %s ended %s\n" % (task["id"], status))
    return FAILED


def _bulk():
    from octopus import ctl_bulk  # imports this module: loaded when first used

    return ctl_bulk


def _file_only(args):
    """--file brings every field; a flag beside it would be silently ignored, so refuse it."""
    if args.plugin is not None:
        raise CtlError("give PLUGIN ACTION or --file, not both: the file names each task's own")
    flags = [attr for attr, _ in CREATE_FIELDS + (("args", 0), ("kwargs", 0), ("wait", 0))
             if getattr(args, attr) is not None]
    if flags:
        raise CtlError("--%s does not apply with --file: put the field in each task"
                       % flags[0].replace("_", "-"))
    return args


def _one_id(args):
    """The single ID of a plain ``tasks cancel ID`` (its reply as before), else None."""
    return args.id[0] if len(args.id) == 1 and args.id[0] != "-" else None


def tasks_cancel(client, args):
    task_id = _one_id(args)
    if task_id is None:
        return _bulk().cancel(client, args)
    task = client.send("POST", _task_path(task_id, "/cancel"))
    if args.json:
        return print_json(task)
    if args.quiet:
        return
    print("Task %s cancelled (status now %s%s)" % (
        task["id"], task["status"],
        ": its runs are being stopped" if task["status"] == "Active" else ""))


def tasks_delete(client, args):
    task_id = _one_id(args)
    if task_id is None:
        return _bulk().delete(client, args)
    client.send("DELETE", _task_path(task_id))
    if args.json:
        return print_json({"deleted": task_id})
    if not args.quiet:
        print("Task %s deleted" % task_id)


def agents(client, args):
    if args.action:
        return _agent_credential(client, args)
    reply = _all_agents(client)
    if args.json:
        return print_json(reply)
    table(["NAME", "STATUS", "CREDENTIAL", "HOST", "IP", "VERSION", "SLOTS", "RUNNING",
           "LAST HEARTBEAT (UTC)"],
          [[a["name"], a["status"], a.get("credential"), a.get("hostname"), a.get("ip"),
            a.get("version"), a.get("concurrency"), a.get("running"),
            when(a.get("last_heartbeat"))] for a in reply["agents"]])
    online = sum(a["status"] == "online" for a in reply["agents"])
    print("%d agent(s), %d online" % (len(reply["agents"]), online))


def _all_agents(client):
    """Every agent, a page at a time (GET /agents pages its answer)."""
    agents, page = [], {"agents": [None], "total": 1}
    while page["agents"] and len(agents) < page["total"]:  # an empty page: the fleet shrank
        page = client.send("GET", "/agents?limit=%d&offset=%d" % (AGENTS_PAGE, len(agents)))
        agents += page["agents"]
        if "total" not in page:  # a server from before paging sends every agent at once
            break
    return {"agents": agents, "total": len(agents)}


def _agent_credential(client, args):
    if not args.name:
        raise CtlError("agents %s needs the agent's NAME" % args.action)
    path = "/agents/" + urllib.parse.quote(args.name, safe="")
    if args.action == "revoke":
        reply = client.send("POST", path + "/revoke")
    else:
        reply = client.send("DELETE", path) or {"forgotten": args.name}
    if args.json:
        return print_json(reply)
    print("Agent %s %s" % (args.name, "revoked: its token is refused, its unfinished runs were "
                           "recorded lost" if args.action == "revoke" else
                           "forgotten: the name may enroll again"))


def plugins(client, args):
    if args.action == "push":
        from octopus.ctl_push import push

        return push(client, args)
    reply = client.send("GET", "/plugins")
    if args.json:
        return print_json(reply)
    table(["NAME", "SHA256", "ACTIONS", "DESCRIPTION"],
          [[p["name"], p["sha256"][:12], ", ".join(p["actions"]), p.get("doc")]
           for p in reply["plugins"]])


# -- entry point ------------------------------------------------------------------

def main(argv):
    from octopus.ctl_args import parser

    args = parser().parse_args(argv)
    unknown = settings.unknown_environment()
    if unknown:
        sys.stderr.write("octopus: warning: %s\n" % unknown)
    if getattr(args, "run", None) is None:  # 'tasks' alone
        return _fail("say tasks list|show|create|cancel|delete (see 'tasks --help')", REFUSED)
    try:
        client = connect(args)
        try:
            return args.run(client, args) or OK
        finally:
            client.close()
    except CtlError as e:
        return _fail(str(e), e.code)
    except ConfigError as e:
        return _fail(str(e), REFUSED)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # piped into head: not an error
        sys.stderr.close()
        return OK


def _fail(message, code):
    sys.stderr.write("octopus: %s\n" % message)
    return code
