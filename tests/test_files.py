"""The files a server and an agent leave: private whatever the umask, and what
happens when they cannot be written (a full disk)."""
import contextlib
import errno
import logging
import os
import shutil
import stat
import subprocess
import sys

import pytest

from octopus import config as settings
from octopus import logs
from octopus.agent.outbox import Outbox
from octopus.harness import wait_for
from octopus.store import Store


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def not_private(root):
    """Every file under ``root`` with a mode open to other users (folders inside a
    0700 DATA_DIR are out of their reach whatever their mode)."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if stat.S_ISREG(os.lstat(path).st_mode) and mode(path) & 0o077:
                found[os.path.relpath(path, root)] = oct(mode(path))
    return found


def test_a_server_and_an_agent_keep_every_file_private_under_umask_022(cluster):
    """DATA_DIR 0700 (an existing 0755 one is tightened, with a warning), the
    database and its WAL and -shm, logs, the agent's token, the lock: 0600.
    (Generated admin and agent tokens: tests/test_e2e.py.)"""
    server_dir = cluster.root / "server"
    server_dir.mkdir(mode=0o755)
    os.chmod(server_dir, 0o755)
    with umask(0o022):
        old = Store(str(server_dir / "octopus.db"))  # as an older version left it
        old.close()
        os.chmod(server_dir / "octopus.db", 0o644)
        cluster.start_server()
        cluster.start_agent("private")  # its own token: agent/identity.token
        api = cluster.api()
        task = cluster.run_task(api, {"plugin": "echo", "action": "echo", "args": ["secret"]})
        api.close()
    assert task["status"] == "success"
    assert (server_dir / "octopus.db-wal").exists() and (server_dir / "octopus.db-shm").exists()
    assert (server_dir / "logs" / "server.log").exists()
    assert mode(server_dir) == 0o700
    assert not_private(server_dir) == {}
    agent_dir = cluster.root / "agent-private"
    assert mode(agent_dir) == 0o700 and (agent_dir / "logs" / "client.log").exists()
    assert {k: v for k, v in not_private(agent_dir).items()
            if not k.startswith("agent/plugins")} == {}
    assert ("DATA_DIR %s was open to other users (mode 0755): made it 0700" % server_dir
            in cluster.server.log())


def test_a_data_dir_of_other_uses_is_left_as_it_is_with_a_warning(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    config = settings.load(settings.SERVER_SETTINGS, None, {"OCTOPUS_DATA_DIR": str(shared)},
                           None)
    notes = settings.ensure_data_dir(config)
    assert mode(shared) == 0o1777
    assert notes == ["DATA_DIR %s is open to other users (mode 1777) and is left so (not only "
                     "Octopus's folder): use a folder of its own" % shared]
    fresh = settings.load(settings.SERVER_SETTINGS, None,
                          {"OCTOPUS_DATA_DIR": str(tmp_path / "new" / "data")}, None)
    with umask(0o022):
        assert settings.ensure_data_dir(fresh) == []
    assert mode(tmp_path / "new" / "data") == 0o700


def test_store_log_and_outbox_files_are_0600_under_umask_022(tmp_path):
    with umask(0o022):
        store = Store(str(tmp_path / "db" / "octopus.db"))
        try:
            for suffix in ("", "-wal", "-shm"):
                assert mode(str(tmp_path / "db" / "octopus.db") + suffix) == 0o600, suffix
        finally:
            store.close()
        handler = logs.RotatingFile(str(tmp_path / "x.log"), maxBytes=200, backupCount=2)
        logger = logging.getLogger("octopus.test.files")
        logger.addHandler(handler)
        try:
            for i in range(20):  # several rotations: each new file is private too
                logger.warning("line %d of some length to rotate soon", i)
        finally:
            logger.removeHandler(handler)
            handler.close()
        outbox = Outbox(str(tmp_path / "outbox"))
        outbox.add({"id": 7, "status": "success", "result": "secret", "output": ""})
    assert sorted(os.listdir(tmp_path)) == ["db", "outbox", "x.log", "x.log.1", "x.log.2"]
    for name in ("x.log", "x.log.1", "x.log.2", "outbox/7.json"):
        assert mode(tmp_path / name) == 0o600, name
    assert mode(tmp_path / "outbox") == 0o700


def test_a_log_line_is_one_line_whatever_its_message_holds(tmp_path):
    config = settings.load(settings.SERVER_SETTINGS, None, {
        "OCTOPUS_DATA_DIR": str(tmp_path), "OCTOPUS_LOG_FILE": "one.log"}, None)
    logs.setup(config, ("octopus.test.oneline",), config.LOG_FILE)
    logger = logging.getLogger("octopus.test.oneline")
    try:
        logger.warning("Heartbeat from %s", "evil\n2026-01-01 00:00:00 CRITICAL octopus: forged\r")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("with a traceback")
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    lines = (tmp_path / "one.log").read_text().splitlines()
    assert lines[0].endswith("Heartbeat from evil\\n2026-01-01 00:00:00 CRITICAL octopus: "
                             "forged\\r")
    assert lines[1].endswith("with a traceback") and lines[2] == "Traceback (most recent call last):"
    assert not any("CRITICAL" in line.split(" ")[2] for line in lines[:2])


LOG_TO_DEV_FULL = """
import logging, sys
from octopus import logs
handler = logs.RotatingFile("/dev/full")
logger = logging.getLogger("octopus.full")
logger.addHandler(handler)
for i in range(500):
    logger.warning("line %d", i)
