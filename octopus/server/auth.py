"""Who is calling: the admin token, the shared agent token, an agent's own
token (see credentials.py), or the metrics token; and what each may do.

The admin and shared tokens come from settings or are generated once into
files (mode 0600) in the data dir; they are compared in constant time and
never logged.  Repeated failed authentication from one address is answered
with 429 for a while, without looking at the token (FailedAuth).
"""
import collections
import hashlib
import hmac
import logging
import math
import threading
import time

import falcon

from octopus import config
from octopus.server.errors import ApiError

log = logging.getLogger("octopus.server")

ADMIN = "admin"
AGENT = "agent"
METRICS = "metrics"  # the admin token, or METRICS_TOKEN when set
PUBLIC = "public"

FAIL_LIMIT = 20        # failed authentications from one address ...
FAIL_WINDOW = 60.0     # ... within this many seconds: further unknown tokens get 429
GOOD_FOR = 3600.0      # seconds a token that succeeded from an address passes a 429 there
MAX_ADDRESSES = 4096   # addresses whose failures are counted (least recent dropped)
MAX_GOOD = 50000       # (address, token) pairs remembered as good: a fleet behind one NAT fits

# In config now (the agent makes its local API token the same way); run.py takes it from here.
load_or_create_token = config.load_or_create_token


class FailedAuth:
    """Failed authentications per remote address, in a sliding window.

    Past FAIL_LIMIT failures in FAIL_WINDOW seconds, a request from that
    address is refused (429) before its token is checked, unless the token
    succeeded from that address within GOOD_FOR seconds: someone guessing
    tokens is slowed to nothing, agents and admins behind the same address
    (a NAT, a proxy) are not.  Both tables are capped, so memory is bounded
    whatever the number of addresses.
    """

    def __init__(self, clock=time.monotonic, limit=FAIL_LIMIT, window=FAIL_WINDOW):
        self._clock = clock
        self._limit = limit
        self._window = window
        self._lock = threading.Lock()
        self._failures = collections.OrderedDict()  # address -> deque of the last `limit` times
        self._good = collections.OrderedDict()      # (address, token hash) -> last success

    def refused(self, address, digest):
        """Seconds the caller should wait (> 0) if this request is to be refused, else 0."""
        now = self._clock()
        with self._lock:
            times = self._failures.get(address)
            if times is None or len(times) < self._limit or now - times[0] >= self._window:
                return 0
            seen = self._good.get((address, digest))
            if seen is not None and now - seen < GOOD_FOR:
                return 0
            return max(1, math.ceil(times[0] + self._window - now))

    def failed(self, address):
        now = self._clock()
        with self._lock:
            times = self._failures.pop(address, None)
            if times is None:
                times = collections.deque(maxlen=self._limit)
            times.append(now)
            self._failures[address] = times  # most recent last
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)

    def succeeded(self, address, digest):
        key = (address, digest)
        with self._lock:
            self._good.pop(key, None)
            self._good[key] = self._clock()
            while len(self._good) > MAX_GOOD:
                self._good.popitem(last=False)


