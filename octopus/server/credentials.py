"""Per-agent credentials: enroll once with the shared agent token, then speak
only for yourself.  Also revoking and forgetting an agent.

The database keeps the sha256 of each token, never the token.  A plain
sha256 is enough here, not a slow password hash: the tokens are 32 random
bytes, so there is nothing to guess from a hash that a slow hash would protect.
"""
import hashlib
import hmac
import logging
import secrets
import re
import threading

import falcon

from octopus.server.audit import note
from octopus.server.auth import AGENT, check_client
from octopus.server.dispatch import hand_out
from octopus.server.errors import ApiError, bad_request, conflict, not_found, read_json
from octopus.server.validate import agent_name

log = logging.getLogger("octopus.server")

ENROLLED = "enrolled"
REVOKED = "revoked"
PROPOSED = re.compile(r"[A-Za-z0-9_-]{43,256}")  # token_urlsafe(32) or longer


def token_hash(token):
    """Hex sha256 of a token (str or bytes)."""
    if isinstance(token, str):
        token = token.encode("utf-8", "replace")
    return hashlib.sha256(token).hexdigest()


class Credentials:
    """The credentials table, held in memory: a request's token is looked up
    here, not in the database.  Every change goes through this object (one
    server per database file), which updates the maps once the change is
    committed, so a revoked token is refused from the next request on.
    """

    def __init__(self, store):
        self._store = store
        self._lock = threading.Lock()
        self._by_hash = {}  # token hash -> agent name, live and revoked
        self._by_name = {}  # agent name -> its row (token_hash, enrolled_at, revoked_at)
        for row in store.credentials():
            self._put(row)

    def _put(self, row):
        old = self._by_name.get(row["name"])
        if old is not None and old["token_hash"] != row["token_hash"]:
            self._by_hash.pop(old["token_hash"], None)
        self._by_name[row["name"]] = row
        if row["token_hash"]:
            self._by_hash[row["token_hash"]] = row["name"]

    def who(self, digest):
        """``(agent name, revoked)`` for a token's hash, or None if it is no agent's.

        A dict lookup on the hash, not a constant-time compare: timing could at
        most tell an attacker about the sha256 of what they sent, not a token.
        """
        with self._lock:
            name = self._by_hash.get(digest)
            if name is None:
                return None
            return name, self._by_name[name]["revoked_at"] is not None

    def state(self, name):
        """ENROLLED, REVOKED, or None for a name that never enrolled."""
        with self._lock:
            row = self._by_name.get(name)
        if row is None:
            return None
        return REVOKED if row["revoked_at"] is not None else ENROLLED

    def enroll(self, name, replacing=None, proposed=None):
        """A token for ``name``: ``proposed`` by the agent, or a new one (None if
        the name is taken: see store.enroll_agent)."""
        token = proposed or secrets.token_urlsafe(32)
        row = self._store.enroll_agent(name, token_hash(token), replacing)
        if row is None:
            return None
        with self._lock:
            self._put(row)
        return token

    def revoke(self, name):
        row = self._store.revoke_agent(name)
        if row is not None:
            with self._lock:
                self._put(row)
        return row

    def forget(self, name):
        found = self._store.forget_agent(name)
        with self._lock:
            row = self._by_name.pop(name, None)
            if row is not None and row["token_hash"]:
                self._by_hash.pop(row["token_hash"], None)
        return found


