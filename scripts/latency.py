#!/usr/bin/env python3
"""W1: no-op echo task from POST /tasks to its recorded result, one agent.

Starts a real server and agent (from the source tree, or --pyz), sends N
sequential tasks on an idle system, and prints p50/p90/p99/max in ms as JSON.
The end of each sample is when ``GET /tasks/{id}?wait=`` returns the final
task, which the server answers the moment the result is committed.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from octopus.harness import Cluster  # noqa: E402


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=200, help="tasks to time (default 200)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--pyz", help="run this octopus.pyz instead of the source tree")
    ap.add_argument("--owner", default="w1", help="task owner: w1 (the agent, default) or Anyone")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="octopus-w1-") as root:
        cluster = Cluster(root, pyz=args.pyz)
        try:
            cluster.start_server()
            cluster.start_agent("w1")
            api = cluster.api()
            body = {"plugin": "echo", "action": "echo", "args": [], "owner": args.owner}
            samples = []
            for i in range(args.warmup + args.n):
                started = time.perf_counter()
                status, task = api.call("POST", "/tasks", body)
                assert status == 201, task
                _, task = api.call("GET", "/tasks/%s?wait=10" % task["id"])
                elapsed = (time.perf_counter() - started) * 1000
                assert task["status"] == "success", task
                if i >= args.warmup:
                    samples.append(elapsed)
        finally:
            cluster.stop()
    print(json.dumps({
        "workload": "W1", "tasks": len(samples), "agents": 1, "owner": args.owner,
        "p50_ms": round(statistics.median(samples), 2),
        "p90_ms": round(percentile(samples, 90), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2),
    }))


if __name__ == "__main__":
    main()
