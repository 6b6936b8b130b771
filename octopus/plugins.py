"""The plugin registry: which plugins exist, their actions and checksums.

Actions are found by parsing the source, never by importing it: plugin code
only ever runs on agents, in a process of its own.  An upload is checked the
same way (syntax, at least one public action), so the server never runs a
line of it; a plugin that parses but fails to import fails its runs on the
agent instead.  Stdlib only, so the agent can use the name rules too.
"""
import ast
import hashlib
import logging
import os
import tempfile
import threading
import time

from octopus.names import valid_name

log = logging.getLogger("octopus.plugins")

MAX_PLUGIN_BYTES = 1024 * 1024


class PluginRejected(ValueError):
    """An upload that is not a usable plugin; the message says why."""


def _syntax_error(e):
    """A SyntaxError of the upload, said with its line (ast gives one but for NUL bytes)."""
    where = "line %d: " % e.lineno if e.lineno else ""
    return PluginRejected("not valid Python: %s%s" % (where, e.msg))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_actions(source):
    """Public top-level functions of a module's source, with their docstrings."""
    tree = ast.parse(source)
    actions = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and valid_name(node.name):
            actions.append({"name": node.name, "doc": ast.get_docstring(node) or "",
                            "signature": "(%s)" % ast.unparse(node.args)})
    return ast.get_docstring(tree) or "", actions


class Plugin:
    def __init__(self, name, path, source):
        self.name = name
        self.path = path
        self.source = source
        self.sha256 = sha256(source)
        self.doc, actions = read_actions(source)
        self.actions = {a["name"]: a for a in actions}

    def to_json(self):
        return {"name": self.name, "sha256": self.sha256, "doc": self.doc,
                "actions": sorted(self.actions), "action_docs": list(self.actions.values())}


class Registry:
    """Plugins of one or more folders (a later folder's file wins over an
    earlier one of the same name), rescanned when a file changes (by size and
    mtime).  Uploads are written to ``upload_dir``, the last folder.

    The folders are looked at no more than once per ``recheck`` seconds, so
    the hot path (validating a new task) costs a dict lookup.
    """

    def __init__(self, folders, recheck=1.0, clock=time.monotonic):
        self.folders = [folders] if isinstance(folders, str) else list(folders)
        self.folder = ", ".join(self.folders)  # for log lines
        self.upload_dir = self.folders[-1]
        self._lock = threading.Lock()
        self._plugins = {}
        self._stamp = None
        self._digest = None
        self._recheck = recheck
        self._clock = clock
        self._checked_at = None

    def _scan_stamp(self):
        stamps = []
        for folder in self.folders:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if not entry.name.endswith(".py"):
                    continue
                try:
                    st = entry.stat()
                except OSError as e:  # a dangling link, a file being replaced
                    log.warning("Plugin file %s skipped: %s", entry.path, e.strerror or e)
                    continue
                stamps.append((entry.path, st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def plugins(self):
        """Current plugins by name, reloading the folder if it changed."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._recheck:
            return self._plugins
        with self._lock:  # scanned under the lock: a scan never undoes a newer one
            self._reload(now)
            return self._plugins

    def _reload(self, now):
        stamp = self._scan_stamp()
        self._checked_at = now
        if stamp != self._stamp:
            self._plugins = self._load(stamp)
            self._stamp = stamp
            # Asked on every heartbeat: worked out once per change.
            self._digest = sha256("".join("%s:%s;" % (n, self._plugins[n].sha256)
                                          for n in sorted(self._plugins)).encode())

    def _load(self, stamp):
        found = {}
        for path, _, size in stamp:
            filename = os.path.basename(path)
            name = filename[:-3]
            if not valid_name(name):
                log.warning("Plugin file %s ignored: not a valid plugin name", path)
                continue
            try:
                if size > MAX_PLUGIN_BYTES:
                    raise ValueError("larger than %d bytes" % MAX_PLUGIN_BYTES)
                with open(path, "rb") as f:
                    found[name] = Plugin(name, path, f.read())
            except (OSError, SyntaxError, ValueError) as e:
                log.error("Plugin %s not loaded: %s", name, e)
                continue
            log.info("Plugin %s loaded (%d actions, sha256 %s)",
                     name, len(found[name].actions), found[name].sha256[:12])
        return found

    def digest(self):
        """One checksum over every plugin; agents resync when it changes."""
        self.plugins()
        return self._digest

    def get(self, name):
        return self.plugins().get(name) if valid_name(name) else None

    def add(self, name, source):
        """Accept an uploaded plugin: parsed (never run), then written to the
        upload folder.  Returns ``(plugin, created)``; raises PluginRejected."""
        if len(source) > MAX_PLUGIN_BYTES:
            raise PluginRejected("larger than %d bytes" % MAX_PLUGIN_BYTES)
        try:
            plugin = Plugin(name, os.path.join(self.upload_dir, name + ".py"), source)
        except SyntaxError as e:
            raise _syntax_error(e)
        except ValueError as e:  # NUL bytes on Pythons before 3.12
            raise PluginRejected("not valid Python: %s" % e)
        if not plugin.actions:
            raise PluginRejected("it has no action: define a public top-level function")
        os.makedirs(self.upload_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.upload_dir, prefix="." + name, suffix=".upload")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(source)
                f.flush()
                os.fsync(f.fileno())
            with self._lock:  # one upload at a time replaces the file and reloads
                created = name not in self._plugins
                os.replace(tmp, plugin.path)
                self._reload(self._clock())
                return self._plugins.get(name), created
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
