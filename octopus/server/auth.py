"""Two roles, each with a bearer token: admin (everything) and agent.

Tokens come from settings or are generated once into files (mode 0600) in the
data dir.  They are compared in constant time and never logged.
"""
import hmac
import logging

import falcon

from octopus import config
from octopus.server.errors import ApiError

log = logging.getLogger("octopus.server")

ADMIN = "admin"
AGENT = "agent"
METRICS = "metrics"  # the admin token, or METRICS_TOKEN when set
PUBLIC = "public"

# In config now (the agent makes its local API token the same way); run.py takes it from here.
load_or_create_token = config.load_or_create_token


class AuthMiddleware:
    """Checks the bearer token against the role each resource asks for.

    Resources declare ``auth = {"GET": AGENT, ...}`` (or one role for all
    methods); the default is ADMIN.  An admin token passes everywhere.
    """

    def __init__(self, admin_token, agent_token, metrics_token=""):
        self._tokens = ((admin_token.encode(), ADMIN), (agent_token.encode(), AGENT))
        if metrics_token:
            self._tokens += ((metrics_token.encode(), METRICS),)

    def _role_of(self, req):
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = token.strip().encode("utf-8", "replace")
        role = None
        for expected, name in self._tokens:
            # Check both so timing does not tell which one matched.
            if hmac.compare_digest(given, expected) and role is None:
                role = name
        return role

    def process_resource(self, req, resp, resource, params):
        if resource is None:
            return
        wanted = getattr(resource, "auth", ADMIN)
        if isinstance(wanted, dict):
            wanted = wanted.get(req.method, ADMIN)
        if wanted == PUBLIC:
            return
        role = self._role_of(req)
        if role is None:
            raise ApiError(falcon.HTTP_401, "missing or wrong token; send Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
        if wanted == METRICS and role in (ADMIN, METRICS):
            pass
        elif wanted != role and role != ADMIN:
            raise ApiError(falcon.HTTP_403, "this route needs the %s token" % wanted)
        req.context.role = role
