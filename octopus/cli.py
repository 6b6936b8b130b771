"""Command line: ``--server``, ``--agent``, or both in one process; ``db`` tools;
``tasks``/``agents``/``plugins`` for operators (ctl.py)."""
import _thread
import argparse
import logging
import os
import signal
import sys
import threading

from octopus import __version__, config as settings
from octopus.config import ConfigError

log = logging.getLogger("octopus")
AGENT_STOP_LIMIT = 8.0  # seconds a stopping agent may take before the process goes anyway

FLAG_SETTINGS = {"host": "SERVER_HOST", "port": "SERVER_PORT", "data_dir": "DATA_DIR",
                 "server_url": "SERVER_URL", "name": "CLIENT_ID"}


def parser():
    p = argparse.ArgumentParser(
        prog="octopus.pyz",
        description="Octopus: a task server and its agents in one file.",
        epilog="Every setting can also come from a config file (--config) or the environment "
               "(OCTOPUS_<NAME>); run --help-settings to list them. Operator commands: "
               "'tasks list|show|create|cancel|delete', 'agents', 'plugins [push FILE]' "
               "(each with --help). Database tools (see 'db --help'): 'db vacuum', "
               "'db backup FILE' and 'db check'.")
    p.add_argument("--server", action="store_true", help="run the server (API and dashboard)")
    p.add_argument("--agent", action="store_true",
                   help="run an agent; with --server, a local agent in the same process")
    p.add_argument("--host", help="address to listen on (SERVER_HOST)")
    p.add_argument("--port", help="port to listen on (SERVER_PORT)")
    p.add_argument("--data-dir", help="folder for database, logs and tokens (DATA_DIR)")
    p.add_argument("--server-url", help="server the agent connects to (SERVER_URL)")
    p.add_argument("--name", help="this agent's name (CLIENT_ID)")
    p.add_argument("--config", help="file of NAME = value lines (default: $OCTOPUS_CONFIG)")
    p.add_argument("--help-settings", action="store_true", help="list every setting and exit")
    p.add_argument("--version", action="version", version="octopus " + __version__)
    return p


def main(argv):
    if argv[:1] == ["db"]:
        from octopus import dbtool

        return dbtool.main(argv[1:])
    if argv[:1] and argv[0] in ("tasks", "agents", "plugins"):
        from octopus import ctl  # standard library only: runs where an agent runs

        return ctl.main(argv)
    args = parser().parse_args(argv)
    if args.help_settings:
        for title, table in (("Server", settings.SERVER_SETTINGS), ("Agent", settings.AGENT_SETTINGS)):
            print("%s settings\n\n%s\n" % (title, settings.help_table(table)))
        return 0
    if not (args.server or args.agent):
        parser().print_usage(sys.stderr)
        sys.stderr.write("octopus.pyz: say --server, --agent or both\n")
        return 2
    try:
        return _run(args)
    except ConfigError as e:
        sys.stderr.write("octopus: %s\n" % e)
        return 2


def _load(args, table):
    flags = {FLAG_SETTINGS[k]: v for k, v in vars(args).items() if k in FLAG_SETTINGS and v is not None}
    return settings.layered(table, args.config, flags)[0]


def _run(args):
    server_config = _load(args, settings.SERVER_SETTINGS) if args.server else None
    agent_config = _load(args, settings.AGENT_SETTINGS) if args.agent else None
    server = agent = None
    stop = threading.Event()
    if args.server:
        server = _start_server(server_config)
    if args.agent:
        agent = _start_agent(agent_config, server, args, stop)
    unknown = settings.unknown_environment()
    if unknown:  # once, in the log of the role(s) started
        logging.getLogger("octopus.server" if server else "octopus.agent").warning(unknown)
    _on_signals(server, agent, stop)
    if server is None:
        try:
            stop.wait()
        finally:
            _stop_agent(agent)
        return agent.exit_code  # 3: the server refused this agent's credential
    server.serve()
    return 0


