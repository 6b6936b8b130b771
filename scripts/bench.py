#!/usr/bin/env python3
"""Octopus benchmark suite: one command, everything on 127.0.0.1.

Workloads (see docs/PERFORMANCE.md): W1 latency, W2 throughput (one by one
and bulk), W3 fan-out to 20 agents, W4a waiting agents at scale, W4b 10,000
heartbeating agents, W5 dashboard calls on 1M runs, W6 schedule lateness,
Memory (server and agent RSS, pyz start-up).  Each prints one JSON line; a
markdown table of figures against the targets goes to stdout and --markdown.

    python3 scripts/bench.py                 # everything (~15 minutes)
    python3 scripts/bench.py --quick         # a small smoke version (~2 minutes)
    python3 scripts/bench.py --only W1,W3    # pick workloads
    python3 scripts/bench.py --pyz octopus.pyz   # bench the built zipapp

Every loop is bounded in count and time; servers and agents are real
processes, stopped (SIGTERM, then SIGKILL) whatever happens.
"""
import argparse
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common  # noqa: E402
from bench_common import REPO, emit  # noqa: E402

WORKLOADS = ("W1", "W2", "W3", "W4a", "W4b", "W5", "W6", "Memory")


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError):
        ram = 0
    return "%d CPUs (%s), %.0f GiB RAM, Python %s" % (
        os.cpu_count() or 0, model, ram, platform.python_version())


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts: proves each workload runs")
    ap.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    ap.add_argument("--pyz", help="bench this octopus.pyz instead of the source tree")
    ap.add_argument("--markdown", default=str(REPO / ".build" / "bench.md"),
                    help="where to write the markdown table (default .build/bench.md)")
    ap.add_argument("--w4b-agents", type=int, default=0, help="simulated agents for W4b")
    opts = ap.parse_args(argv)
    opts.repo = REPO
    if opts.pyz:
        opts.pyz = os.path.abspath(opts.pyz)
        if not os.path.exists(opts.pyz):
            ap.error("--pyz %s: no such file" % opts.pyz)
    wanted = WORKLOADS
    if opts.only:
        names = {w.lower(): w for w in WORKLOADS}
        wanted = []
        for item in opts.only.split(","):
            item = item.strip()
            if item.lower() in names:
                wanted.append(names[item.lower()])
            elif item.upper() == "W4":
                wanted += ["W4a", "W4b"]
            elif item:
                ap.error("unknown workload %r (known: %s)" % (item, ", ".join(WORKLOADS)))
    opts.wanted = [w for w in WORKLOADS if w in wanted]
    return opts


def _python_with_deps():
    """The source tree needs falcon, waitress, apsw and cronsim: use .build/test-venv
    when this interpreter lacks them (the pyz brings its own)."""
    try:
        import apsw, cronsim, falcon, waitress  # noqa: F401,E401
        return None
    except ImportError:
        venv = REPO / ".build" / "test-venv" / "bin" / "python"
        return str(venv) if venv.exists() and str(venv) != sys.executable else None


def main(argv=None):
    opts = parse(argv)
    if not opts.pyz and argv is None and _python_with_deps():
        python = _python_with_deps()
        print("(re-running with %s: this Python lacks the server's packages)" % python,
              file=sys.stderr)
        os.execv(python, [python, __file__] + sys.argv[1:])
    import bench_procs
    import bench_w4
    import bench_w5

    started = time.time()
    results, failed, memory = [], [], {}
    runners = {"W2": bench_procs.w2, "W3": bench_procs.w3, "W4a": bench_w4.w4a,
               "W4b": bench_w4.w4b, "W5": bench_w5.w5, "W6": bench_w5.w6}
    for name in opts.wanted:
        t0 = time.time()
        try:
            if name == "W1" or (name == "Memory" and "W1" not in opts.wanted):
                out, mem = bench_procs.w1(opts)
                memory.update(mem)
                if name == "W1":
                    results += out
            if name == "Memory":
                pyz = opts.pyz or str(REPO / "octopus.pyz")
                if os.path.exists(pyz):
                    bench_procs.pyz_startup(opts, memory)
                else:
                    memory["pyz_start"] = "skipped: no octopus.pyz (./build_zipapp.sh)"
                peaks = [r["server_peak_rss_mb"] for r in results if "server_peak_rss_mb" in r]
                if peaks:
                    memory["server_peak_rss_under_w2_mb"] = max(peaks)
                results.append(emit(dict({"workload": "Memory"}, **memory)))
            elif name in runners:
                results += runners[name](opts)
        except Exception as e:  # one broken workload must not hide the others
            traceback.print_exc()
            failed.append(name)
            emit({"workload": name, "error": "%s: %s" % (type(e).__name__, e)})
        print("  (%s took %.0fs)" % (name, time.time() - t0), file=sys.stderr, flush=True)
    rows = bench_common.verdict(results)
    header = "Octopus benchmark%s, %s, %s (%s; %.0f s)" % (
        " (--quick: small counts, figures not comparable to targets)" if opts.quick else "",
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), machine(),
        "pyz " + os.path.basename(opts.pyz) if opts.pyz else "source tree", time.time() - started)
    text = bench_common.markdown(results, rows, header)
    print(text)
    if opts.markdown:
        Path(opts.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.markdown).write_text(text)
    if failed:
        print("failed workloads: %s" % ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def _exit_on_sigterm(signum, frame):
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so every finally
    # block stops the servers and agents this run started.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main())