print("done")
"""


@pytest.mark.processes  # a child process logs to /dev/full
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_logging_to_a_full_disk_says_so_in_one_line_not_a_traceback_a_line():
    proc = subprocess.run([sys.executable, "-c", LOG_TO_DEV_FULL], capture_output=True,
                          text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
                              os.path.abspath(logs.__file__)))))
    assert proc.returncode == 0 and proc.stdout == "done\n", proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        "octopus: cannot write /dev/full (No space left on device): log lines are lost until "
        "it works again"]


@contextlib.contextmanager
def tiny_filesystem(path):
    """A 64 KiB tmpfs at ``path`` (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder):
    """Fill the filesystem of ``folder``; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


@pytest.mark.processes  # mounts a small tmpfs
def test_a_full_disk_is_said_once_and_logging_resumes_when_there_is_room(tmp_path, capsys):
    with tiny_filesystem(tmp_path / "disk") as disk:
        handler = logs.RotatingFile(str(disk / "server.log"))
        logger = logging.getLogger("octopus.test.disk")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            logger.warning("before")
            filler = fill(disk)
            for i in range(300):
                logger.warning("lost line %d " + "x" * 100, i)
            said = capsys.readouterr().err.splitlines()
            assert said == ["octopus: cannot write %s (No space left on device): log lines "
                            "are lost until it works again" % (disk / "server.log")]
            filler.unlink()
            wait_for(lambda: _logs_again(logger, capsys), 10, what="logging to work again")
            logger.warning("after")
            handler.flush()
        finally:
            logger.removeHandler(handler)
            handler.close()
        text = (disk / "server.log").read_text(errors="replace")
    assert "before" in text and text.rstrip().endswith("after")


def _logs_again(logger, capsys):
    logger.warning("probe")
    return "works again" in capsys.readouterr().err


@pytest.mark.processes  # mounts a small tmpfs
def test_a_result_that_cannot_be_written_leaves_no_temporary_file(tmp_path):
    with tiny_filesystem(tmp_path / "disk") as disk:
        outbox = Outbox(str(disk / "outbox"))
        fill(disk)
        outbox.add({"id": 9, "status": "success", "result": None, "output": "x" * 200000})
        left = sorted(os.listdir(disk / "outbox"))
    assert left == []
