"""The agent's own credential.

On its first start an agent makes itself a token (32 random bytes), writes it
with its name to DATA_DIR/agent/identity.token (mode 0600) and enrolls it
(``POST /agent/enroll``, with the shared agent token): the server keeps its
sha256.  Writing first makes enrolling safe to repeat: if the reply is lost,
the agent proposes the same token again and the server answers as before.
Every request after that carries the agent's own token, which speaks only
for this agent.

A 409 refusing the proposed token (the server's answer never says why)
makes the agent propose a new one at its next try; a 409 refusing the name
stops it.

A 401 saying the credential was revoked stops the agent (its file removed;
started again, it enrolls anew once an admin forgets the name).  A 401 for
a token the server does not know (the agent was forgotten, or the database
is new or restored) makes the agent enroll its token again, not stop.
"""
import logging
import os
import secrets
import threading

from octopus.agent.client import ServerError

log = logging.getLogger("octopus.agent")

FILE = "identity.token"
REVOKED = "was revoked"  # in the server's 401 message for a revoked agent's token


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
        self._own = _read(self.path, name)  # this agent's token, enrolled or not yet
        self._enrolled = bool(self._own)    # a token from the file was enrolled once
        self._legacy = False  # the server predates enrollment: the shared token it is
        self.revoked = False

    def token(self):
        # No shared token (an enrolled agent may start without one): "" gets a
        # 401 while enroll() says why the agent cannot enroll again.
        return self._own if self._enrolled else (self._shared or "")

    @property
    def ready(self):
        return self._enrolled or self._legacy

    def enroll(self, client):
        """Enroll this agent's token unless that is done.  Raises ServerError or
        Unreachable when it could not (the caller retries), except that a name
        the server will not enroll stops the agent."""
        if self.ready or self.revoked:
            return
        if not self._shared:
            self._stop("agent %s has to enroll (again: the server does not know the token in "
                       "%s) and has no shared agent token to do it with: set "
                       "OCTOPUS_AGENT_TOKEN to the server's agent token"
                       % (self.name, self.path))
            return
        with self._lock:
            if not self._own:
                self._own = secrets.token_urlsafe(32)
                _write(self.path, self.name, self._own)  # before it is sent: see above
            proposed = self._own
        try:
            # Not enrolled yet, so the client sends the shared token.
            client.request("POST", "/agent/enroll", {"client": self.name, "token": proposed})
        except ServerError as e:
            if e.status in (404, 405):  # an older server: go on as before
                log.warning("The server does not enroll agents (%s): using the shared agent "
                            "token", e)
                self._legacy = True
                return
            if e.status == 409 and e.field == "token":  # not the name: the token was refused
                log.warning("The server refused the token agent %s proposed (%s): making a new "
                            "one", self.name, e.message)
                with self._lock:
                    if self._own == proposed:
                        self._own = None  # the next try makes and writes a new one
                raise
            if e.status == 409:
                self._stop("the server will not enroll agent %s with the token in %s (another "
                           "host has the name, or an admin revoked it): %s"
                           % (self.name, self.path, e.message))
            raise
        with self._lock:
            self._enrolled = True
        log.info("Agent %s enrolled: its own token is in %s (mode 0600)", self.name, self.path)

    def refused(self, token, message=""):
        """A request with ``token`` got 401: if it was this agent's own, the server
        revoked it (stop) or does not know it (enroll it again)."""
        with self._lock:
            if self.revoked or not self._enrolled or token != self._own:
                return
            self._enrolled = False
            if REVOKED not in message:
                log.warning("The server does not know this agent's token (forgotten by an "
                            "admin, or a new or restored database): enrolling it again")
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


def has_own_token(folder, name):
    """Whether agent ``name`` keeps its own token in ``folder``: then it starts
    without the shared agent token, which only enrolling needs."""
    return _read(os.path.join(folder, FILE), name) is not None


def _read(path, name):
    """The token in ``path`` if it is ``name``'s (a renamed host enrolls anew)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split()
    except OSError:
        return None
    if len(lines) == 2 and lines[0] == name:
        return lines[1]
    if lines:
        log.warning("%s holds another agent's token (the name is %s now): enrolling anew",
                    path, name)
    return None


def _write(path, name, token):
    """Write name and token whole or not at all: a new file, mode 0600, renamed into place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("%s %s\n" % (name, token))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
