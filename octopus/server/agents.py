"""Routes agents use (heartbeat, work, results) and the fleet view (/agents)."""
import logging
import threading
import time

import falcon

from octopus import nesting
from octopus.constants import MAX_RESULT, RunStatus, run_error
from octopus.server.auth import AGENT, check_client
from octopus.server.dispatch import hand_out
from octopus.server.errors import bad_request, read_json
from octopus.server import validate
from octopus.server.validate import agent_name, printable_text
from octopus.store.agents import STATUSES
from octopus.store.db import dumps
from octopus.timeutil import iso, parse_iso

log = logging.getLogger("octopus.server")

MAX_RESULTS = 1000
MAX_CAPACITY = 1024
MAX_ID = 2 ** 63 - 1        # SQLite's largest integer
MAX_OUTPUT = 2 << 20        # characters of output kept per run (agents cut at MAX_OUTPUT)
RESULTS_MAX_BODY = 12 << 20  # a batch of results with their output
AGENTS_PAGE = 100       # agents in a GET /agents page unless ?limit= says
MAX_AGENTS_PAGE = 1000
MAX_GOODBYES = 100000   # agents whose goodbye is remembered (their late heartbeats ignored)


def _int_field(body, name, default, low, high):
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request("%s must be a whole number from %d to %d" % (name, low, high), name)
    return value


def _number_field(body, name, default, low, high):
    value = body.get(name, default)
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not low <= value <= high):
        raise bad_request("%s must be a number from %g to %g" % (name, low, high), name)
    return value


class Beats:
    """What a heartbeat does, whether it came alone or inside an ask for work."""

    def __init__(self, config, store, dispatcher, clock=time.time):
        self._config = config
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._lock = threading.Lock()
        self._gone = {}  # agent name -> the instance that said goodbye

    def fields(self, name, body, req):
        """What an agent says of itself, checked; ``name`` is its hostname if it says none."""
        return {"hostname": _text(body, "hostname") or name,
                "ip": _text(body, "ip") or req.remote_addr,
                "version": _text(body, "version"),
                "concurrency": _int_field(body, "concurrency", 1, 1, MAX_CAPACITY)}

    def record(self, name, info, instance, running):
        if self._said_goodbye(name, instance):
            return  # sent before its goodbye, come after it: that process is stopping
        with self._lock:
            self._gone.pop(name, None)
        # A new process of this agent: its old one's held requests reach nobody.
        restarted = self._dispatcher.release_others(name, instance)
        if restarted:
            log.info("Agent %s runs as a new process (instance %s)", name, instance)
        online = self._store.heartbeat(name, info)
        if self._said_goodbye(name, instance):
            # Its goodbye came while this heartbeat was being written (and the
            # write brought it back online): it stays offline.
            self._store.agent_stopped(name)
            return
        if online:
            log.info("Heartbeat received from %s (%s, %s): agent online", name, info["hostname"],
                     info["ip"])
        else:
            log.debug("Heartbeat received from %s", name)
        self._reconcile(name, running, restarted)

    def _said_goodbye(self, name, instance):
        with self._lock:
            return instance is not None and self._gone.get(name) == instance

    def asked(self, name):
        """``name`` asks for work: the first ask since it came online makes it
        one that takes work, and ALL tasks waiting for such an agent go to it."""
        if self._store.ask_for_work(name):
            log.info("Agent %s asks for work: ALL tasks go to it", name)
            self._dispatcher.wake(self._store.fan_out_due())

    def stopped(self, name, instance):
        """``name`` said goodbye: offline at once, its unfinished runs lost
        (tried again elsewhere), no more runs for it."""
        self._dispatcher.release(name, instance)
        if not self._dispatcher.is_latest(name, instance):
            return log.info("A former process of agent %s is stopping", name)
        if instance is not None:
            with self._lock:
                self._gone.pop(name, None)
                self._gone[name] = instance
                while len(self._gone) > MAX_GOODBYES:
                    del self._gone[next(iter(self._gone))]
        if not self._store.agent_stopped(name):
            return log.info("Goodbye from %s, an agent this server does not know", name)
        finished, requeued = self._store.lose_runs(name)
        log.info("Agent %s is stopping: offline (runs it left recorded as lost: tasks %s)",
                 name, ", ".join(finished + requeued) or "none")
        self._dispatcher.tasks_finished(finished)
        if requeued:
            hand_out(self._store, self._dispatcher, requeued)

    def _reconcile(self, name, running, restarted=False):
        """Runs the server thinks this agent has, and it says it has not, are lost.

        A run handed out less than two long-polls ago may still be on its way
        to the agent, so it is left alone, unless the agent is a new process:
        what was handed to its former one will never reach it.
        """
        if not isinstance(running, list) or len(running) > 100000 or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in running):
            return  # an agent that does not say: nothing to reconcile
        grace = 0 if restarted else 2 * self._config.LONG_POLL_TIMEOUT + 10
        finished, requeued = self._store.lose_runs(name, keep=set(running),
                                                   started_before=iso(self._clock() - grace))
        if finished or requeued:
            log.warning("Agent %s no longer has runs of tasks %s: recorded as lost", name,
                        ", ".join(finished + requeued))
            self._dispatcher.tasks_finished(finished)
            hand_out(self._store, self._dispatcher, requeued)


