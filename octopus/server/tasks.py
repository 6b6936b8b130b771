"""Routes for operators: /tasks, /tasks/{id}, /executions; and /agent/tasks."""
import logging
import threading

import falcon

from octopus.constants import RunStatus, TaskOwnership, TaskStatus, TaskType
from octopus.server import validate
from octopus.server.audit import note
from octopus.server.auth import ADMIN, AGENT, check_client
from octopus.server.dispatch import hand_out
from octopus.server.errors import ApiError, bad_request, conflict, not_found, read_json
from octopus.store.tasks import FILTERS, MAX_PAGE, ConflictError

log = logging.getLogger("octopus.server")

MAX_WAIT = 60
MAX_BULK = 1000  # tasks in one POST /tasks


class TasksResource:
    def __init__(self, config, store, registry, dispatcher):
        self._config = config
        self._store = store
        self._registry = registry
        self._dispatcher = dispatcher

    def on_post(self, req, resp):
        """One task (a JSON object), or up to MAX_BULK (an array, all or none)."""
        body = read_json(req, kind=(dict, list), items="tasks")
        many = isinstance(body, list)
        if many and not 0 < len(body) <= MAX_BULK:
            raise bad_request("a list of tasks must hold 1 to %d tasks" % MAX_BULK, "tasks")
        fields = [self._validate(item, i if many else None)
                  for i, item in enumerate(body if many else [body])]
        tasks = create(self._config, self._store, self._dispatcher, fields)
        audit_created(req, tasks)
        resp.status = falcon.HTTP_201
        if many:
            resp.media = {"tasks": tasks}
        else:
            resp.location = "/tasks/" + tasks[0]["id"]
            resp.media = tasks[0]

    def _validate(self, item, index):
        if index is None:
            return validate.task_fields(item, self._registry)
        if not isinstance(item, dict):
            raise bad_request("task %d must be a JSON object" % index, "tasks[%d]" % index)
        try:
            return validate.task_fields(item, self._registry)
        except ApiError as e:  # name the task in the list: tasks[3].plugin
            raise bad_request("task %d: %s" % (index, e.description),
                              "tasks[%d].%s" % (index, e.field) if e.field else "tasks[%d]" % index)

    def on_get(self, req, resp):
        validate.only_params(req, FILTERS + ("limit", "offset", "q"))
        validate.choice_params(req, {"status": TaskStatus.ALL, "type": TaskType.ALL})
        filters = {k: req.get_param(k) for k in FILTERS if req.get_param(k) is not None}
        limit = validate.int_param(req, "limit", 100, 1, MAX_PAGE)
        offset = validate.int_param(req, "offset", 0, 0, validate.MAX_OFFSET)
        text = req.get_param("q")
        if text is not None and len(text) > validate.MAX_QUERY:
            raise bad_request("q must be at most %d characters" % validate.MAX_QUERY, "q")
        if text and "\x00" in text:  # SQLite's full-text query syntax ends a string at NUL
            raise bad_request("q must not contain NUL", "q")
        tasks, total = self._store.list_tasks(filters, limit, offset, text=text or None)
        resp.media = {"tasks": tasks, "total": total, "limit": limit, "offset": offset}


def create(config, store, dispatcher, fields):
    """Store validated tasks and wake the agents that may take them; returns the tasks."""
    tasks, agents = store.create_tasks(fields, delay=config.TASK_ASSIGNMENT_DELAY,
                                       candidates=dispatcher.waiting_names())
    for task in tasks:
        log.info("Task %s created: %s.%s owner=%s", task["id"], task["plugin"],
                 task["action"], task["owner"])
    dispatcher.wake(agents)
    waiting = sum(t["status"] == TaskStatus.CREATED and t["owner"] == TaskOwnership.ANYONE
                  for t in tasks)
    if waiting:
        dispatcher.wake_late_askers(waiting, agents)
    return tasks


def audit_created(req, tasks):
    for task in tasks:
        note(req, "task.create", task["id"], {k: task[k] for k in (
            "plugin", "action", "owner", "type")})


