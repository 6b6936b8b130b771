"""Workloads with real agent processes: W1 latency, W2 throughput, W3 fan-out, memory."""
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request

from bench_common import (Cluster, CpuMeter, emit, hwm_mb, pss_mb, rss_mb, summary, wait_all_final,
                          wait_for)
from octopus.harness import free_port

NOOP = {"plugin": "echo", "action": "echo", "args": [], "kwargs": {}}


def _cluster(root, opts, env=None):
    return Cluster(root, pyz=opts.pyz, env=env)


def w1(opts):
    """300 sequential no-op tasks, POST /tasks to result recorded, one agent."""
    n, warmup = (30, 5) if opts.quick else (300, 20)
    with tempfile.TemporaryDirectory(prefix="bench-w1-") as root:
        c = _cluster(root, opts)
        try:
            c.start_server()
            time.sleep(0.5)
            server_idle = rss_mb(c.server.pid)
            c.start_agent("w1")  # default CONCURRENCY (CPU count)
            api = c.api()
            samples = []
            for i in range(warmup + n):
                t0 = time.perf_counter()
                status, task = api.call("POST", "/tasks", dict(NOOP, owner="w1"))
                assert status == 201, task
                _, task = api.call("GET", "/tasks/%s?wait=10" % task["id"])
                if i >= warmup:
                    samples.append((time.perf_counter() - t0) * 1000)
                assert task["status"] == "success", (i, task["status"], task["executions"])
            time.sleep(1.0)
            agent_idle = rss_mb(c.agents["w1"].pid)
            agent_pss = pss_mb(c.agents["w1"].pid)
            server_after = rss_mb(c.server.pid)
            api.close()
        finally:
            c.stop()
    w1_result = emit(dict({"workload": "W1", "tasks": n, "agents": 1, "owner": "w1 (the agent)"},
                          **summary(samples)))
    return [w1_result], {"server_idle_rss_mb": server_idle, "idle_agent_rss_mb": agent_idle,
                         "idle_agent_pss_mb": agent_pss,
                         "server_rss_after_w1_mb": server_after}


def _submit(api, n, bulk):
    t0 = time.perf_counter()
    if bulk:
        for start in range(0, n, 1000):
            batch = [NOOP] * min(1000, n - start)
            status, body = api.call("POST", "/tasks", batch)
            assert status == 201, body
    else:
        for _ in range(n):
            status, body = api.call("POST", "/tasks", NOOP)
            assert status == 201, body
    return t0, time.perf_counter()


