"""What a run sees of the agent's host: its environment, its folder, its user.

A worker starts from a clean environment (no OCTOPUS_* setting, no token),
runs each run in a fresh private folder removed afterwards, and, when the
agent runs as root with RUN_AS set, as that user.
"""
import os
import shutil
import tempfile

# From the agent's environment, only these reach a run (and LC_*).
PASSED = ("PATH", "HOME", "LANG", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def clean_env(environ, home=None):
    """The environment every run starts from."""
    env = {k: v for k, v in environ.items() if k in PASSED or k.startswith("LC_")}
    env.setdefault("PATH", DEFAULT_PATH)
    if home:
        env["HOME"] = home
    return env


def run_env(base, msg):
    """``base`` plus the run's own variables."""
    env = dict(base, RUN_ID=str(msg["id"]), TMPDIR=msg["dir"])
    if msg.get("task_id") is not None:
        env["TASK_ID"] = str(msg["task_id"])
    return env


def resolve_run_as(text):
    """``user`` or ``user:group`` -> {"user", "uid", "gid", "groups", "home"}; None if empty.
    Raises ValueError naming what is unknown."""
    import grp
    import pwd

    text = (text or "").strip()
    if not text:
        return None
    user, _, group = text.partition(":")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError("no user %r on this host" % user)
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError("no group %r on this host" % group)
    return {"user": user, "uid": entry.pw_uid, "gid": gid, "home": entry.pw_dir,
            "groups": sorted(set(os.getgrouplist(user, gid)))}


def switch_user(run_as):
    """In a forked worker, before any run: become RUN_AS for good."""
    os.setgroups(run_as["groups"])
    os.setgid(run_as["gid"])
    os.setuid(run_as["uid"])


def runs_base(workdir, run_as):
    """Where run folders are made.  The agent's own folder, or with RUN_AS a
    new folder in the system's temporary folder: DATA_DIR is closed to that
    user, and each run folder is its own (0700) inside this one (0711)."""
    if run_as is None:
        return workdir
    base = tempfile.mkdtemp(prefix="octopus-runs-")
    os.chmod(base, 0o711)
    return base


def make_run_dir(base, run_id, run_as):
    path = tempfile.mkdtemp(prefix="run-%d-" % run_id, dir=base)  # 0700
    if run_as is not None:
        os.chown(path, run_as["uid"], run_as["gid"])
    return path


def remove_run_dir(path):
    shutil.rmtree(path, ignore_errors=True)
