"""W5: the dashboard's API calls on a large database; W6: schedule lateness."""
import json
import os
import subprocess
import sys
import tempfile
import time

from bench_common import Cluster, emit, summary
from octopus.store.migrate import latest_version


def seeded_db(opts, tasks, executions):
    """A seeded file under .build/bench-w5/, reused when made with the same parameters."""
    folder = opts.repo / ".build" / "bench-w5"
    folder.mkdir(parents=True, exist_ok=True)
    name = "seed-t%d-e%d-v%d" % (tasks, executions, latest_version())
    path, done = folder / (name + ".db"), folder / (name + ".json")
    if path.exists() and done.exists():
        info = json.loads(done.read_text())
        info["reused"] = True
        return path, info
    for old in folder.glob("seed-*"):  # one seeded file at a time: each is ~0.5 GB
        old.unlink()
    from octopus.store.seed import seed
    t0 = time.perf_counter()
    written = seed(str(path), tasks=tasks, executions=executions)
    info = dict(written, seeded_in_s=round(time.perf_counter() - t0, 1),
                seeded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                size_mb=round(os.path.getsize(str(path)) / 1e6, 1))
    done.write_text(json.dumps(info))
    info["reused"] = False
    return path, info


def _calls(api):
    """The dashboard's calls (static/views/*.js), with one task id and a search term."""
    _, page = api.call("GET", "/tasks?limit=1&offset=50")
    task_id = page["tasks"][0]["id"]
    _, busy = api.call("GET", "/tasks?type=Interval&limit=1")
    busy_id = busy["tasks"][0]["id"] if busy["tasks"] else task_id
    return [
        ("GET /stats (overview)", "/stats?hours=1&buckets=12"),
        ("GET /stats?buckets=1 (sign-in)", "/stats?buckets=1"),
        ("GET /tasks", "/tasks?limit=50"),
        ("GET /tasks?status=failed", "/tasks?status=failed&limit=50"),
        ("GET /tasks?owner=agent-007&plugin=shell", "/tasks?owner=agent-007&plugin=shell&limit=50"),
        ("GET /tasks?offset=5000", "/tasks?limit=50&offset=5000"),
        ("GET /tasks?q=job-42", "/tasks?q=job-42&limit=50"),
        ("GET /tasks?q=<no match>", "/tasks?q=zzzz-nothing&limit=50"),
        # Thousands of matches: the page comes from walking the newest tasks.
        ("GET /tasks?q=echo (58% of tasks)", "/tasks?q=echo&limit=50"),
        # Shorter than a trigram: no index, every task is read (as before 0009).
        ("GET /tasks?q=jo (2 characters)", "/tasks?q=jo&limit=50"),
        ("GET /tasks/{id}?executions=50", "/tasks/%s?executions=50" % task_id),
        ("GET /tasks/{recurring id}?executions=50", "/tasks/%s?executions=50" % busy_id),
        ("GET /executions?limit=50", "/executions?limit=50"),
        ("GET /executions?status=failed&limit=5", "/executions?status=failed&limit=5"),
        ("GET /executions?status=lost&limit=50", "/executions?status=lost&limit=50"),
        ("GET /executions?task_id=", "/executions?task_id=%s&limit=50" % busy_id),
        ("GET /agents", "/agents"),
        ("GET /health", "/health"),
    ]


def w5(opts):
    tasks, executions = (5000, 50000) if opts.quick else (100000, 1000000)
    path, info = seeded_db(opts, tasks, executions)
    repeats = 10 if opts.quick else 40
    calls = {}
    with tempfile.TemporaryDirectory(prefix="bench-w5-") as root:
        # Retention off: the seeded history spans 30 days and must stay as it is.
        c = Cluster(root, pyz=opts.pyz, env={"OCTOPUS_DB_FILE": str(path),
                                              "OCTOPUS_RETENTION_DAYS": "0"})
        try:
            c.start_server(timeout=120)
            api = c.api()
            for label, url in _calls(api):
                samples = []
                for i in range(repeats + 2):
                    t0 = time.perf_counter()
                    status, body = api.call("GET", url)
                    elapsed = (time.perf_counter() - t0) * 1000
                    assert status == 200, (url, status, body)
                    if i >= 2:  # two warm-ups: the page cache, not the first read from disk
                        samples.append(elapsed)
                s = summary(samples, points=(50, 95))
                calls[label] = {"p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"]}
            api.close()
        finally:
            c.stop()
    worst = max(calls.items(), key=lambda kv: kv[1]["p95_ms"])
    return [emit({"workload": "W5", "tasks": info["tasks"], "executions": info["executions"],
                  "db": os.path.relpath(str(path), str(opts.repo)), "db_size_mb": info["size_mb"],
                  "seed_reused": info["reused"], "seeded_in_s": info["seeded_in_s"],
                  "repeats": repeats, "worst_p95_ms": worst[1]["p95_ms"],
                  "worst_call": worst[0], "calls": calls})]


def w6(opts):
    n, duration = (500, 12) if opts.quick else (10000, 60)
    cmd = [sys.executable, str(opts.repo / "scripts" / "schedule_lateness.py"), "-n", str(n),
           "--duration", str(duration)]
    if opts.pyz:
        cmd += ["--pyz", opts.pyz]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=duration + n * 0.05 + 120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError("schedule_lateness.py failed (%d): %s" % (proc.returncode,
                                                                     proc.stderr[-2000:]))
    return [emit(json.loads(lines[-1]))]
