"""Many tasks at once: ``tasks create --file``, ``tasks cancel ID...``, ``tasks delete ID...``.

Creation goes through the bulk route (POST /tasks with a JSON array), which
is all-or-nothing per request but not across requests: a refused request
leaves the requests before it in place, so every error says how many tasks
were created and names the refused task by its index in the whole file.
Cancel and delete have no bulk route: one request per task, going on past
the tasks the server refuses (already final, not found).
"""
import json
import re
import sys
import time

from octopus.ctl import (AUTH, OK, REFUSED, UNREACHABLE, CtlError, _task_path, print_json)
from octopus.ctl_progress import Progress, percent, wanted

MAX_TASKS = 1000     # tasks the server takes in one POST /tasks (docs/API.md)
MAX_BODY = 1 << 20   # bytes the server takes in one request body (docs/API.md)


# -- reading the file -------------------------------------------------------------

def read_tasks(path):
    """The task objects in ``path`` ("-": stdin), a JSON array or JSON lines;
    returns (tasks, lines): ``lines[i]`` is task i's line number, or None."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
        text = raw.decode("utf-8-sig")
    except OSError as e:
        raise CtlError("cannot read %s: %s" % (name, e.strerror or e))
    except UnicodeDecodeError as e:
        raise CtlError("%s is not UTF-8: %s" % (name, e))
    tasks, lines = _parse(text, name)
    if not tasks:
        raise CtlError("%s holds no tasks" % name)
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise CtlError("%s in %s is not a JSON object; nothing was created"
                           % (_which(i, lines), name))
    return tasks, lines


def _parse(text, name):
    try:
        value = json.loads(text) if text.strip() else []
    except ValueError as e:
        if not text.lstrip().startswith("{"):
            raise CtlError("%s is not valid JSON: %s" % (name, e))
        return _json_lines(text, name)  # several objects: one a line
    if isinstance(value, dict):
        return [value], [1]
    if not isinstance(value, list):
        raise CtlError("%s must hold a JSON array of tasks, or one task object a line" % name)
    return value, [None] * len(value)


def _json_lines(text, name):
    tasks, lines = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            tasks.append(json.loads(line))
        except ValueError as e:
            raise CtlError("line %d of %s is not valid JSON: %s; nothing was created"
                           % (number, name, e))
        lines.append(number)
    return tasks, lines


def _which(index, lines):
    """How an error names a task: its index in the whole file (and its line)."""
    line = lines[index] if index < len(lines) else None
    return "task %d" % index + (" (line %d)" % line if line else "")


def chunks(tasks, lines, name):
    """(first index, count, body) for requests of at most MAX_TASKS tasks and MAX_BODY bytes."""
    out, parts, size, first = [], [], 2, 0
    for i, task in enumerate(tasks):
        part = json.dumps(task, separators=(",", ":")).encode()
        if len(part) + 2 > MAX_BODY:
            raise CtlError("%s in %s is %d bytes, more than a request may carry (%d); nothing "
                           "was created" % (_which(i, lines), name, len(part), MAX_BODY))
        if parts and (len(parts) == MAX_TASKS or size + 1 + len(part) > MAX_BODY):
            out.append((first, len(parts), b"[" + b",".join(parts) + b"]"))
            parts, size, first = [], 2, i
        size += len(part) + (1 if parts else 0)
        parts.append(part)
    out.append((first, len(parts), b"[" + b",".join(parts) + b"]"))
    return out


# -- creating ---------------------------------------------------------------------

def create(client, args):
    tasks, lines = read_tasks(args.file)
    name = "stdin" if args.file == "-" else args.file
    requests = chunks(tasks, lines, name)
    progress = Progress(wanted(args))
    created, started = [], time.monotonic()
    try:
        for first, count, body in requests:
            try:
                reply = client.send("POST", "/tasks", body)
            except CtlError as e:
                raise _refused(e, first, count, len(created), len(tasks), lines, name)
            created += reply["tasks"]
            progress.update("created " + percent(len(created), len(tasks), "tasks"))
        progress.done()
    finally:
        progress.close()
    if args.json:
        return print_json({"tasks": created})
    if not args.quiet:
        print("Created %d task(s) from %s in %d request(s), %.2fs"
              % (len(created), name, len(requests), time.monotonic() - started))


FIELD = re.compile(r"^tasks\[(\d+)\](.*)$")


def _refused(error, first, count, created, total, lines, name):
    """The request's error, naming the task by its index in the file, and what was created."""
    match = FIELD.match(error.field or "")
    if match:  # "tasks[3].plugin" counts within this request
        index = first + int(match.group(1))
        reason = re.sub(r"^task \d+: ", "", error.reason)
        message = "%s in %s refused (%d): %s (field tasks[%d]%s)" % (
            _which(index, lines), name, error.status, reason, index, match.group(2))
    else:
        message = "%s (tasks %d to %d of %s)" % (error, first, first + count - 1, name)
    if error.code == UNREACHABLE:  # a timeout or a 5xx: it may have been created
        done = ("%d of %d tasks were created before this request; tasks %d to %d may have been "
                "too if it reached the server (see tasks list)" % (created, total, first,
                                                                  first + count - 1))
    else:
        done = "%d of %d tasks were created before it, none after" % (created, total)
    return CtlError(message + "; " + done, error.code)


# -- cancelling and deleting --------------------------------------------------------

def task_ids(args):
    """The IDs given, in order, once each; "-" reads more from stdin (whitespace apart)."""
    ids = []
    for value in args.id:
        ids += sys.stdin.read().split() if value == "-" else [value]
    return list(dict.fromkeys(ids))


def each(client, args, verb, call):
    """Run ``call(id)`` for every ID; a refused task is one line and the rest go on.

    Returns (done, refused): the replies, and ``{"id", "error"}`` for each refusal.
    Unreachable or a refused token stop at once: the next request would fail too.
    """
    ids = task_ids(args)
    if not ids:
        raise CtlError("no task IDs given")
    progress = Progress(wanted(args))
    done, refused = [], []
    try:
        for task_id in ids:
            try:
                done.append(call(task_id))
            except CtlError as e:
                if e.code in (UNREACHABLE, AUTH):
                    raise CtlError("%s; %d of %d tasks %s before it"
                                   % (e, len(done), len(ids), verb), e.code)
                refused.append({"id": task_id, "error": str(e)})
                progress.line("octopus: task %s: %s" % (task_id, e))
            progress.update(verb + " " + percent(len(done) + len(refused), len(ids), "tasks"))
        progress.done()
    finally:
        progress.close()
    return done, refused


def cancel(client, args):
    done, refused = each(client, args, "cancelled",
                         lambda i: client.send("POST", _task_path(i, "/cancel")))
    return _report(args, {"tasks": done, "refused": refused}, "Cancelled", len(done), refused)


def delete(client, args):
    def one(task_id):
        client.send("DELETE", _task_path(task_id))
        return task_id

    done, refused = each(client, args, "deleted", one)
    return _report(args, {"deleted": done, "refused": refused}, "Deleted", len(done), refused)


def _report(args, reply, verb, done, refused):
    if args.json:
        print_json(reply)
    elif not args.quiet:
        print("%s %d of %d task(s)%s" % (verb, done, done + len(refused),
                                         "; %d refused" % len(refused) if refused else ""))
    return REFUSED if refused else OK