class HeartbeatResource:
    auth = AGENT

    def __init__(self, config, beats, registry, dispatcher):
        self._beats = beats
        self._registry = registry
        self._dispatcher = dispatcher
        self._interval = round(config.CLIENT_TIMEOUT / 3, 3)

    def on_post(self, req, resp):
        body = read_json(req)
        name = check_client(req, agent_name(body.get("client")))
        info = self._beats.fields(name, body, req)
        instance = _text(body, "instance", 64)
        if body.get("stopping") is True:  # its last word: hand it nothing more
            self._beats.stopped(name, instance)
        else:
            self._beats.record(name, info, instance, body.get("running"))
        # Three heartbeats a CLIENT_TIMEOUT: agents keep the smaller of this and their own.
        resp.media = {"status": "ok", "plugins": self._registry.digest(),
                      "heartbeat_interval": self._interval}


def _ids(value):
    """A list of run ids from an agent, or an empty set if it is not one."""
    if not isinstance(value, list) or len(value) > 100000:
        return set()
    return {i for i in value if isinstance(i, int) and not isinstance(i, bool)
            and 1 <= i <= MAX_ID}  # SQLite refuses to bind a larger one


def _text(body, name, limit=256):
    return printable_text(body, name, limit)


class AgentsResource:
    """``GET /agents``: the fleet by name, paged, filtered by status and name prefix."""

    def __init__(self, store):
        self._store = store

    def on_get(self, req, resp):
        validate.only_params(req, ("status", "prefix", "limit", "offset"))
        limit = validate.int_param(req, "limit", AGENTS_PAGE, 1, MAX_AGENTS_PAGE)
        offset = validate.int_param(req, "offset", 0, 0, validate.MAX_OFFSET)
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise bad_request("status must be one of %s" % ", ".join(STATUSES), "status")
        prefix = req.get_param("prefix")
        if prefix is not None and (len(prefix) > validate.MAX_NAME or not prefix.isprintable()):
            raise bad_request("prefix must be at most %d printable characters"
                              % validate.MAX_NAME, "prefix")
        agents, total = self._store.agents_page(status, prefix or None, limit, offset)
        resp.media = {"agents": agents, "total": total, "limit": limit, "offset": offset}


