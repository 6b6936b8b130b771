"""The agent: heartbeats, waiting for work, running it, reporting results.

Four loops, each on its own thread (and connection), each built from one step
method (``heartbeat``, ``poll``, ``report``, ``watch_timeouts``) tests can call.
"""
import logging
import os
import socket
import sys
import threading
import time

from octopus import __version__
from octopus.agent.client import (Backoff, ServerClient, ServerError, Unreachable, local_address,
                                  log_failure as _log_failure)
from octopus.agent.identity import Identity
from octopus.agent.outbox import Outbox
from octopus.agent.pace import Pace
from octopus.agent.plugins import PluginCache, PluginError
from octopus.agent.reporting import Reporting, seconds_left
from octopus.agent.runner import STOP_WAIT, Runner
from octopus.agent.sessions import KILL_GRACE
from octopus.constants import run_error

log = logging.getLogger("octopus.agent")

WATCH_TICK = 0.1        # seconds: how late a timeout may be noticed
MAX_STOPPING = 10000    # run ids remembered as being stopped
STOP_LIMIT = 7.0        # seconds stop() takes at most, all steps together (cli.py waits 8)
GOODBYE_TIME = 1.5      # of those, kept for the goodbye, whatever the steps before took


def agent_name(config):
    return config.CLIENT_ID or socket.gethostname()