class EnrollResource:
    """``POST /agent/enroll``: the shared agent token (or the admin's) buys a
    name its own token, once; the agent's own token buys a new one (rotation)."""

    auth = AGENT
    enrollment = True  # the shared token's one route when REQUIRE_ENROLLMENT is on

    def __init__(self, credentials, reserved=()):
        self._credentials = credentials
        # The admin, shared agent and metrics tokens: never an agent's own.
        self._reserved = [t.encode() for t in reserved if t]

    def on_post(self, req, resp):
        body = read_json(req)
        name = agent_name(body.get("client"))
        own = req.context.agent
        if own is not None:
            check_client(req, name)  # an agent rotates only its own token
        replacing = token_hash(_bearer(req)) if own is not None else None
        proposed = _proposed(body)
        if proposed is not None and self._is_reserved(proposed):
            raise _token_refused()
        token = self._credentials.enroll(name, replacing, proposed)
        if token is None:
            if self._credentials.state(name) is None:
                raise _token_refused()  # another agent's: the same answer, so it does not tell
            if self._credentials.state(name) == REVOKED:
                raise conflict("agent %s is revoked; an admin must DELETE /agents/%s before it "
                               "can enroll again" % (name, name))
            raise conflict("agent %s is already enrolled; only its own token may renew it (an "
                           "agent that lost its token needs an admin to DELETE /agents/%s)"
                           % (name, name))
        log.info("Agent %s %s (from %s)", name, "renewed its credential" if own else "enrolled",
                 req.remote_addr)
        note(req, "agent.renew" if own else "agent.enroll", name)
        resp.status = falcon.HTTP_201
        resp.media = {"client": name, "token": token}


    def _is_reserved(self, proposed):
        given = proposed.encode()
        found = False
        for token in self._reserved:  # all compared, so timing does not tell which
            found |= hmac.compare_digest(given, token)
        return found


def _token_refused():
    """Every refusal of a proposed token says the same, whatever the reason (another
    agent's, or a token of the server's own), so no answer tells whose a token is."""
    return conflict("choose another token", "token")


def _proposed(body):
    """A token the agent made itself and wrote down before asking (so a lost
    reply is harmless: asked again with it, the server answers the same)."""
    token = body.get("token")
    if token is None:
        return None
    if not isinstance(token, str) or not PROPOSED.fullmatch(token):
        raise bad_request("token must be 43 to 256 URL-safe characters (A-Z a-z 0-9 - _), "
                          "at least 32 random bytes", "token")
    return token


def _bearer(req):
    return (req.get_header("Authorization") or "").partition(" ")[2].strip()


class AgentResource:
    """``DELETE /agents/{name}``: forget an agent (revoking it first), so the
    name may enroll again."""

    def __init__(self, revoker):
        self._revoker = revoker

    def on_delete(self, req, resp, name):
        row = self._revoker.forget(name)
        if row is None:
            raise not_found("no agent named %s" % name)
        note(req, "agent.forget", name, {"tasks_with_lost_runs": row["tasks"]})
        resp.status = falcon.HTTP_204


class RevokeResource:
    """``POST /agents/{name}/revoke``."""

    def __init__(self, revoker):
        self._revoker = revoker

    def on_post(self, req, resp, name):
        row = self._revoker.revoke(name)
        if row is None:
            raise not_found("no agent named %s" % name)
        note(req, "agent.revoke", name, {"tasks_with_lost_runs": row["tasks"]})
        resp.media = {"name": name, "credential": REVOKED, "enrolled_at": row["enrolled_at"],
                      "revoked_at": row["revoked_at"], "tasks": row["tasks"]}


def _possible(name):
    """Could an agent have this name?"""
    try:
        agent_name(name)
        return True
    except ApiError:
        return False


class Revoker:
    """What revoking does besides the credential: the agent's held requests are
    answered, and its unfinished runs are lost at once (tried again elsewhere,
    as for an agent gone offline) rather than after CLIENT_TIMEOUT."""

    def __init__(self, store, dispatcher, credentials):
        self._store = store
        self._dispatcher = dispatcher
        self._credentials = credentials

    def revoke(self, name):
        """Refuse ``name``'s token from now on; its row, or None if unknown."""
        row = self._credentials.revoke(name) if _possible(name) else None
        return None if row is None else self._settle(name, row, "revoked")

    def forget(self, name):
        """Remove ``name`` and its credential, never marking it revoked: its next
        request finds the token unknown (and enrolls again), not "revoked" (and
        stops)."""
        if not _possible(name) or not self._credentials.forget(name):
            return None
        return self._settle(name, {}, "forgotten")

    def _settle(self, name, row, why):
        self._dispatcher.release_all(name)
        finished, requeued = self._store.lose_runs(name)
        log.warning("Agent %s %s: its token is refused from now on; its unfinished runs are "
                    "recorded as lost (tasks given another try: %s)", name, why,
                    ", ".join(requeued) or "none")
        self._dispatcher.tasks_finished(finished)
        if requeued:
            hand_out(self._store, self._dispatcher, requeued)
        return dict(row, tasks=finished + requeued)

