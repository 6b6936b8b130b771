"""Shared helpers of scripts/bench.py: statistics, /proc readings, targets, output."""
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from octopus.harness import Cluster, wait_for  # noqa: E402,F401

# The targets on 2 cores: (workload, figure key, label, "<=" or ">=", bound).
TARGETS = [
    ("W1", "p50_ms", "W1 round trip p50", "<=", 2.0, "ms"),
    ("W1", "p99_ms", "W1 round trip p99", "<=", 10.0, "ms"),
    ("W2", "tasks_per_s", "W2 one by one (4 agents x CONCURRENCY=1)", ">=", 2000, "tasks/s"),
    ("W2-bulk", "tasks_per_s", "W2 bulk, lists of 1000 (4 agents x CONCURRENCY=1)", ">=", 5000,
     "tasks/s"),
    ("W3", "p50_ms", "W3 ALL task to 20 agents p50", "<=", 15.0, "ms"),
    ("W4a", "largest_n_meeting", "W4a waiting agents (wake p99<=100ms, /health p99<=50ms)",
     ">=", 2000, "agents"),
    ("W4b", "server_cpu_cores", "W4b 10,000 agents: server CPU", "<", 1.0, "cores"),
    ("W4b", "errors", "W4b 10,000 agents: errors", "<=", 0, ""),
    ("W5", "worst_p95_ms", "W5 worst dashboard call p95 (1M runs)", "<=", 50.0, "ms"),
    ("W6", "lateness_p99_ms", "W6 schedule lateness p99 (10,000 x 10 s)", "<=", 1000.0, "ms"),
    ("Memory", "idle_agent_rss_mb", "Idle agent RSS (with launcher + worker)", "<=", 25.0, "MB"),
    ("Memory", "idle_agent_pss_mb", "Idle agent PSS (shared pages counted once)", "<=", 25.0, "MB"),
    ("Memory", "server_idle_rss_mb", "Server RSS idle", "<=", 60.0, "MB"),
]


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def summary(samples, prefix="", unit="ms", points=(50, 90, 99)):
    """p50/p90/p99/max of ``samples`` (already in ``unit``), rounded."""
    if not samples:
        return {prefix + "samples": 0}
    out = {prefix + "samples": len(samples)}
    for p in points:
        out["%sp%d_%s" % (prefix, p, unit)] = round(
            statistics.median(samples) if p == 50 else percentile(samples, p), 2)
    out["%smax_%s" % (prefix, unit)] = round(max(samples), 2)
    return out


def _status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    """Every descendant pid of ``pid`` (from /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, task)) as f:
                    kids = [int(x) for x in f.read().split()]
                found.extend(kids)
                todo.extend(kids)
        except OSError:
            continue
    return found


def rss_mb(pid, with_children=True):
    """VmRSS of ``pid`` (and its descendants), in MB."""
    pids = [pid] + (children(pid) if with_children else [])
    return round(sum(_status_kb(p, "VmRSS") for p in pids) / 1024.0, 1)


def pss_mb(pid, with_children=True):
    """Proportional set size of ``pid`` and its descendants, in MB: a page
    shared by n processes counts 1/n in each, so the sum is what they cost
    together (RSS counts the interpreter's shared pages once per process)."""
    total = 0
    for p in [pid] + (children(pid) if with_children else []):
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except OSError:
            continue
    return round(total / 1024.0, 1)


def hwm_mb(pid):
    """VmHWM (peak RSS) of ``pid`` alone, in MB."""
    return round(_status_kb(pid, "VmHWM") / 1024.0, 1)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU cores a process used between start() and stop()."""

    def __init__(self, pid):
        self.pid = pid

    def start(self):
        self._cpu, self._t = cpu_seconds(self.pid), time.monotonic()
        return self

    def stop(self):
        return round((cpu_seconds(self.pid) - self._cpu) / (time.monotonic() - self._t), 3)


def emit(result):
    print(json.dumps(result), flush=True)
    return result


def wait_all_final(api, expected_done, timeout, interval=0.02, stall=15.0):
    """Wait until /health shows no pending or active task.

    Returns ``(when, health, stalled)``: ``when`` a perf_counter time, and
    ``stalled`` True when nothing finished for ``stall`` seconds (gives up).
    """
    deadline = time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while True:
        status, health = api.call("GET", "/health")
        if status == 200 and health["pending"] == 0 and health["active"] == 0 and \
                sum(health["tasks"].values()) >= expected_done:
            return time.perf_counter(), health, False
        done = sum(health["tasks"].values()) - health["pending"] - health["active"]
        if done != last:
            last, moved = done, time.monotonic()
        if time.monotonic() - moved > stall or time.monotonic() > deadline:
            return time.perf_counter(), health, True
        time.sleep(interval)


def verdict(results):
    """Rows (label, figure, target, met) for every target whose workload ran."""
    by_name = {r["workload"]: r for r in results}
    rows = []
    for workload, key, label, op, bound, unit in TARGETS:
        r = by_name.get(workload)
        if r is None or key not in r or r[key] is None:
            continue
        value = r[key]
        met = value <= bound if op == "<=" else value >= bound if op == ">=" else value < bound
        figure = "%s %s" % (_fmt(value), unit)
        if workload == "W4b" and r.get("agents") != 10000:
            met = False
            figure += " (at %d agents)" % r.get("agents", 0)
        rows.append((label, figure.strip(), "%s %s %s" % (op, _fmt(bound), unit), met))
    return rows


def _fmt(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return ("%.2f" % value).rstrip("0").rstrip(".") if value < 100 else "%.0f" % value
    return "{:,}".format(value) if isinstance(value, int) else str(value)


def markdown(results, rows, header):
    out = [header, "", "| Figure | Measured | Target | Met |", "|---|---|---|---|"]
    for label, figure, target, met in rows:
        out.append("| %s | %s | %s | %s |" % (label, figure, target, "yes" if met else "**no**"))
    out += ["", "| Workload | All figures |", "|---|---|"]
    for r in results:
        detail = ", ".join("%s=%s" % (k, _fmt(v) if not isinstance(v, (dict, list)) else
                                      json.dumps(v, separators=(",", ":")))
                           for k, v in r.items() if k != "workload")
        out.append("| %s | %s |" % (r["workload"], detail.replace("|", "/")))
    for r in results:
        if r["workload"] == "W5" and "calls" in r:
            out += ["", "W5, %s tasks / %s runs:" % (_fmt(r["tasks"]), _fmt(r["executions"])), "",
                    "| Dashboard call | p50 ms | p95 ms |", "|---|---|---|"]
            out += ["| %s | %s | %s |" % (k, v["p50_ms"], v["p95_ms"]) for k, v in r["calls"].items()]
        if r["workload"] == "W4a" and "levels" in r:
            out += ["", "W4a levels:", "", "| N waiting | wake p50 / p99 ms | /health p50 / p99 ms "
                    "| server CPU | RSS MB | met |", "|---|---|---|---|---|---|"]
            out += ["| %s | %s / %s | %s / %s | %s | %s | %s |" % (
                v["n"], v.get("wake_p50_ms"), v.get("wake_p99_ms"), v.get("health_p50_ms"),
                v.get("health_p99_ms"), v.get("server_cpu_cores"), v.get("server_rss_mb"),
                _fmt(v["meets"])) for v in r["levels"]]
    return "\n".join(out) + "\n"
