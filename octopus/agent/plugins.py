"""The agent's plugin cache: downloaded from the server, checked by sha256.

Files are stored as ``<name>.py`` in the cache folder and replaced atomically,
so a run never sees half a file.
"""
import hashlib
import logging
import os
import threading

from octopus.names import valid_name

log = logging.getLogger("octopus.agent")


class PluginError(Exception):
    pass


class PluginCache:
    def __init__(self, folder, client):
        """``client``: a function making a ServerClient (one per sync or download,
        so threads never share a connection), or one client for one thread."""
        self.folder = folder
        self._new_client = client if callable(client) else (lambda: client)
        self._lock = threading.Lock()  # guards _known only: never held across a request
        self._known = {}  # name -> sha256 of the file on disk
        os.makedirs(folder, exist_ok=True)
        self._scan()

    def _scan(self):
        for entry in os.scandir(self.folder):
            name = entry.name[:-3]
            if entry.name.endswith(".py") and valid_name(name):
                with open(entry.path, "rb") as f:
                    self._known[name] = hashlib.sha256(f.read()).hexdigest()

    def path(self, name):
        return os.path.join(self.folder, name + ".py")

    def sync(self):
        """Fetch every plugin the server lists that is missing or changed here."""
        client = self._new_client()
        try:
            listing = client.request("GET", "/plugins")
            for plugin in listing["plugins"]:
                try:
                    self.ensure(plugin["name"], plugin["sha256"], client)
                except PluginError as e:
                    log.error("%s", e)
            return listing.get("digest")
        finally:
            client.close()

    def ensure(self, name, sha256, client=None):
        """Path of plugin ``name`` with checksum ``sha256``, downloading it if needed."""
        if not valid_name(name):
            raise PluginError("Plugin name %r refused: not an identifier" % (name,))
        with self._lock:
            current = sha256 is not None and self._known.get(name) == sha256
        if not current and client is not None:
            self._download(name, sha256, client)
        elif not current:
            client = self._new_client()
            try:
                self._download(name, sha256, client)
            finally:
                client.close()
        return self.path(name)

    def _download(self, name, expected, client):
        source, headers = client.request("GET", "/plugins/" + name, raw=True)
        actual = hashlib.sha256(source).hexdigest()
        served = headers.get("X-Plugin-SHA256") or expected
        if served is not None and actual != served:
            raise PluginError("Plugin %s refused: sha256 %s does not match the server's %s"
                              % (name, actual[:12], served[:12]))
        if expected is not None and actual != expected:
            # Replaced on the server since this run was handed out: the file is
            # intact (it matches what the server says now), so run the new one.
            log.warning("Plugin %s changed on the server since the run was handed out "
                        "(sha256 %s, now %s): running the current one",
                        name, expected[:12], actual[:12])
        # Two threads may fetch the same plugin at once: each writes its own file.
        tmp = "%s.%d.tmp" % (self.path(name), threading.get_ident())
        with open(tmp, "wb") as f:
            f.write(source)
        os.replace(tmp, self.path(name))
        with self._lock:
            self._known[name] = actual
        log.info("Plugin %s loaded (sha256 %s)", name, actual[:12])
