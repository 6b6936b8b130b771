"""The agent's own credential.

On its first start an agent enrolls (``POST /agent/enroll``) with the shared
agent token and keeps the token it is given in DATA_DIR/agent/identity.token
(mode 0600); every request after that carries its own token, which speaks
only for this agent.  When the server answers that token with 401 (an admin
revoked or forgot the agent) the agent removes the file, logs one line saying
so and stops; started again, it enrolls anew, which works once an admin has
forgotten the name (``DELETE /agents/{name}``).
"""
import logging
import os
import threading

from octopus.agent.client import ServerError

log = logging.getLogger("octopus.agent")

FILE = "identity.token"


class Identity:
    """The token requests carry: this agent's own once enrolled, else the shared one.

    ServerClient asks ``token()`` for each request and reports a 401 to
    ``refused``, so every thread switches tokens together.
    """

    def __init__(self, folder, name, shared_token, on_revoked):
        self.path = os.path.join(folder, FILE)
        self.name = name
        self._shared = shared_token
        self._on_revoked = on_revoked
        self._lock = threading.Lock()
        self._own = _read(self.path)
        self._legacy = False  # the server predates enrollment: the shared token it is
        self.revoked = False

    def token(self):
        return self._own or self._shared

    @property
    def ready(self):
        return bool(self._own) or self._legacy

    def enroll(self, client):
        """Get this agent's own token unless it has one.  Raises ServerError or
        Unreachable when it could not (the caller retries), except that a name
        the server will not enroll stops the agent."""
        if self.ready or self.revoked:
            return
        try:
            reply = client.request("POST", "/agent/enroll", {"client": self.name})
        except ServerError as e:
            if e.status in (404, 405):  # an older server: go on as before
                log.warning("The server does not enroll agents (%s): using the shared agent "
                            "token", e)
                self._legacy = True
                return
            if e.status == 409:
                self._stop("the server will not enroll agent %s (this host has no credential "
                           "for it in %s): %s" % (self.name, self.path, e.message))
            raise
        _write(self.path, reply["token"])
        with self._lock:
            self._own = reply["token"]
        log.info("Agent %s enrolled: its own token is in %s (mode 0600)", self.name, self.path)

    def refused(self, token):
        """A request with ``token`` got 401: if it was this agent's own, the
        server revoked (or forgot) it; anything else is left to the caller."""
        with self._lock:
            if self.revoked or not self._own or token != self._own:
                return
            self._own = None
        try:
            os.remove(self.path)
        except OSError:
            pass
        self._stop("this agent's credential was revoked by the server (401 with its own token): "
                   "stopping. To let %s back, an admin runs DELETE /agents/%s; started again, "
                   "it enrolls anew" % (self.name, self.name))

    def _stop(self, message):
        self.revoked = True
        log.error(message)
        self._on_revoked()


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _write(path, token):
    """Write the token whole or not at all: a new file, mode 0600, renamed into place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