class WorkResource:
    """``POST /agent/work``: hand an agent runs, holding the request while there are none."""

    auth = AGENT

    def __init__(self, config, store, registry, dispatcher, beats, metrics=None,
                 clock=time.monotonic):
        self._config = config
        self._store = store
        self._registry = registry
        self._dispatcher = dispatcher
        self._beats = beats
        self._metrics = metrics
        self._clock = clock

    def on_post(self, req, resp):
        body = read_json(req)
        name = check_client(req, agent_name(body.get("client")))
        capacity = _int_field(body, "capacity", 1, 0, MAX_CAPACITY)
        # Agents may ask for any wait; this server holds them at most its own limit.
        wait = min(_number_field(body, "wait", self._config.LONG_POLL_TIMEOUT, 0, 3600),
                   self._config.LONG_POLL_TIMEOUT)
        instance = _text(body, "instance", 64)
        beat = body.get("heartbeat")
        if beat is not None and not isinstance(beat, dict):
            raise bad_request("heartbeat must be a JSON object", "heartbeat")
        # An agent polling past the waiter cap sends its heartbeat in the ask.
        info = self._beats.fields(name, beat, req) if beat else None
        if info:
            self._beats.record(name, info, instance, beat.get("running"))
        self._beats.asked(name)
        answer = self._answer(name, capacity, wait, instance, _ids(body.get("stopping_runs")),
                              body.get("running"))
        resp.media = dict(answer, plugins=self._registry.digest(), heartbeat=bool(info))

    def _answer(self, name, capacity, wait, instance, stopping, running):
        cancel = self._cancels(name, stopping)
        if wait <= 0 or cancel:  # waited: true tells the agent to ask again at once
            return {"runs": self._claim(name, capacity), "waited": bool(cancel), "cancel": cancel}
        held = _ids(running) if capacity == 0 else set()
        runs, cancel, waited, retry_after = self._wait(name, capacity, wait, instance,
                                                       stopping, held)
        answer = {"runs": runs, "waited": waited, "cancel": cancel}
        if retry_after is not None:  # past the waiter cap: when to ask again at the soonest
            answer["retry_after"] = retry_after
        return answer

    def _cancels(self, name, stopping):
        """Runs to stop that the agent is not stopping already."""
        if not self._dispatcher.may_cancel(name):
            return []
        # Cleared before the look, so a cancel committed after it sets it again.
        self._dispatcher.cancelled_none(name)
        in_store = self._store.cancels_for(name)
        if in_store:
            self._dispatcher.cancel([name], wake=False)
        return sorted(set(in_store) - stopping)

    def _wait(self, name, capacity, wait, instance, stopping, held):
        # Registered before the first look, so work handed out in between wakes us.
        waiter = self._dispatcher.register(name, instance, capacity)
        if waiter is None:  # over the cap: hand out what there is; the agent polls
            return self._claim(name, capacity), [], False, self._dispatcher.poll_delay(name)
        runs, cancel = [], []
        try:
            deadline = self._clock() + wait
            while not self._dispatcher.closed and not waiter.cancelled:
                waiter.event.clear()  # before looking: work from now on wakes us again
                if held:  # a full agent: each of its runs reported since it asked frees a slot
                    capacity, held = self._widen(waiter, capacity, held)
                runs = self._claim(name, capacity)
                cancel = self._cancels(name, stopping)
                remaining = deadline - self._clock()
                if runs or cancel or remaining <= 0 or not waiter.event.wait(remaining):
                    break
            return runs, cancel, True, None
        finally:
            self._dispatcher.unregister(waiter)

    def _widen(self, waiter, capacity, held):
        """Room made by results reported since a full agent asked.

        The agent freed the slot before it reported, so its held ask can take
        the next run at once instead of being answered empty and asked again:
        one request less per run when every slot is busy.
        """
        reported = self._store.reported(held)
        if reported:
            capacity += len(reported)
            self._dispatcher.widen(waiter, capacity)
        return capacity, held - reported

    def _claim(self, name, capacity):
        runs = self._store.claim_runs(name, capacity) if capacity else []
        now = self._store.clock()
        for run in runs:
            if self._metrics is not None and run.get("due_at"):
                self._metrics.dispatched(now - parse_iso(run["due_at"]))
            plugin = self._registry.get(run["plugin"])
            run["plugin_sha256"] = plugin.sha256 if plugin else None
            run["timeout"] = run["timeout"] or self._config.RUN_TIMEOUT or None
            log.info("Task assignment: task %s run %d -> %s (%s.%s)", run["task_id"], run["id"],
                     name, run["plugin"], run["action"])
        return runs


