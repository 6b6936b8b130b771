"""The benchmark suite must keep running: a quick W1 end to end (real server and agent)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes  # real server, agent or script processes

REPO = Path(__file__).resolve().parent.parent


def test_bench_quick_w1(tmp_path):
    md = tmp_path / "bench.md"
    proc = _run([sys.executable, str(REPO / "scripts" / "bench.py"), "--quick",
                  "--only", "W1", "--markdown", str(md)], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    [w1] = [r for r in lines if r["workload"] == "W1"]
    assert w1["samples"] == 30 and 0 < w1["p50_ms"] <= w1["p99_ms"] <= w1["max_ms"]
    text = md.read_text()
    assert "| W1 round trip p50 |" in text and "| W1 |" in text


def _run(args, timeout):
    """Run in a session of its own: on a timeout the whole group goes, the
    servers and agents it started included."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_bench_rejects_unknown_workload():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--only", "W9"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown workload" in proc.stderr
