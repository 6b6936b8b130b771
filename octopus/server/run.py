"""Start the server: store, registry, app, scheduler, maintenance and waitress."""
import logging
import os
import resource
import threading
import time

import apsw
import waitress

from octopus import __version__, logs, resources
from octopus.config import ConfigError, ensure_data_dir
from octopus.plugins import Registry
from octopus.server.app import create_app
from octopus.server.auth import load_or_create_token
from octopus.server import eventloop
from octopus.server.dispatch import Dispatcher
from octopus.server.maintenance import Maintenance
from octopus.server.scheduler import Scheduler
from octopus.store import Store, guard

log = logging.getLogger("octopus.server")

FILES_KEPT = 200  # descriptors left for the database, logs, plugins and pipes
MAX_OPEN_FILES = 1 << 20


def _proxy(config):
    """waitress's proxy settings: only TRUSTED_PROXY may tell the client's address."""
    if not config.TRUSTED_PROXY:
        return {}
    return {"trusted_proxy": config.TRUSTED_PROXY, "trusted_proxy_count": 1,
            "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"}}


def open_files_limit():
    """Raise this process's open-files limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as e:
            log.warning("Open files limit stays %d: %s", soft, e)
    return MAX_OPEN_FILES if soft == resource.RLIM_INFINITY else soft

SERVER_LOGGERS = ("octopus.server", "octopus.store", "octopus.scheduler", "octopus.plugins",
                  "octopus.maintenance", "waitress")


def hold_locks(config, db_file):
    """Lock ``<database>.lock`` and ``DATA_DIR/server.lock`` for this process's
    life: one server per database and per data dir (DB_FILE may be elsewhere).
    The ``db`` tools do not take them: they are made to run beside a server."""
    paths = [db_file + ".lock", os.path.join(os.path.abspath(config.DATA_DIR), "server.lock")]
    held = []
    try:
        for path in paths:
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            held.append(guard.lock(path))
    except guard.Locked as e:
        for fd in held:
            os.close(fd)
        raise ConfigError("another server (%s) is using this %s: it holds %s; stop it, or give "
                          "this one its own DATA_DIR and DB_FILE"
                          % (_process(e.pid), "database" if e.path == paths[0] else "DATA_DIR",
                             e.path))
    except OSError as e:
        raise ConfigError("cannot lock %s: %s" % (paths[len(held)], e.strerror or e))
    return held


def _process(pid):
    """``pid 123: python3 octopus.pyz --server``, as far as it can be told."""
    if pid is None:
        return "pid unknown"
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        command = ""
    return "pid %d: %s" % (pid, command[:200]) if command else "pid %d" % pid


class Server:
    """Everything the server runs, built but not yet serving."""

    def __init__(self, config):
        notes = ensure_data_dir(config)
        db_file = config.path(config.DB_FILE or "octopus.db")
        self._locks = hold_locks(config, db_file)  # first: a second server writes nothing
        logs.setup(config, SERVER_LOGGERS, config.LOG_FILE)
        for line in notes:
            log.warning(line)
        logging.getLogger("waitress.queue").addFilter(logs.AtMostEvery(10.0))
        self.config = config
        self.admin_token, admin_file = load_or_create_token(
            config.ADMIN_TOKEN, config.path("admin.token"))
        self.agent_token, agent_file = load_or_create_token(
            config.AGENT_TOKEN, config.path("agent.token"))
        for role, path in (("admin", admin_file), ("agent", agent_file)):
            if path:
                log.warning("Generated the %s token into %s (mode 0600)", role, path)
        try:
            self.store = Store(db_file, client_timeout=config.CLIENT_TIMEOUT,
                               retry_max_delay=config.RETRY_MAX_DELAY)
        except (apsw.Error, OSError, RuntimeError, guard.DatabaseUnusable) as e:
            raise ConfigError("DB_FILE=%s cannot be used: %s" % (db_file, e))
        if config.PLUGINS_DIR:
            folders = [config.path(config.PLUGINS_DIR)]
            if not os.path.isdir(folders[0]):
                raise ConfigError("PLUGINS_DIR=%s is not a folder" % folders[0])
        else:  # the bundled ones, and uploads kept in the data dir
            folders = [str(resources.bundled_plugins_dir()), config.path("plugins")]
        self.registry = Registry(folders)
        self.registry.plugins()
        self.dispatcher = Dispatcher(config.MAX_WAITERS, config.MAX_POLL_RATE,
                                     max_delay=config.CLIENT_TIMEOUT / 3)
        try:  # these read the store: a corrupt one is found here, said in one line
            # Cancels asked for before a restart are found in the store on next asks.
            self.dispatcher.cancel(self.store.agents_with_cancels())
            self.scheduler = Scheduler(config, self.store, self.dispatcher)
            self.maintenance = Maintenance(config, self.store)
            app = create_app(config, self.store, self.registry, self.dispatcher,
                             self.admin_token, self.agent_token, str(resources.static_dir()))
        except guard.DatabaseUnusable as e:
            self.store.close()
            raise ConfigError("DB_FILE=%s cannot be used: %s" % (db_file, e))
        # Each waiting agent holds a thread: size the pool for waiters plus work.
        try:
            self.http = self._listen(app, config)
        except OSError as e:
            self.store.close()
            raise ConfigError("cannot listen on SERVER_HOST=%s SERVER_PORT=%s: %s"
                              % (config.SERVER_HOST, config.SERVER_PORT, e.strerror or e))
        log.info("Octopus %s server on http://%s:%d (database %s, plugins %s)", __version__,
                 config.SERVER_HOST, self.port, db_file, self.registry.folder)

    @staticmethod
    def _listen(app, config):
        # Agents keep a connection open each; with the epoll loop an open idle
        # connection costs nothing per turn, so the file limit is the limit.
        limit = max(1000, open_files_limit() - FILES_KEPT)
        server = waitress.create_server(
            app, host=config.SERVER_HOST, port=config.SERVER_PORT,
            threads=config.THREADS + config.MAX_WAITERS, asyncore_use_poll=True,
            connection_limit=limit, backlog=4096,
            channel_timeout=max(120, config.LONG_POLL_TIMEOUT * 2),
            max_request_body_size=16 << 20, ident="octopus", clear_untrusted_proxy_headers=True,
            **_proxy(config))
        loop = "epoll" if eventloop.install(server) else "poll"
        log.info("Accepting up to %d connections (%s loop)", limit, loop)
        return server

    @property
    def port(self):
        return int(self.http.effective_port)

    def serve(self):
        self.scheduler.start()
        self.maintenance.start()
        threading.Thread(target=self._check_database, name="db-check", daemon=True).start()
        try:
            self.http.run()
        finally:
            self.close()

    def _check_database(self):
        """Read every page once, beside the work: a database corrupt where start-up
        did not look is found now (every route then answers 503), not by the first
        request that happens on a bad page."""
        started = time.monotonic()
        try:
            problem = self.store.quick_check()
        except guard.DatabaseUnusable:
            return  # found by a read: said already
        except Exception as e:  # e.g. the server stopping meanwhile
            log.warning("Database check at start-up not done: %s", e)
            return
        if problem is None:
            log.info("Database check at start-up: ok in %.2fs", time.monotonic() - started)

    def release_waiters(self):
        """Answer every held long-poll now; called as the server starts to stop."""
        self.dispatcher.close()

    def close(self):
        self.maintenance.stop()
        self.scheduler.stop()
        self.store.close()
        for fd in self._locks:
            os.close(fd)
        log.info("Server stopped")



