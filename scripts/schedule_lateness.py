#!/usr/bin/env python3
"""W6: how late the scheduler fires Interval tasks.

Starts a real server (from the source tree, or --pyz), creates N Interval
tasks (default 10,000 at 10 s) whose start times are spread over one
interval (or all equal with --same-start, the worst burst), lets them recur
for --duration seconds and reports the lateness of every slot fired: the
time its runs were written minus the slot's time (``created_at - due_at`` of
its executions), p50/p99/max in ms, and the server's CPU use meanwhile.

No agent is started: each slot makes one run for an agent named "absent",
which waits for it; every later slot is then recorded as skipped (overlap
skip).  Both are written by the same firing step, so this measures the
scheduler, not agents.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from octopus.harness import Cluster  # noqa: E402
from octopus.timeutil import iso, parse_iso  # noqa: E402


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_tasks(api, count, interval, first, same_start):
    for i in range(count):
        start = first if same_start else first + interval * i / count
        status, task = api.call("POST", "/tasks", {
            "plugin": "echo", "action": "echo", "owner": "absent", "type": "Interval",
            "interval": interval, "execution_start_time": iso(start)})
        if status != 201:
            raise SystemExit("POST /tasks -> %d %s" % (status, task))


def lateness(api, since):
    """Lateness in ms of every run written for a slot at or after ``since``."""
    samples, offset = [], 0
    while True:
        status, page = api.call("GET", "/executions?limit=1000&offset=%d" % offset)
        assert status == 200, page
        runs = page["executions"]
        for run in runs:
            if run["due_at"] and run["due_at"] >= since:
                samples.append((parse_iso(run["created_at"]) - parse_iso(run["due_at"])) * 1000)
        if len(runs) < 1000:
            return samples
        offset += 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--tasks", type=int, default=10000)
    ap.add_argument("--interval", type=int, default=10, help="seconds (default 10)")
    ap.add_argument("--duration", type=float, default=60, help="seconds measured (default 60)")
    ap.add_argument("--same-start", action="store_true", help="every task due at the same instant")
    ap.add_argument("--pyz", help="run this octopus.pyz instead of the source tree")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="octopus-w6-") as root:
        cluster = Cluster(root, pyz=args.pyz)
        try:
            cluster.start_server()
            api = cluster.api()
            made = time.time()
            # Every start lies after the creation phase, so no slot is due while creating.
            first = made + args.tasks * 0.004 + 5
            create_tasks(api, args.tasks, args.interval, first, args.same_start)
            created_in = time.time() - made
            if time.time() > first:
                raise SystemExit("creating took longer than planned; rerun with fewer tasks")
            time.sleep(first - time.time())
            cpu0, t0 = cpu_seconds(cluster.server.pid), time.time()
            time.sleep(args.duration)
            cpu = (cpu_seconds(cluster.server.pid) - cpu0) / (time.time() - t0)
            samples = lateness(api, iso(first))
        finally:
            cluster.stop()
    slots = args.tasks * int(args.duration // args.interval)
    print(json.dumps({
        "workload": "W6", "tasks": args.tasks, "interval_s": args.interval,
        "spread": "same start" if args.same_start else "spread over one interval",
        "created_in_s": round(created_in, 1), "slots_fired": len(samples),
        "slots_expected_about": slots,
        "lateness_p50_ms": round(statistics.median(samples), 1),
        "lateness_p99_ms": round(percentile(samples, 99), 1),
        "lateness_max_ms": round(max(samples), 1),
        "server_cpu_cores": round(cpu, 2),
    }))


if __name__ == "__main__":
    main()
