"""Command-line syntax of ``tasks``, ``agents`` and ``plugins`` (see ctl.py)."""
import argparse

from octopus import ctl
from octopus.ctl_bulk import MAX_TASKS

WHERE = """server and token, first found wins:
  --server-url, $OCTOPUS_SERVER_URL, SERVER_URL in --config, else
  http://127.0.0.1:<SERVER_PORT> from --config / $OCTOPUS_SERVER_PORT (default 8000);
  --token, $OCTOPUS_ADMIN_TOKEN, ADMIN_TOKEN in --config, else DATA_DIR/admin.token
  (--data-dir / $OCTOPUS_DATA_DIR, default ./octopus-data)

"""


def _common():
    """Options every command takes, after its name (``tasks list --json``)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection and output")
    g.add_argument("--server-url", metavar="URL", help="the server (default: see below)")
    g.add_argument("--token", help="the admin token (shows in ps and shell history: prefer "
                   "$OCTOPUS_ADMIN_TOKEN or --data-dir)")
    g.add_argument("--data-dir", help="the server's DATA_DIR, for admin.token")
    g.add_argument("--config", help="the server's config file (default: $OCTOPUS_CONFIG)")
    g.add_argument("--request-timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for each reply (default 30)")
    g.add_argument("--json", action="store_true", help="print the API's JSON reply")
    return p


def _command(sub, name, run, help, common):
    p = sub.add_parser(name, help=help, description=help, parents=[common],
                       epilog=WHERE + ctl.EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=run)
    return p


def _tasks(sub, common):
    tasks = sub.add_parser("tasks", help="list, show, create, cancel or delete tasks",
                           description="List, show, create, cancel or delete tasks.")
    verbs = tasks.add_subparsers(metavar="{list,show,create,cancel,delete}")
    ls = _command(verbs, "list", ctl.tasks_list, "list tasks, newest first", common)
    for flag, what in (("status", "Created, Active, success, failed, Done, cancelled"),
                       ("type", "Adhoc, Interval or Scheduled"), ("owner", "Anyone, ALL or an agent"),
                       ("plugin", "plugin name"), ("executor", "the agent that ran it")):
        ls.add_argument("--" + flag, help="exact match: " + what)
    ls.add_argument("--search", metavar="TEXT", help="text in id, plugin, action, owner, args...")
    ls.add_argument("--limit", type=int, metavar="N", help="at most N tasks (1-1000, default 100)")
    ls.add_argument("--offset", type=int, metavar="N", help="skip the first N")
    _command(verbs, "show", ctl.tasks_show, "one task with its runs", common).add_argument(
        "id", metavar="ID", help="task id")
    for verb, run, help in (("cancel", ctl.tasks_cancel, "stop tasks' runs; they end cancelled"),
                            ("delete", ctl.tasks_delete, "delete tasks and their runs")):
        p = _command(verbs, verb, run, help, common)
        p.add_argument("id", metavar="ID", nargs="+",
                       help="task ids; - reads more from stdin. With more than one, a refused "
                            "task (404, 409) is one line on stderr and the rest go on; exit 2 "
                            "if any was refused")
        _progress_flags(p)
    _create(verbs, common)


def _progress_flags(p):
    p.add_argument("--progress", action="store_true",
                   help="show progress on stderr even when it is not a terminal "
                        "(on a terminal it shows unless --quiet)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress and nothing on stdout; errors still go to stderr")


def _create(verbs, common):
    c = _command(verbs, "create", ctl.tasks_create,
                 "create a task (see docs/API.md), or many with --file", common)
    c.add_argument("plugin", metavar="PLUGIN", nargs="?")
    c.add_argument("action", metavar="ACTION", nargs="?")
    c.add_argument("--file", metavar="FILE",
                   help="create every task in FILE (- for stdin) instead of PLUGIN ACTION: a "
                        "JSON array of task objects, or one object a line; sent %d a request, "
                        "each request all or none" % MAX_TASKS)
    _progress_flags(c)
    c.add_argument("--args", metavar="JSON", help="positional arguments, a JSON array")
    c.add_argument("--kwargs", metavar="JSON", help="keyword arguments, a JSON object")
    c.add_argument("--owner", help="Anyone (default), ALL or an agent's name")
    c.add_argument("--type", choices=("Adhoc", "Interval", "Scheduled"))
    c.add_argument("--interval", metavar="X", help="seconds (Interval) or a 5-field cron (Scheduled)")
    c.add_argument("--timezone", metavar="ZONE", help="IANA zone the cron is read in")
    c.add_argument("--start", metavar="ISO", help="execution_start_time")
    c.add_argument("--end", metavar="ISO", help="execution_end_time")
    c.add_argument("--timeout", type=float, metavar="S", help="seconds each run may take")
    c.add_argument("--max-retries", type=int, metavar="N")
    c.add_argument("--retry-delay", type=float, metavar="S")
    c.add_argument("--retry-backoff", type=float, metavar="F")
    c.add_argument("--overlap", choices=("skip", "queue", "parallel"))
    c.add_argument("--catch-up", choices=("once", "all", "none"))
    c.add_argument("--keep-processes", action="store_const", const=True,
                   help="leave running what a run starts in the background (keep_processes)")
    c.add_argument("--wait", type=float, metavar="SECONDS",
                   help="wait up to SECONDS for the final state; exit 1 unless it succeeded")


def parser():
    common = _common()
    p = argparse.ArgumentParser(prog="octopus.pyz", description="Operate an Octopus server.",
                                epilog=WHERE + ctl.EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(metavar="{tasks,agents,plugins}")
    _tasks(sub, common)
    ag = _command(sub, "agents", ctl.agents, "list agents, online and offline; 'agents revoke "
                  "NAME' refuses an agent's credential, 'agents forget NAME' lets it enroll "
                  "again", common)
    ag.add_argument("action", nargs="?", choices=("revoke", "forget"),
                    help="revoke NAME: its token is refused and its runs lost at once; "
                         "forget NAME: revoke and remove it, so the name may enroll again")
    ag.add_argument("name", nargs="?", metavar="NAME", help="the agent (for revoke, forget)")
    pl = _command(sub, "plugins", ctl.plugins,
                  "list plugins and their actions; 'plugins push FILE' uploads one", common)
    pl.add_argument("action", nargs="?", choices=("push",), help="push FILE: upload a plugin")
    pl.add_argument("file", nargs="?", metavar="FILE", help="the plugin's .py file (for push)")
    return p