def _start_server(config):
    try:
        from octopus.server.run import Server
    except ImportError as e:  # a pyz without the binding for this Python
        raise ConfigError("server mode needs falcon, waitress and apsw for Python %d.%d: %s"
                          % (sys.version_info[:2] + (e,)))
    _check_apsw()
    return Server(config)


def _check_apsw():
    # A pyz built without this Python's binding imports apsw as an empty
    # namespace package; catch it here rather than deep in a request.
    import apsw

    if not hasattr(apsw, "Connection"):
        raise ConfigError("this octopus.pyz has no SQLite binding (apsw) for Python %d.%d; "
                          "use CPython 3.9-3.13" % sys.version_info[:2])


def _start_agent(config, server, args, stop):
    if server is None and config.SERVER_URL.startswith("http://"):
        # Plain HTTP never needs TLS, and http.client imports ssl (5 MB of an
        # idle agent's memory) only if it can: make that import fail here.
        sys.modules.setdefault("ssl", None)
    from octopus import logs
    from octopus.agent.core import Agent, agent_name
    from octopus.agent.identity import has_own_token
    from octopus.agent.isolation import workers_user

    try:  # once, here: whom tasks run as
        run_as = workers_user(config.RUN_AS)
    except ValueError as e:
        raise ConfigError(str(e))
    notes = settings.ensure_data_dir(config)
    logs.setup(config, ("octopus.agent",), config.LOG_FILE)
    for line in notes:
        logging.getLogger("octopus.agent").warning(line)
    if os.geteuid() == 0 and (run_as is None or run_as["uid"] == 0):  # RUN_AS=root too
        logging.getLogger("octopus.agent").warning(
            "Tasks run as root%s: set RUN_AS to run them as another user",
            " and can read the server's files (DATA_DIR, admin.token, the database)"
            if server is not None else "")
    if server is not None:
        token = server.agent_token
        if args.server_url is None and not os.environ.get(settings.ENV_PREFIX + "SERVER_URL"):
            config.SERVER_URL = settings.local_url(server.config.SERVER_HOST, server.port)
    else:
        token = config.AGENT_TOKEN or _read_token(config.path("agent.token"))
    if not token and not has_own_token(config.path("agent"), agent_name(config)):
        raise ConfigError("no agent token: set OCTOPUS_AGENT_TOKEN to the server's agent token "
                          "(the server writes it to DATA_DIR/agent.token); once enrolled, an "
                          "agent starts with its own token alone")
    # An agent alone exits when its credential is refused; beside a server it just stops.
    agent = Agent(config, token, on_exit=stop.set if server is None else None, run_as=run_as)
    try:
        agent.start()
    except OSError as e:  # no run launcher (RUN_AS's folder, no process to be had)
        raise ConfigError("the agent's run launcher could not be started: %s" % e)
    return agent


def _read_token(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stop_agent(agent):
    """agent.stop(), waited for at most AGENT_STOP_LIMIT: SIGTERM always stops us."""
    stopper = threading.Thread(target=agent.stop, name="agent-stop", daemon=True)
    stopper.start()
    stopper.join(AGENT_STOP_LIMIT)
    if stopper.is_alive():
        log.error("The agent did not stop within %gs: exiting anyway", AGENT_STOP_LIMIT)


def _on_signals(server, agent, stop):
    """SIGTERM/SIGINT stop the agent first (its last results still reach a
    local server), then the server."""
    stopping = threading.Event()

    def handler(signum, frame):
        stop.set()
        if server is None:
            return
        if agent is None or stopping.is_set():
            server.release_waiters()
            raise SystemExit(0)  # makes waitress's loop return
        stopping.set()
        log.info("Signal %d received: stopping", signum)
        threading.Thread(target=stop_agent_then_server, daemon=True).start()

    def stop_agent_then_server():
        _stop_agent(agent)
        _thread.interrupt_main()  # runs the handler again in the main thread

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