def _w2_round(opts, label, agents, concurrency, n, bulk):
    with tempfile.TemporaryDirectory(prefix="bench-w2-") as root:
        c = _cluster(root, opts)
        peak, stop = [0.0], threading.Event()
        try:
            c.start_server()
            for i in range(agents):
                c.start_agent("w2-%d" % i, env={"OCTOPUS_CONCURRENCY": str(concurrency)},
                              wait=False)
            for i in range(agents):
                c.wait_online("w2-%d" % i)
            pid = c.server.pid

            def sample():
                while not stop.wait(0.2):
                    peak[0] = max(peak[0], hwm_mb(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            api, watch = c.api(), c.api()
            cpu = CpuMeter(pid).start()
            t0, submitted = _submit(api, n, bulk)
            done, health, stalled = wait_all_final(watch, n, timeout=60 if opts.quick else 300)
            cores = cpu.stop()
            stop.set()
            sampler.join()
            peak[0] = max(peak[0], hwm_mb(pid))
            api.close()
            watch.close()
        finally:
            stop.set()
            c.stop()
    wall = done - t0
    if stalled:  # tasks left Created while agents wait: report, do not count as a rate
        final = sum(health["tasks"].values()) - health["pending"] - health["active"]
        return emit({"workload": label, "tasks": n, "agents": agents,
                     "concurrency_per_agent": concurrency, "stalled": True,
                     "final_before_stall": final, "tasks_per_s": 0,
                     "note": "no task finished for 15 s with %d Created and %d agents waiting"
                             % (health["pending"], health["agents_waiting"]),
                     "submit_per_s": round(n / (submitted - t0)),
                     "server_peak_rss_mb": peak[0], "final": health["tasks"]})
    return emit({
        "workload": label, "tasks": n, "agents": agents, "concurrency_per_agent": concurrency,
        "submit": "lists of 1000" if bulk else "one request each, one keep-alive client",
        "wall_s": round(wall, 2), "tasks_per_s": round(n / wall),
        "submit_per_s": round(n / (submitted - t0)), "server_cpu_cores": cores,
        "server_peak_rss_mb": peak[0], "final": health["tasks"]})


def w2(opts):
    n = 500 if opts.quick else 5000
    out = [_w2_round(opts, "W2", 4, 1, n, bulk=False),
           _w2_round(opts, "W2-bulk", 4, 1, n, bulk=True)]
    out.append(_w2_round(opts, "W2-1x4", 1, 4, n, bulk=False))
    return out


def w3(opts):
    """One ALL task to 20 agents, 10 repeats; RSS of the agents."""
    agents, repeats = (4, 3) if opts.quick else (20, 10)
    env = {"OCTOPUS_CONCURRENCY": "1", "OCTOPUS_HEARTBEAT_INTERVAL": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-w3-") as root:
        c = _cluster(root, opts)
        try:
            c.start_server()
            names = ["w3-%02d" % i for i in range(agents)]
            for name in names:
                c.start_agent(name, env=env, wait=False)
            api = c.api()
            wait_for(lambda: sum(a["status"] == "online" for a in
                                 api.call("GET", "/agents")[1]["agents"]) == agents,
                     60, what="%d agents online" % agents)
            samples = []
            for i in range(repeats + 1):
                # Every agent back in its long-poll before the next fan-out.
                wait_for(lambda: api.call("GET", "/health")[1]["agents_waiting"] >= agents,
                         20, what="agents waiting")
                t0 = time.perf_counter()
                status, task = api.call("POST", "/tasks", dict(NOOP, owner="ALL"))
                assert status == 201, task
                deadline = time.monotonic() + 60
                while task["status"] not in ("Done", "success", "failed", "cancelled"):
                    if time.monotonic() > deadline:
                        raise TimeoutError("ALL task not done in 60 s: %s" % task["status"])
                    _, task = api.call("GET", "/tasks/%s?wait=10&executions=0" % task["id"])
                elapsed = (time.perf_counter() - t0) * 1000
                assert task["result"]["total"] == agents, task["result"]
                if i:  # the first warms the workers
                    samples.append(elapsed)
            time.sleep(0.5)
            per_agent = [rss_mb(c.agents[n].pid) for n in names]
            api.close()
        finally:
            c.stop()
    return [emit(dict({"workload": "W3", "agents": agents, "repeats": repeats,
                       "concurrency_per_agent": 1, "heartbeat_interval_s": 1},
                      **summary(samples, points=(50,)),
                      agents_rss_sum_mb=round(sum(per_agent), 1),
                      agent_rss_mb_min=min(per_agent), agent_rss_mb_max=max(per_agent)))]


def _time_to_health(cmd, env, timeout=30.0):
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-start-") as data:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd + ["--server", "--host", "127.0.0.1", "--port", str(port),
                                       "--data-dir", data], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/health" % port,
                                                timeout=2) as r:
                        if r.status == 200:
                            return round(time.perf_counter() - t0, 3)
                except OSError:
                    time.sleep(0.005)
            raise TimeoutError("pyz server did not answer /health")
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def pyz_startup(opts, memory):
    pyz = opts.pyz
    if not pyz:
        pyz = str(opts.repo / "octopus.pyz")
        if not os.path.exists(pyz):
            subprocess.run(["./build_zipapp.sh"], cwd=str(opts.repo), check=True,
                           stdout=subprocess.DEVNULL, timeout=600)
    shiv_root = tempfile.mkdtemp(prefix="bench-shiv-")
    try:
        env = dict(os.environ, SHIV_ROOT=shiv_root, OCTOPUS_ADMIN_TOKEN="x", OCTOPUS_AGENT_TOKEN="y")
        env.pop("PYTHONPATH", None)
        cmd = ["python3", pyz]
        first = _time_to_health(cmd, env)
        later = [_time_to_health(cmd, env) for _ in range(1 if opts.quick else 3)]
    finally:
        shutil.rmtree(shiv_root, ignore_errors=True)
    memory.update(pyz=os.path.relpath(pyz, str(opts.repo)) if pyz.startswith(str(opts.repo))
                  else pyz, pyz_first_start_s=first, pyz_later_start_s=min(later))
