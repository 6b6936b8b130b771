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


def workers_user(text):
    """The user workers switch to, from RUN_AS: None when it is empty or names
    the agent's own user and group.  Raises ValueError when it names anyone
    else and the agent is not root (only root can switch users)."""
    run_as = resolve_run_as(text)
    if run_as is None or (run_as["uid"] == os.geteuid() and run_as["gid"] == os.getegid()):
        return None
    if os.geteuid() != 0:
        raise ValueError("RUN_AS=%s: the agent is not running as root, so it cannot run "
                         "tasks as another user" % text)
    return run_as


def switch_user(run_as):
    """In a forked worker, before any run: become RUN_AS for good."""
    os.setgroups(run_as["groups"])
    os.setgid(run_as["gid"])
    os.setuid(run_as["uid"])


def runs_base(workdir, run_as):
    """Where workers make run folders.  The agent's own folder, or with RUN_AS
    a new folder (0700, that user's) in the system's temporary folder:
    DATA_DIR is closed to that user."""
    if run_as is None:
        return workdir
    base = tempfile.mkdtemp(prefix="octopus-runs-")
    try:
        os.chown(base, run_as["uid"], run_as["gid"])
    except OSError:
        remove_run_dir(base)
        raise
    return base


def run_dir_name(pid, number):
    return "run-%d-%d" % (pid, number)


def make_run_dir(base, number):
    """A worker's folder for its next run (0700), made before that run comes."""
    path = os.path.join(base, run_dir_name(os.getpid(), number))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:  # a former process's, with our pid
        remove_run_dir(path)
        os.mkdir(path, 0o700)
    return path


def remove_worker_dirs(base, pid):
    """What a worker that exited left (killed mid-run, or its next folder)."""
    prefix = "run-%d-" % pid
    try:
        names = [n for n in os.listdir(base) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        remove_run_dir(os.path.join(base, name))


def remove_run_dir(path):
    shutil.rmtree(path, ignore_errors=True)