class Agent(Reporting):
    def __init__(self, config, token, on_exit=None, run_as=None):
        """``run_as``: the user workers switch to (isolation.workers_user), or None."""
        self.config = config
        self.name = agent_name(config)
        home = config.path("agent")
        # The shared token until the agent has enrolled (see identity.py).
        self._identity = Identity(home, self.name, token, self._revoked)
        self._on_exit = on_exit  # called when the agent stops itself (its credential refused)
        self.exit_code = 0
        self._plugins = PluginCache(os.path.join(home, "plugins"), self._client)
        self._runner = Runner(os.path.join(home, "tmp"), self._on_done,
                              output_limit=config.MAX_OUTPUT,
                              runs_per_worker=config.RUNS_PER_WORKER,
                              run_as=run_as)
        self._outbox = Outbox(os.path.join(home, "outbox"))
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()  # guards the run bookkeeping below
        self._running = {}    # run id -> the lease it was handed out with
        self._deadlines = {}  # run id -> (monotonic deadline, timeout) of runs that have one
        self._timed_out = set()
        self._cancelled = set()    # runs we stopped on a cancel: reported as cancelled
        self._stopping = {}        # run ids the server asked us to stop, until settled
        self._pending = self._outbox.load()  # finished results not yet acknowledged
        self._reporting = threading.Lock()  # one report in flight at a time
        self._direct = self._client(timeout=5.0)
        self._report_later = threading.Event()  # results the quick path could not send
        self._digest = None
        self._pace = Pace(config.HEARTBEAT_INTERVAL, config.TASK_CHECK_INTERVAL)
        self._threads = []
        self._instance = os.urandom(16).hex()  # tells the server this process from a former one
        self._local_api = None  # when LOCAL_API_PORT is set

    def _client(self, timeout=30.0):
        return ServerClient(self.config.SERVER_URL, self._identity, timeout)

    # -- steps --------------------------------------------------------------

    def heartbeat(self, client):
        self._identity.enroll(client)  # once, before the server hears of this agent
        sent = time.monotonic()
        reply = client.request("POST", "/heartbeat", dict(self._beat(), client=self.name,
                                                          instance=self._instance))
        self._pace.beat_taken(sent)
        self._pace.server_asks(reply.get("heartbeat_interval"))
        self._sync_plugins(reply)
        return reply

    def _beat(self):
        return {"hostname": socket.gethostname(), "ip": local_address(self.config.SERVER_URL),
                "version": __version__, "concurrency": self.config.CONCURRENCY,
                "python": "%d.%d.%d" % sys.version_info[:3], "running": self._held()}

    def _sync_plugins(self, reply):
        if reply.get("plugins") is not None and reply["plugins"] != self._digest:
            self._digest = self._plugins.sync()

    def poll(self, client, wait):
        """Ask for as many runs as there are free slots; start them."""
        # Asked even when full (capacity 0): the held request is also how the
        # server says "stop this run".
        with self._lock:
            free = max(0, self.config.CONCURRENCY - len(self._running))
            stopping = sorted(self._stopping)
            running = sorted(self._running) if not free else []
        # A full agent says which runs fill it: if one is reported before the
        # server holds this ask, the server answers at once (see WorkResource).
        ask = {"client": self.name, "capacity": free, "wait": wait, "instance": self._instance,
               "stopping_runs": stopping, "running": running}
        sent = time.monotonic()
        # Past the server's waiter cap this agent asks every TASK_CHECK_INTERVAL
        # (or as the server paces it): the ask carries the heartbeat due before
        # the next one, so the fleet sends one request per interval, not two.
        if self._pace.carry(sent):
            ask["heartbeat"] = self._beat()
        reply = client.request("POST", "/agent/work", ask, timeout=wait + 15)
        if reply.get("heartbeat"):
            self._pace.beat_taken(sent)
        if reply["waited"]:
            self._pace.held()
        self._sync_plugins(reply)
        for run_id in reply.get("cancel", ()):
            self._cancel(run_id)
        for run in reply["runs"]:
            self._start(run)
        return reply

    def _cancel(self, run_id, held_only=False):
        """Stop a run, reported as cancelled; True if this agent holds it."""
        with self._lock:
            if held_only and run_id not in self._running:
                return False
            # Listed as stopping until settled, held here or not, so the server
            # does not ask again (it answers at once while there is a cancel).
            self._stopping[run_id] = None
            while len(self._stopping) > MAX_STOPPING:
                del self._stopping[next(iter(self._stopping))]
            if run_id not in self._running or run_id in self._cancelled:
                return run_id in self._running
            self._cancelled.add(run_id)
        log.info("Run %d cancelled: stopping it", run_id)
        self._runner.kill(run_id, KILL_GRACE)
        return True

    def cancel_run(self, run_id):
        """The local API's cancel: as the server's, for a run this agent holds."""
        return self._cancel(run_id, held_only=True)

    # -- runs ---------------------------------------------------------------

    def _start(self, run):
        log.info("Task assignment received: task %s run %d (%s.%s)", run["task_id"], run["id"],
                 run["plugin"], run["action"])
        with self._lock:
            self._running[run["id"]] = run.get("lease")
        if self._local_api is not None:
            self._local_api.started(run)
        if self._stop.is_set():  # handed out as we stop: say so rather than drop it
            self._on_done(_failed(run["id"], "AgentStopped", "the agent was stopping"))
            return
        try:
            path = self._plugins.ensure(run["plugin"], run.get("plugin_sha256"))
            if run.get("timeout"):
                with self._lock:
                    self._deadlines[run["id"]] = (time.monotonic() + run["timeout"],
                                                  run["timeout"])
            self._runner.submit(run["id"], path, run["action"], run["args"], run["kwargs"],
                                task_id=run.get("task_id"),
                                keep_processes=bool(run.get("keep_processes")))
        except Exception as e:  # the plugin could not be had (or stored): this run fails
            if not isinstance(e, (PluginError, ServerError, Unreachable)):
                log.exception("Run %d could not be started", run["id"])
            self._on_done(_failed(run["id"], "PluginUnavailable", str(e)))

    def _on_done(self, msg):
        result = {k: msg.get(k) for k in ("id", "status", "result", "output", "duration")}
        with self._lock:
            _, timeout = self._deadlines.pop(msg["id"], (None, None))
            stopped = msg["status"] != "success"  # a run that got to succeed keeps its result
            cancelled = msg["id"] in self._cancelled
            timed_out = msg["id"] in self._timed_out
            self._cancelled.discard(msg["id"])
            self._timed_out.discard(msg["id"])
            if cancelled and stopped:
                result["status"] = "cancelled"
                result["result"] = run_error("Cancelled", "cancelled by an operator")
            elif timed_out and stopped:
                result["status"] = "timeout"
                result["result"] = run_error("Timeout", "the run took longer than its timeout "
                                             "of %gs and was stopped" % timeout)
            result["lease"] = self._running.get(msg["id"])
        # On disk before anything can lose it, and outside the lock (a file
        # write); the run stays listed as running (held) until it is pending.
        self._outbox.add(result)
        with self._lock:
            self._running.pop(msg["id"], None)
            self._pending.append(result)
        if self._local_api is not None:
            self._local_api.finished(result)
        log.info("Run %d finished: %s in %.3fs", msg["id"], msg["status"], msg["duration"] or 0)
        # Report from this thread when no report is in flight: one thread hop
        # less on every run.  Anything else (and everything while reports are
        # failing: this thread must keep reading the launcher) is left to the
        # report loop.
        # While stopping (these are the launcher's last words), stop() reports
        # within its deadline: a request from here would hold it up.
        if (self._stop.is_set() or self._report_later.is_set()
                or not self._reporting.acquire(blocking=False)):
            self._report_later.set()
            return
        try:
            self.report(self._direct)
        except Exception as e:  # whatever it was, the report loop retries
            _log_failure("Reporting results", e)
            self._report_later.set()
        finally:
            self._reporting.release()

    def _held(self):
        """Run ids this agent still answers for: running, or finished and not yet acked."""
        with self._lock:
            return sorted(set(self._running) | {r["id"] for r in self._pending})

    def held_runs(self):
        """For the local API: ``(ids running, ids being stopped, ids not yet reported)``."""
        with self._lock:
            return (set(self._running), self._cancelled | self._timed_out | set(self._stopping),
                    {r["id"] for r in self._pending})

    # -- loops --------------------------------------------------------------

    def _heartbeat_loop(self):
        client, backoff = self._client(), Backoff()
        delay = 0
        while not self._stop.wait(delay):
            due = self._pace.beat_due(time.monotonic())
            if due > 0 and self._connected.is_set():  # an ask for work carried it
                delay = due
                continue
            try:
                self.heartbeat(client)
                if not self._connected.is_set():
                    log.info("Agent %s connected to %s", self.name, self.config.SERVER_URL)
                    self._connected.set()
                backoff.reset()
                delay = self._pace.interval  # the server may have asked for a shorter one
            except Exception as e:
                interval = self._pace.interval
                # Until the first heartbeat lands, retry sooner than the interval.
                delay = interval if self._connected.is_set() else min(interval, backoff.next_delay())
                _log_failure("Heartbeat", e, delay)

    def watch_timeouts(self, now):
        """Stop runs past their deadline (SIGTERM, SIGKILL after a grace)."""
        with self._lock:
            expired = [i for i, (deadline, _) in self._deadlines.items()
                       if now >= deadline and i not in self._timed_out]
            self._timed_out.update(expired)
        for run_id in expired:
            log.warning("Run %d passed its timeout: stopping it", run_id)
            self._runner.kill(run_id, KILL_GRACE)
        return expired

    def _watch_loop(self):
        while not self._stop.wait(WATCH_TICK):
            try:
                self.watch_timeouts(time.monotonic())
            except Exception as e:
                _log_failure("Watching timeouts", e)

    def _poll_loop(self):
        client, backoff = self._client(), Backoff()
        wait = 25.0
        # The server learns of this agent from its heartbeat: ask for work after it.
        while not self._connected.wait(0.5):
            if self._stop.is_set():
                return
        while not self._stop.is_set():
            try:
                reply = self.poll(client, wait)
                backoff.reset()
            except Exception as e:
                delay = backoff.next_delay()
                _log_failure("Asking for work", e, delay)
                self._stop.wait(delay)
                continue
            if reply is not None and not reply["runs"] and not reply["waited"]:
                self._stop.wait(self._pace.capped(reply.get("retry_after")))  # at the waiter cap

    def _revoked(self):  # the server refused this agent's credential: stop, exit non-zero
        self.exit_code = 3
        self._stop.set()
        if self._on_exit is not None:
            self._on_exit()

    def start(self):
        os.makedirs(self.config.path("agent"), exist_ok=True)
        if self.config.LOCAL_API_PORT:  # first: a port in use stops start-up before anything runs
            from octopus.agent import localapi  # http.server: imported only when it is on

            self._local_api = localapi.start(self, self._client)
        if self._pending:
            log.info("Outbox: %d result(s) from before the restart to report", len(self._pending))
            self._report_later.set()
        self._runner.start()
        for target in (self._heartbeat_loop, self._poll_loop, self._report_loop,
                       self._watch_loop):
            thread = threading.Thread(target=target, name="agent" + target.__name__, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout=STOP_LIMIT):
        """Stop asking for work, stop running runs, send what can be sent, say goodbye.

        Bounded by ``timeout`` in all: the runs get at most STOP_WAIT of it,
        reports what is left but GOODBYE_TIME, and the goodbye (which makes the
        server take this agent offline at once) the rest; results not sent by
        then stay in the outbox for the next start."""
        deadline = time.monotonic() + timeout
        goodbye_at = deadline - min(GOODBYE_TIME, timeout / 2)
        self._stop.set()
        if self._local_api is not None:
            self._local_api.close()
        self._runner.close(seconds_left(goodbye_at, STOP_WAIT))
        if self._identity.revoked:  # the server would refuse anything more
            return log.info("Agent %s stopped", self.name)
        self._report_until(goodbye_at)
        client = self._client(timeout=max(0.1, deadline - time.monotonic()))
        try:  # so the server stops handing this process work at once
            client.request("POST", "/heartbeat", {"client": self.name, "instance": self._instance,
                                                  "stopping": True})
        except Exception as e:
            _log_failure("Saying goodbye", e)
        client.close()
        log.info("Agent %s stopped", self.name)

def _failed(run_id, kind, message):
    return {"id": run_id, "status": "failed", "output": "", "duration": 0.0,
            "result": run_error(kind, message)}