def wait_slots(config):
    """The waits ``?wait=`` may hold at once (GET /tasks/{id}, POST /agent/tasks).

    A wait holds one of the server's ordinary threads: a few at a time, so
    long-polls cannot starve heartbeats and results.  Past the cap a request
    is answered at once with the task as it is.
    """
    return threading.BoundedSemaphore(max(1, config.THREADS // 4))


def wait_final(store, dispatcher, slots, task_id, wait, runs=MAX_PAGE):
    """The task once it is final, or after ``wait`` seconds; None if it is gone
    or every wait slot is taken (then the caller answers with what it has)."""
    if not slots.acquire(blocking=False):
        return None
    event = dispatcher.watch_task(task_id)
    try:
        task = store.get_task(task_id, with_executions=True, runs=runs)
        if task is not None and task["status"] not in TaskStatus.FINAL:
            event.wait(wait)
            task = store.get_task(task_id, with_executions=True, runs=runs)
        return task
    finally:
        dispatcher.unwatch_task(task_id, event)
        slots.release()


class AgentTasksResource:
    """``POST /agent/tasks``: an agent creates an Adhoc task for itself alone.

    ``client`` must be the caller (check_client: an agent's own token speaks
    only for its agent), and the task goes to that client.
    """

    auth = AGENT

    def __init__(self, config, store, registry, dispatcher, waits):
        self._config = config
        self._store = store
        self._registry = registry
        self._dispatcher = dispatcher
        self._waits = waits  # wait_slots: shared with GET /tasks/{id}?wait=

    def on_post(self, req, resp):
        validate.only_params(req, ("wait",))
        wait = validate.float_param(req, "wait", 0, 0, MAX_WAIT)
        body = read_json(req)
        name = check_client(req, validate.agent_name(body.pop("client", None)))
        if req.context.agent is None and req.context.role != ADMIN:
            # The shared token may speak for agents that never enrolled; it
            # must not start their plugins: that takes the agent's own token.
            raise ApiError(falcon.HTTP_403, "POST /agent/tasks needs the agent's own token "
                           "(POST /agent/enroll), not the shared one", "client")
        if body.setdefault("owner", name) != name:
            raise ApiError(falcon.HTTP_403, "an agent may create tasks only for itself: owner "
                           "must be %s" % name, "owner")
        if body.get("type", TaskType.ADHOC) != TaskType.ADHOC:
            raise bad_request("an agent may create only Adhoc tasks", "type")
        [task] = create(self._config, self._store, self._dispatcher,
                        [validate.task_fields(body, self._registry)])
        audit_created(req, [task])
        if wait:
            task = wait_final(self._store, self._dispatcher, self._waits, task["id"],
                              wait) or task
        resp.status = falcon.HTTP_201
        resp.location = "/tasks/" + task["id"]
        resp.media = task


class TaskResource:
    def __init__(self, store, registry, dispatcher, waits):
        self._store = store
        self._registry = registry
        self._dispatcher = dispatcher
        self._waits = waits  # wait_slots

    def on_get(self, req, resp, task_id):
        validate.only_params(req, ("wait", "executions"))
        wait = validate.float_param(req, "wait", 0, 0, MAX_WAIT)
        runs = validate.int_param(req, "executions", MAX_PAGE, 0, MAX_PAGE)
        task = self._store.get_task(task_id, with_executions=True, runs=runs)
        if task is None:
            raise not_found("no task %s" % task_id[:64])
        if wait and task["status"] not in TaskStatus.FINAL:
            task = wait_final(self._store, self._dispatcher, self._waits, task_id, wait,
                              runs) or task
        resp.media = task

    def on_put(self, req, resp, task_id):
        body = read_json(req)
        task = self._store.get_task(task_id)
        if task is None:
            raise not_found("no task %s" % task_id[:64])
        changes = validate.task_fields(body, self._registry, existing=task)
        try:
            task = self._store.update_task(task_id, changes)
        except ConflictError as e:
            raise conflict(str(e))
        if task is None:
            raise not_found("no task %s" % task_id[:64])
        log.info("Task %s updated: %s", task_id, ", ".join(sorted(changes)) or "no changes")
        note(req, "task.update", task_id, {"changed": sorted(changes)})
        if task["status"] == TaskStatus.CREATED:
            # It may now be for other agents, or for ALL: hand it out again.
            hand_out(self._store, self._dispatcher, [task_id])
            task = self._store.get_task(task_id) or task
        resp.media = task

    def on_delete(self, req, resp, task_id):
        running = self._store.delete_task(task_id)
        if running is None:
            raise not_found("no task %s" % task_id[:64])
        if running:  # deleted while running: its agents must still stop the runs
            self._dispatcher.cancel(running)
        log.info("Task %s deleted%s", task_id, " (its runs are being stopped)" if running else "")
        note(req, "task.delete", task_id, {"agents_stopping": sorted(running)})
        resp.status = falcon.HTTP_204


class CancelResource:
    """``POST /tasks/{id}/cancel``: stop a task's runs, within about a second."""

    def __init__(self, store, dispatcher):
        self._store = store
        self._dispatcher = dispatcher

    def on_post(self, req, resp, task_id):
        try:
            task, agents = self._store.cancel_task(task_id)
        except ConflictError as e:
            raise conflict(str(e))
        if task is None:
            raise not_found("no task %s" % task_id[:64])
        self._dispatcher.cancel(agents)
        self._dispatcher.tasks_finished([task_id] if task["status"] in TaskStatus.FINAL else [])
        note(req, "task.cancel", task_id, {"status": task["status"]})
        log.info("Task %s cancelled%s", task_id,
                 " (stopping runs on %s)" % ", ".join(sorted(agents)) if agents else "")
        resp.media = task


class ExecutionsResource:
    def __init__(self, store):
        self._store = store

    def on_get(self, req, resp):
        validate.only_params(req, ("task_id", "client", "status", "limit", "offset"))
        validate.choice_params(req, {"status": RunStatus.ALL})
        limit = validate.int_param(req, "limit", 100, 1, MAX_PAGE)
        offset = validate.int_param(req, "offset", 0, 0, validate.MAX_OFFSET)
        runs = self._store.list_executions(
            task_id=req.get_param("task_id"), client=req.get_param("client"),
            status=req.get_param("status"), limit=limit, offset=offset)
        resp.media = {"executions": runs, "limit": limit, "offset": offset}


class ExecutionResource:
    def __init__(self, store):
        self._store = store

    def on_get(self, req, resp, run_id):
        run = self._store.get_execution(run_id)
        if run is None:
            raise not_found("no execution %s" % run_id)
        resp.media = run
