"""W4: many agents, simulated by one asyncio client over raw HTTP/1.1 keep-alive.

(a) N agents each holding POST /agent/work (capacity 1, wait 25): wake-up
    latency of a task made for one of them, and /health latency meanwhile.
(b) N agents heartbeating every 10 s and asking for work as the real agent
    does (held long-poll while the server has room; past MAX_WAITERS the
    answer is immediate with waited=false, and the agent asks again every
    TASK_CHECK_INTERVAL = 5 s or the server's longer retry_after, the
    heartbeat due before its next ask riding on the ask): server CPU, errors,
    heartbeat p99 (separate and carried).
"""
import asyncio
import json
import random
import resource
import tempfile
import time
import uuid

from bench_common import Cluster, CpuMeter, emit, rss_mb, summary
from octopus.agent.pace import Pace
from octopus.harness import ADMIN_TOKEN, AGENT_TOKEN

NOOP = {"plugin": "echo", "action": "echo", "args": [], "kwargs": {}}
_timeout = getattr(asyncio, "timeout", None)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


class Conn:
    """One keep-alive HTTP/1.1 connection; reopened after a close or an error."""

    def __init__(self, port, token):
        self.port, self.token = port, token
        self.r = self.w = None
        self.lock = asyncio.Lock()
        self.sent = None

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None

    async def request(self, method, path, body=None, timeout=30.0):
        async with self.lock:
            # When the request went out, after any wait for the connection:
            # the real agent's threads each have their own.
            self.sent = time.perf_counter()
            try:
                if _timeout is not None:
                    async with _timeout(timeout):
                        return await self._request(method, path, body)
                return await asyncio.wait_for(self._request(method, path, body), timeout)
            except BaseException:
                self.close()
                raise

    async def _request(self, method, path, body):
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        self.w.write(("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % (method, path, self.token, len(data))).encode() + data)
        head = await self.r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            payload = b""
            while True:
                size = int((await self.r.readline()).split(b";")[0], 16)
                chunk = await self.r.readexactly(size + 2)
                if size == 0:
                    break
                payload += chunk[:-2]
        else:
            payload = await self.r.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, (json.loads(payload) if payload else None)


class SimAgent:
    def __init__(self, port, name, stats):
        self.name, self.stats = name, stats
        self.instance = uuid.uuid4().hex
        self.conn = Conn(port, AGENT_TOKEN)
        self._port, self._hb = port, None
        self.holding_since = None
        self.wake = None  # a future set when a run arrives
        self.pace = None  # the real agent's rules (octopus.agent.pace), set by _agent_main

    def hb_conn(self):
        """The poll connection when it is free, else a second one (a held long-poll)."""
        if not self.conn.lock.locked():
            return self.conn
        if self._hb is None:
            self._hb = Conn(self._port, AGENT_TOKEN)
        return self._hb

    def close(self):
        self.conn.close()
        if self._hb:
            self._hb.close()

    async def heartbeat(self):
        conn = self.hb_conn()
        try:
            status, _ = await conn.request("POST", "/heartbeat", {
                "client": self.name, "hostname": self.name, "version": "sim", "concurrency": 1,
                "running": [], "instance": self.instance})
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
            self.stats.error("heartbeat " + type(e).__name__)
            return
        t0 = conn.sent  # read before yielding: no other request has taken it since
        if status // 100 != 2:
            self.stats.error("heartbeat %d" % status)
        else:
            self.pace.beat_taken(t0)
            ms = (time.perf_counter() - t0) * 1000
            self.stats.hb.append(ms)
            self.stats.hb_alone.append((ms, conn is not self.conn))

    async def poll_once(self):
        self.holding_since = time.perf_counter()
        t0 = self.holding_since
        ask = {"client": self.name, "capacity": 1, "wait": 25, "instance": self.instance,
               "stopping_runs": []}
        # As the real agent: the heartbeat due before the next ask rides on this one.
        if self.pace.carry(t0):
            ask["heartbeat"] = {"hostname": self.name, "version": "sim", "concurrency": 1,
                                "running": []}
        try:
            status, body = await self.conn.request("POST", "/agent/work", ask, timeout=45)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
            self.holding_since = None
            self.stats.error("work " + type(e).__name__)
            return 1.0
        finally:
            self.holding_since = None
        now = time.perf_counter()
        if status != 200:
            self.stats.error("work %d" % status)
            return 1.0
        if body.get("heartbeat"):
            self.pace.beat_taken(t0)
            if not body["waited"]:  # a held ask's time is its wait, not the heartbeat's
                self.stats.hb.append((now - t0) * 1000)
                self.stats.carried += 1
        if body["runs"]:
            if self.wake is not None and not self.wake.done():
                self.wake.set_result(now)
            results = [{"id": r["id"], "status": "success", "result": None, "output": "",
                        "duration": 0.0, "lease": r.get("lease")} for r in body["runs"]]
            try:
                status, _ = await self.conn.request("POST", "/agent/results",
                                                    {"client": self.name, "results": results})
                if status // 100 != 2:
                    self.stats.error("results %d" % status)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                self.stats.error("results " + type(e).__name__)
            return 0
        if not body["waited"]:  # past the cap: as the agent, at the pace the server asks
            self.stats.immediate.append((now - t0) * 1000)
            return self.pace.capped(body.get("retry_after"))
        self.pace.held()
        self.stats.held += 1
        return 0


class Stats:
    def __init__(self):
        self.hb, self.immediate, self.held, self.errors, self.kinds = [], [], 0, 0, {}
        self.carried = 0  # heartbeats that rode on an ask for work
        self.hb_alone = []  # (ms, on a second connection) of heartbeats sent on their own

    def error(self, kind):
        self.errors += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


async def _agent_main(agent, stop, start_delay, hb_interval, check_interval):
    agent.pace = Pace(hb_interval, check_interval)
    await asyncio.sleep(start_delay)
    await agent.heartbeat()  # as the real agent: heartbeat first, then ask for work

    async def beats():
        while not stop.is_set():
            due = agent.pace.beat_due(time.perf_counter())
            if due <= 0:  # no ask carried it
                await agent.heartbeat()
                continue
            try:
                await asyncio.wait_for(stop.wait(), due)
            except asyncio.TimeoutError:
                pass

    beat = asyncio.ensure_future(beats())
    try:
        while not stop.is_set():
            pause = await agent.poll_once()
            if pause:
                try:
                    await asyncio.wait_for(stop.wait(), pause)
                except asyncio.TimeoutError:
                    pass
    finally:
        beat.cancel()
        agent.close()


async def _health_sampler(port, stop, samples):
    conn = Conn(port, ADMIN_TOKEN)
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            status, body = await conn.request("GET", "/health", timeout=10)
            samples.append((time.perf_counter() - t0) * 1000)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            samples.append(10000.0)
        await asyncio.sleep(0.02)
    conn.close()


async def _w4a(port, pid, levels, n_samples, quick):
    stats, stop, agents, tasks, results = Stats(), asyncio.Event(), [], [], []
    admin = Conn(port, ADMIN_TOKEN)
    for n in levels:
        ramp0 = time.perf_counter()
        for i in range(len(agents), n):
            agent = SimAgent(port, "sim-%05d" % i, stats)
            agents.append(agent)
            tasks.append(asyncio.ensure_future(_agent_main(agent, stop, 0, 10, 5)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, health = await admin.request("GET", "/health")
            if health["agents_waiting"] >= n:
                break
            await asyncio.sleep(0.2)
        ramp = time.perf_counter() - ramp0
        await asyncio.sleep(1.0)
        hstop, hsamples, wakes = asyncio.Event(), [], []
        sampler = asyncio.ensure_future(_health_sampler(port, hstop, hsamples))
        cpu = CpuMeter(pid).start()
        errors0 = stats.errors
        for _ in range(n_samples):
            holding = [a for a in agents if a.holding_since and
                       time.perf_counter() - a.holding_since > 0.05]
            if not holding:
                await asyncio.sleep(0.05)
                continue
            agent = random.choice(holding)
            agent.wake = asyncio.get_event_loop().create_future()
            t0 = time.perf_counter()
            status, _ = await admin.request("POST", "/tasks", dict(NOOP, owner=agent.name))
            assert status == 201
            try:
                t1 = await asyncio.wait_for(agent.wake, 10)
                wakes.append((t1 - t0) * 1000)
            except asyncio.TimeoutError:
                wakes.append(10000.0)
            agent.wake = None
            await asyncio.sleep(0.02)
        cores = cpu.stop()
        hstop.set()
        await sampler
        row = dict({"n": n, "waiting": health["agents_waiting"], "ramp_s": round(ramp, 1)},
                   **summary(wakes, "wake_", points=(50, 99)))
        row.update(summary(hsamples, "health_", points=(50, 99)))
        row.update(server_cpu_cores=cores, server_rss_mb=rss_mb(pid),
                   errors=stats.errors - errors0)
        row["meets"] = (row.get("wake_p99_ms", 1e9) <= 100 and
                        row.get("health_p99_ms", 1e9) <= 50 and row["waiting"] >= n)
        results.append(row)
        print("  W4a level %s" % json.dumps(row), flush=True)
        if not row["meets"] and not quick:
            break
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    admin.close()
    return results, stats


def w4a(opts):
    levels = [50, 100] if opts.quick else [250, 500, 1000, 2000, 3000]
    max_waiters = max(levels) + 50
    nofile = raise_nofile()
    with tempfile.TemporaryDirectory(prefix="bench-w4a-") as root:
        c = Cluster(root, pyz=opts.pyz, env={"OCTOPUS_MAX_WAITERS": str(max_waiters)})
        try:
            c.start_server()
            rows, stats = asyncio.run(_w4a(c.port, c.server.pid, levels,
                                           20 if opts.quick else 100, opts.quick))
        finally:
            c.stop()
    good = [r["n"] for r in rows if r["meets"]]
    return [emit({"workload": "W4a", "max_waiters_setting": max_waiters, "threads_setting": 16,
                  "waitress_threads": 16 + max_waiters, "nofile": nofile,
                  "largest_n_meeting": max(good) if good else 0, "levels": rows,
                  "error_kinds": stats.kinds})]


async def _w4b(port, pid, n, ramp_s, measure_s):
    stats, stop = Stats(), asyncio.Event()
    agents = [SimAgent(port, "sim-%05d" % i, stats) for i in range(n)]
    tasks = [asyncio.ensure_future(_agent_main(a, stop, ramp_s * i / n, 10, 5))
             for i, a in enumerate(agents)]
    health_stop, hsamples = asyncio.Event(), []
    sampler = asyncio.ensure_future(_health_sampler(port, health_stop, hsamples))
    await asyncio.sleep(ramp_s + 5)
    ramp_errors, hb0, imm0, held0 = stats.errors, len(stats.hb), len(stats.immediate), stats.held
    carried0, alone0 = stats.carried, len(stats.hb_alone)
    cpu = CpuMeter(pid).start()
    client0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    await asyncio.sleep(measure_s)
    cores = cpu.stop()
    client1 = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = time.monotonic() - t0
    health_stop.set()
    await sampler
    row = {"agents": n, "ramp_s": ramp_s, "measured_s": measure_s, "server_cpu_cores": cores,
           "client_cpu_cores": round((client1.ru_utime + client1.ru_stime - client0.ru_utime -
                                      client0.ru_stime) / elapsed, 2),
           "errors": stats.errors - ramp_errors, "ramp_errors": ramp_errors,
           "error_kinds": dict(stats.kinds), "server_rss_mb": rss_mb(pid),
           "heartbeats_per_s": round((len(stats.hb) - hb0) / elapsed),
           "heartbeats_carried_by_asks_per_s": round((stats.carried - carried0) / elapsed),
           "polls_answered_at_once_per_s": round((len(stats.immediate) - imm0) / elapsed),
           "held_polls_ended": stats.held - held0}
    row.update(summary(stats.hb[hb0:], "heartbeat_", points=(50, 99)))
    alone = stats.hb_alone[alone0:]
    row.update(summary([ms for ms, second in alone if not second], "heartbeat_alone_",
                       points=(50, 99)))
    row.update(summary([ms for ms, second in alone if second],
                       "heartbeat_beside_a_held_ask_", points=(50, 99)))
    row.update(summary(stats.immediate[imm0:], "capped_poll_", points=(50, 99)))
    row.update(summary(hsamples, "health_", points=(50, 99)))
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return row


def w4b(opts):
    nofile = raise_nofile()
    wanted = opts.w4b_agents or (300 if opts.quick else 10000)
    levels = [wanted] if opts.quick else [wanted, 900]
    rows = []
    for n in levels:
        if n + 300 > nofile:
            rows.append({"agents": n, "skipped": "RLIMIT_NOFILE %d too low" % nofile})
            continue
        with tempfile.TemporaryDirectory(prefix="bench-w4b-") as root:
            c = Cluster(root, pyz=opts.pyz)
            try:
                c.start_server()
                row = asyncio.run(_w4b(c.port, c.server.pid, n, 10 if n > 1000 else 5,
                                       12 if opts.quick else (60 if n == wanted else 30)))
            finally:
                c.stop()
        print("  W4b level %s" % json.dumps(row), flush=True)
        rows.append(row)
        if row["errors"] == 0 and row["ramp_errors"] == 0:
            break
    ok = [r for r in rows if r.get("errors") == 0 and r.get("ramp_errors") == 0]
    best = max(ok, key=lambda r: r["agents"]) if ok else rows[0]
    out = dict({"workload": "W4b"}, **best)
    out.update(max_waiters_setting=256, nofile=nofile,
               largest_n_without_errors=best["agents"] if ok else 0,
               tried=[{k: r.get(k) for k in ("agents", "errors", "ramp_errors", "error_kinds",
                                             "server_cpu_cores", "heartbeat_p99_ms")}
                      for r in rows])
    return [emit(out)]
