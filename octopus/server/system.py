"""Routes around the tasks: /health, /plugins, and the dashboard's files."""
import logging
import os
import time

import falcon

from octopus import __version__
from octopus.constants import TaskStatus
from octopus.plugins import MAX_PLUGIN_BYTES, PluginRejected, valid_name
from octopus.server.audit import note, note_refusal
from octopus.server.auth import ADMIN, AGENT, PUBLIC
from octopus.server.errors import ApiError, bad_request, not_found, unusable

log = logging.getLogger("octopus.server")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class HealthResource:
    auth = PUBLIC

    def __init__(self, store, dispatcher, clock=time.time):
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._started = clock()

    def on_get(self, req, resp):
        try:
            self._store.check()
            tasks, running = self._store.counts()
            agents = self._store.online_agents()
        except Exception as e:  # the database is unusable: say so, do not crash
            if self._store.unusable is None:  # else said in the log once already
                log.error("Health check failed: database unusable: %s", e)
            resp.status = falcon.HTTP_503
            resp.media = {"status": "error", "database": "unusable: %s" % e}
            return
        resp.media = {
            "status": "ok",
            "version": __version__,
            "database": "ok",
            "schema_version": self._store.schema_version,
            "uptime": round(self._clock() - self._started, 3),
            "tasks": tasks,
            "pending": tasks.get(TaskStatus.CREATED, 0),
            "active": tasks.get(TaskStatus.ACTIVE, 0),
            "running": running,
            "agents_online": len(agents),
            "agents_waiting": self._dispatcher.waiting(),
        }


class PluginsResource:
    auth = AGENT

    def __init__(self, registry):
        self._registry = registry

    def on_get(self, req, resp):
        plugins = self._registry.plugins()
        resp.media = {"plugins": [plugins[n].to_json() for n in sorted(plugins)],
                      "digest": self._registry.digest()}


class PluginSourceResource:
    """``GET /plugins/{name}``: the plugin's source, for agents to download;
    ``PUT``: an admin uploads one (agents then resync)."""

    auth = {"GET": AGENT, "PUT": ADMIN}

    def __init__(self, registry):
        self._registry = registry

    def on_get(self, req, resp, name):
        plugin = self._registry.get(name)
        if plugin is None:
            raise not_found("no plugin %s" % name[:64])
        resp.content_type = "text/x-python; charset=utf-8"
        resp.set_header("X-Plugin-SHA256", plugin.sha256)
        resp.data = plugin.source

    def on_put(self, req, resp, name):
        try:
            source = self._read_upload(req, name)
            plugin, created = self._registry.add(name, source)
        except PluginRejected as e:
            self._refused(req, name, str(e))
            raise bad_request("plugin %s refused: %s" % (name, e), "source")
        except ApiError as e:
            self._refused(req, name, e.description)
            raise
        log.info("Plugin %s %s by upload (%d actions, sha256 %s)", name,
                 "added" if created else "replaced", len(plugin.actions), plugin.sha256[:12])
        note(req, "plugin.upload", name, {"sha256": plugin.sha256, "created": created})
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.media = plugin.to_json()

    @staticmethod
    def _read_upload(req, name):
        if not valid_name(name):
            raise bad_request("a plugin name is an identifier not starting with _", "name")
        if (req.content_length or 0) > MAX_PLUGIN_BYTES:
            raise ApiError(falcon.HTTP_413, "a plugin is at most %d bytes" % MAX_PLUGIN_BYTES)
        source = req.bounded_stream.read(MAX_PLUGIN_BYTES + 1)
        if len(source) > MAX_PLUGIN_BYTES:
            raise ApiError(falcon.HTTP_413, "a plugin is at most %d bytes" % MAX_PLUGIN_BYTES)
        return source

    @staticmethod
    def _refused(req, name, why):
        log.warning("Plugin upload %s refused: %s", name[:64], why)
        note_refusal(req, "plugin.refused", name[:64], {"reason": why[:500]})


class DashboardResource:
    """``GET /``: the single-page dashboard."""

    auth = PUBLIC

    def __init__(self, static_dir):
        self._index = os.path.join(static_dir, "index.html")

    def on_get(self, req, resp):
        try:
            with open(self._index, "rb") as f:
                resp.data = f.read()
        except OSError:
            raise not_found("the dashboard is not installed")
        resp.content_type = falcon.MEDIA_HTML
        resp.set_headers(SECURITY_HEADERS)

    def on_head(self, req, resp):  # for uptime checks that only look
        self.on_get(req, resp)


class DatabaseGate:
    """Middleware: once the database file is found gone, replaced or corrupt, every
    route answers 503 naming the file (``/health`` says so in its own body; the
    dashboard's files still load, to show it)."""

    def __init__(self, store):
        self._store = store

    def process_resource(self, req, resp, resource, params):
        why = self._store.unusable_lately()  # so reads notice too, within a second
        if why is None or resource is None:  # resource None: no such route, or a static file
            return
        if not isinstance(resource, (HealthResource, DashboardResource)):
            raise unusable(why)


class SecurityHeaders:
    """Middleware adding the dashboard's headers to the static files too.

    ``no-cache`` (revalidate by ETag every time): after an upgrade a browser
    must not mix cached modules of the old version with new ones.
    """

    def process_request(self, req, resp):
        # falcon's static route answers every method with the file, DELETE too.
        if req.path.startswith("/static/") and req.method not in ("GET", "HEAD", "OPTIONS"):
            raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])

    def process_response(self, req, resp, resource, req_succeeded):
        if req.path.startswith("/static/") or req.path == "/":
            resp.set_headers(SECURITY_HEADERS)
            resp.set_header("Cache-Control", "no-cache")