class ResultsResource:
    """``POST /agent/results``: record finished runs; repeats are acknowledged once."""

    auth = AGENT

    def __init__(self, store, dispatcher):
        self._store = store
        self._dispatcher = dispatcher

    def on_post(self, req, resp):
        # A result nested too deep fails its run (_result), not the batch.
        body = read_json(req, max_bytes=RESULTS_MAX_BODY, max_depth=None)
        name = check_client(req, agent_name(body.get("client")))
        results = body.get("results")
        if not isinstance(results, list) or not 0 < len(results) <= MAX_RESULTS:
            raise bad_request("results must be a list of 1 to %d results" % MAX_RESULTS, "results")
        clean = [_result(r) for r in results]
        acked, rejected, finished, ready = self._store.finish_runs(name, clean)
        by_id = {r["id"]: r for r in clean}
        for run_id in acked:
            log.info("Adding execution result: run %d from %s: %s", run_id, name,
                     by_id[run_id]["status"])
        for run_id, reason in rejected:
            log.warning("Result for run %d from %s refused: %s", run_id, name, reason)
        self._dispatcher.tasks_finished(finished)
        self._dispatcher.wake_full(name)  # it has room now: a full agent's ask should ask again
        if ready:  # retries due now, runs queued behind the ones that ended
            hand_out(self._store, self._dispatcher, ready)
        resp.media = {"acked": acked,
                      "rejected": [{"id": i, "reason": why} for i, why in rejected]}
        if rejected and not acked and all(why.startswith("fenced") for _, why in rejected):
            # The agent holds none of these runs any more (see RunQueries._finish_one).
            resp.status = falcon.HTTP_409
            resp.media = dict(resp.media, error={
                "message": "no result recorded: " + rejected[0][1], "field": "results"})


def _result_problem(result):
    """Why a reported result cannot be stored as it is, or None."""
    deep = "the result nests arrays and objects more than %d levels deep" % nesting.MAX_DEPTH
    try:
        text = dumps(result)
    except RecursionError:
        return deep
    if nesting.nests_deeper(text):
        return deep
    if len(text) > MAX_RESULT:
        return "the result is larger than %d bytes of JSON" % MAX_RESULT
    return None


def _result(item):
    """A reported result, mended where it can be so the run is settled, not lost.

    Only an item without a usable run id refuses the batch (400): it is a
    bug in the agent.  Anything else wrong becomes a failed run that says why.
    """
    if not isinstance(item, dict):
        raise bad_request("each result must be a JSON object", "results")
    run_id = item.get("id")
    if not isinstance(run_id, int) or isinstance(run_id, bool) or not 1 <= run_id <= MAX_ID:
        raise bad_request("result id must be a run id", "results")
    status, result = item.get("status"), item.get("result")
    problem = None
    if status not in RunStatus.REPORTED:
        problem = "status must be one of %s, not %r" % (", ".join(RunStatus.REPORTED), status)
    else:
        problem = _result_problem(result)
    if problem:
        status, result = RunStatus.FAILED, run_error("BadReport", "the agent's report: " + problem)
    output = item.get("output")
    if not isinstance(output, str):
        output = None
    elif len(output) > MAX_OUTPUT:
        output = output[:MAX_OUTPUT] + "\n[... output truncated by the server]"
    lease = item.get("lease")
    if not isinstance(lease, str) or len(lease) > 64:
        lease = None
    duration = item.get("duration")
    if (not isinstance(duration, (int, float)) or isinstance(duration, bool)
            or not 0 <= duration < 10 ** 9):
        duration = None
    return {"id": run_id, "status": status, "result": result, "output": output,
            "duration": duration, "lease": lease}
