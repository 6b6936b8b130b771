"""The plugin registry: which plugins exist, their actions and checksums.

Actions are found by parsing the source, never by importing it: plugin code
only ever runs on agents, in a process of its own.  Stdlib only, so the agent
can use the name rules too.
"""
import ast
import hashlib
import keyword
import logging
import os
import threading
import time

log = logging.getLogger("octopus.plugins")

MAX_PLUGIN_BYTES = 1024 * 1024


def valid_name(name):
    """Plugin and action names are identifiers without a leading underscore."""
    return (isinstance(name, str) and 0 < len(name) <= 64 and name.isidentifier()
            and name.isascii() and not name.startswith("_") and not keyword.iskeyword(name))


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
    """Plugins of one folder, rescanned when a file changes (by size and mtime).

    The folder is looked at no more than once per ``recheck`` seconds, so the
    hot path (validating a new task) costs a dict lookup.
    """

    def __init__(self, folder, recheck=1.0, clock=time.monotonic):
        self.folder = folder
        self._lock = threading.Lock()
        self._plugins = {}
        self._stamp = None
        self._recheck = recheck
        self._clock = clock
        self._checked_at = None

    def _scan_stamp(self):
        try:
            entries = sorted(os.scandir(self.folder), key=lambda e: e.name)
        except OSError:
            return ()
        stamps = []
        for entry in entries:
            if entry.name.endswith(".py"):
                st = entry.stat()
                stamps.append((entry.name, st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def plugins(self):
        """Current plugins by name, reloading the folder if it changed."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._recheck:
            return self._plugins
        stamp = self._scan_stamp()
        with self._lock:
            self._checked_at = now
            if stamp != self._stamp:
                self._plugins = self._load(stamp)
                self._stamp = stamp
            return self._plugins

    def _load(self, stamp):
        found = {}
        for filename, _, size in stamp:
            name = filename[:-3]
            if not valid_name(name):
                log.warning("Plugin file %s ignored: not a valid plugin name", filename)
                continue
            path = os.path.join(self.folder, filename)
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
        plugins = self.plugins()
        return sha256("".join("%s:%s;" % (n, plugins[n].sha256) for n in sorted(plugins)).encode())

    def get(self, name):
        return self.plugins().get(name) if valid_name(name) else None
