"""Seed a database with a large, realistic history, for benchmarks (W5).

Uses the real schema (``Store`` runs the migrations), then bulk INSERTs in a
few large transactions.  Deterministic for given parameters (seeded RNG), so
a seeded file can be reused by anyone asking for the same parameters.

The mix: most tasks are Adhoc with one run; a few percent are recurring
(Interval/Scheduled, window closed, so the scheduler leaves them alone) and
carry most of the runs; some are ALL tasks with one run per agent.  Owners
are Anyone, ALL or one of ``agents`` named agents; plugins are the bundled
ones; times are spread over ``days`` days before ``now``.  No run is left
open (assigned/running), so a server started on the file changes nothing.
"""
import random
import time

from octopus.store import Store
from octopus.store.db import dumps
from octopus.timeutil import iso

PLUGINS = (("echo", "echo", 0.55), ("shell", "run", 0.2), ("sleep", "sleep", 0.15),
           ("system", "info", 0.07), ("echo", "fail", 0.03))
RUN_OUTCOMES = (("success", 0.86), ("failed", 0.08), ("timeout", 0.02), ("cancelled", 0.01),
                ("lost", 0.01), ("skipped", 0.02))
BATCH = 50000


def _pick(rng, weighted):
    x, acc = rng.random(), 0.0
    for item in weighted:
        acc += item[-1]
        if x < acc:
            return item
    return weighted[-1]


def seed(path, tasks=100000, executions=1000000, agents=50, days=30.0, now=None, rng_seed=1,
         progress=None):
    """Create ``path`` (must not exist yet, or be empty) with the given history.

    Returns a dict of what was written.  ``progress(done_runs)`` is called
    after each transaction when given.
    """
    now = time.time() if now is None else now
    rng = random.Random(rng_seed)
    store = Store(path)
    db = store._db
    names = ["agent-%03d" % i for i in range(agents)]
    span = days * 86400.0
    recurring = max(1, tasks // 50)          # 2% of tasks are recurring...
    all_tasks = max(1, tasks // 100)         # ...1% fan out to every agent
    adhoc = tasks - recurring - all_tasks
    # Runs: one per Adhoc task (but Created ones), ``agents`` per ALL task, the
    # rest shared by the recurring ones.
    spare = max(0, executions - adhoc - all_tasks * agents)
    per_recurring = spare // recurring
    written = {"tasks": 0, "executions": 0, "agents": agents}
    try:
        with db.write() as conn:
            conn.executemany(
                "INSERT INTO agents (name, hostname, ip, version, concurrency, first_seen, "
                "last_heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(n, n + ".example.net", "10.0.%d.%d" % (i // 250, i % 250 + 1), "0.1.0",
                  rng.choice((1, 2, 4, 8)), iso(now - span), iso(now - rng.random() * 3600))
                 for i, n in enumerate(names)])
        task_rows, run_rows = [], []

        def flush(force=False):
            if not force and len(run_rows) < BATCH and len(task_rows) < BATCH:
                return
            with db.write() as conn:
                conn.executemany(
                    "INSERT INTO tasks (id, owner, plugin, action, args, kwargs, type, "
                    "execution_start_time, execution_end_time, interval, status, executor, "
                    "result, updated_at, created_at, next_run_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", task_rows)
                conn.executemany(
                    "INSERT INTO executions (task_id, client, status, result, updated_at, "
                    "created_at, started_at, finished_at, duration, output, attempt, due_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", run_rows)
            written["tasks"] += len(task_rows)
            written["executions"] += len(run_rows)
            task_rows.clear()
            run_rows.clear()
            if progress:
                progress(written["executions"])

        def run(task_id, client, at, status, args):
            took = rng.expovariate(1 / 0.05) if status != "skipped" else None
            result = ({"args": args, "kwargs": {}} if status == "success"
                      else {"skipped": "overlap"} if status == "skipped"
                      else {"error": {"type": "RuntimeError", "message": "boom"}})
            end = at + (took or 0) + 0.002
            run_rows.append((task_id, client, status, dumps(result), iso(end), iso(at),
                             None if took is None else iso(at + 0.001),
                             iso(end), took, "" if status == "success" else "some output\n",
                             1, iso(at)))

        # Creation times ascend, so ids (runs) and created_at agree as in real life.
        kinds = ["adhoc"] * adhoc + ["recurring"] * recurring + ["all"] * all_tasks
        rng.shuffle(kinds)
        for i, kind in enumerate(kinds):
            created = now - span + span * i / len(kinds)
            plugin, action, _ = _pick(rng, PLUGINS)
            args = [rng.randrange(1000), "job-%d" % (i % 997)]
            task_id = "%032x" % rng.getrandbits(128)
            if kind == "adhoc":
                owner = "Anyone" if rng.random() < 0.75 else rng.choice(names)
                if created > now - span * 0.002 and rng.random() < 0.3:  # recent ones wait
                    status, executor, result = "Created", None, None
                else:
                    status = _pick(rng, RUN_OUTCOMES)[0]
                    status = "success" if status in ("success", "skipped") else (
                        "cancelled" if status == "cancelled" else "failed")
                    executor = owner if owner != "Anyone" else rng.choice(names)
                    result = {"args": args, "kwargs": {}} if status == "success" else {
                        "error": {"type": "RuntimeError", "message": "boom"}}
                    run(task_id, executor, created + 0.003, status, args)
                task_rows.append((task_id, owner, plugin, action, dumps(args), "{}", "Adhoc",
                                  None, None, None, status, executor, dumps(result),
                                  iso(created + 0.05), iso(created), iso(created)))
            elif kind == "all":
                summary = {"total": agents, "success": 0, "failed": 0}
                for n in names:
                    ok = rng.random() < 0.95
                    summary["success" if ok else "failed"] += 1
                    run(task_id, n, created + 0.003, "success" if ok else "failed", args)
                task_rows.append((task_id, "ALL", plugin, action, dumps(args), "{}", "Adhoc",
                                  None, None, None, "Done", None, dumps(summary),
                                  iso(created + 0.05), iso(created), iso(created)))
            else:
                # Every slot lies between creation and now.
                every = min(rng.choice((10, 60, 300, 900)),
                            max(0.001, (now - created) / max(1, per_recurring)))
                owner = "Anyone" if rng.random() < 0.6 else rng.choice(names)
                last = created + (per_recurring - 1) * every
                # The task first: a flush between its runs must find it.
                task_rows.append((task_id, owner, plugin, action, dumps(args), "{}", "Interval",
                                  iso(created), iso(last + 1), str(max(1, int(every))), "Done",
                                  None, dumps({"args": args, "kwargs": {}}), iso(last + 1),
                                  iso(created), None))
                for k in range(per_recurring):
                    status = _pick(rng, RUN_OUTCOMES)[0]
                    run(task_id, owner if owner != "Anyone" else rng.choice(names),
                        created + k * every, status, args)
                    if len(run_rows) >= BATCH:
                        flush()
            flush()
        flush(force=True)
        with db.write() as conn:
            conn.execute("ANALYZE")
    finally:
        store.close()
    return written