class AuthMiddleware:
    """Checks the bearer token against the role each resource asks for.

    Resources declare ``auth = {"GET": AGENT, ...}`` (or one role for all
    methods); the default is ADMIN.  An admin token passes everywhere.  An
    agent's own token has the agent role and names its agent
    (``req.context.agent``); agent routes then call ``check_client``.

    Sets on every request ``req.context.role`` (admin, agent, metrics, public,
    or None when refused) and ``req.context.token_name`` (admin, metrics,
    agent for the shared token, or the agent's name for its own token).
    """

    def __init__(self, admin_token, agent_token, metrics_token="", credentials=None,
                 require_enrollment=False, failures=None):
        self._tokens = ((admin_token.encode(), ADMIN), (agent_token.encode(), AGENT))
        if metrics_token:
            self._tokens += ((metrics_token.encode(), METRICS),)
        self._credentials = credentials
        self._require_enrollment = require_enrollment
        self._failures = failures or FailedAuth()

    def _identify(self, given, digest):
        """``(role, token name, agent name or None)``; role None for an unknown token,
        with token name "revoked" for a revoked agent's."""
        role = None
        for expected, name in self._tokens:
            # Check all so timing does not tell which one matched.
            if hmac.compare_digest(given, expected) and role is None:
                role = name
        if role is not None:
            return role, role, None
        found = self._credentials.who(digest) if self._credentials is not None else None
        if found is None:
            return None, None, None
        name, revoked = found
        return (None, "revoked", name) if revoked else (AGENT, name, name)

    def _known_agent(self, digest):
        """Is this the hash of a live agent's own token?  Those are 32 random
        bytes the server made, so there is nothing to guess: past a restart
        (which forgets which tokens worked from where) a guesser behind the
        same address must not lock the fleet out."""
        found = self._credentials.who(digest) if self._credentials is not None else None
        return found is not None and not found[1]

    def process_request(self, req, resp):
        req.context.role = None
        req.context.token_name = None
        req.context.agent = None  # the agent an agent's own token belongs to
        req.context.credentials = self._credentials

    def process_resource(self, req, resp, resource, params):
        if resource is None:
            return
        wanted = getattr(resource, "auth", ADMIN)
        if isinstance(wanted, dict):
            wanted = wanted.get(req.method, ADMIN)
        if wanted == PUBLIC:
            req.context.role = PUBLIC
            return
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        given = token.strip().encode("utf-8", "replace") if scheme.lower() == "bearer" else b""
        digest = hashlib.sha256(given).hexdigest()
        address = req.remote_addr or ""
        wait = self._failures.refused(address, digest)
        if wait and self._known_agent(digest):
            wait = 0  # server-made, unguessable: an agent's own token is never held back
        if wait:
            raise ApiError(falcon.HTTP_429, "too many failed authentications from %s; try again "
                           "in %d s" % (address, wait), headers={"Retry-After": str(wait)})
        role, token_name, agent = self._identify(given, digest) if given else (None, None, None)
        if role is None:
            self._failures.failed(address)
            message = "missing or wrong token; send Authorization: Bearer <token>"
            if token_name == "revoked":
                message = "the credential of agent %s was revoked" % agent
            raise ApiError(falcon.HTTP_401, message, headers={"WWW-Authenticate": "Bearer"})
        self._failures.succeeded(address, digest)
        req.context.role, req.context.token_name, req.context.agent = role, token_name, agent
        if wanted == METRICS and role in (ADMIN, METRICS):
            pass
        elif wanted != role and role != ADMIN:
            raise ApiError(falcon.HTTP_403, "this route needs the %s token" % wanted)
        if (role == AGENT and agent is None and self._require_enrollment
                and not getattr(resource, "enrollment", False)):
            raise ApiError(falcon.HTTP_403, "this server takes the shared agent token only to "
                           "enroll (POST /agent/enroll); use the agent's own token")


def check_client(req, name):
    """``name`` (the body's ``client``) if the caller may speak for that agent, else 403.

    An agent's own token speaks only for its agent; the shared agent token
    only for names that never enrolled; the admin token for any.
    """
    ctx = req.context
    agent = getattr(ctx, "agent", None)
    if getattr(ctx, "role", None) != AGENT:
        return name
    if agent is not None and agent != name:
        raise ApiError(falcon.HTTP_403, "this token is agent %s's; it cannot speak for %s"
                       % (agent, name), "client")
    credentials = getattr(ctx, "credentials", None)
    if agent is None and credentials is not None and credentials.state(name):
        raise ApiError(falcon.HTTP_403, "agent %s has enrolled (or is revoked): the shared "
                       "agent token cannot speak for it; use its own token" % name, "client")
    return name
