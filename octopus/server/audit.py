"""The audit log: who changed what, when, from where (GET /audit).

A resource that changes something says what in ``req.context.audit`` (a
list of ``(action, target, detail)``); ``AuditMiddleware`` writes those
entries once the response is a success, with the caller's role, token name
and address; ``note_refusal`` entries are written whatever the answer (an
upload refused is worth knowing about).  Reads are not recorded.  The entry is written right after the
change's own transaction: a crash between the two loses the entry, never
the change.
"""
import logging

from octopus.server import validate
from octopus.server.auth import ADMIN, AGENT
from octopus.store.audit import AUDIT_FILTERS

log = logging.getLogger("octopus.server")

MAX_ID = 2 ** 63 - 1


def note(req, action, target=None, detail=None):
    """Record ``action`` on ``target`` for the audit log, if the request succeeds."""
    entries = getattr(req.context, "audit", None)
    if entries is None:
        entries = req.context.audit = []
    entries.append((action, target, detail))


def note_refusal(req, action, target=None, detail=None):
    """Record ``action`` on ``target`` for the audit log, whatever the answer."""
    entries = getattr(req.context, "audit_always", None)
    if entries is None:
        entries = req.context.audit_always = []
    entries.append((action, target, detail))


class AuditMiddleware:
    def __init__(self, store):
        self._store = store

    def process_response(self, req, resp, resource, req_succeeded):
        entries = getattr(req.context, "audit", None) or []
        if not req_succeeded or not str(resp.status).startswith("2"):
            entries = []
        entries = entries + (getattr(req.context, "audit_always", None) or [])
        if not entries:
            return
        role = getattr(req.context, "role", None) or "unknown"
        actor = getattr(req.context, "token_name", None) or role
        try:
            self._store.add_audit([
                {"role": role, "actor": actor, "address": req.remote_addr, "action": action,
                 "target": target, "detail": detail} for action, target, detail in entries])
        except Exception:  # the change stands; say loudly that its record is missing
            log.exception("Audit entries not written for %s %s: %s", req.method, req.path,
                          [(a, t) for a, t, _ in entries])


class AuditResource:
    def __init__(self, store):
        self._store = store

    def on_get(self, req, resp):
        validate.only_params(req, AUDIT_FILTERS + ("limit", "before"))
        validate.choice_params(req, {"role": (ADMIN, AGENT)})
        limit = validate.int_param(req, "limit", 100, 1, 1000)
        before = validate.int_param(req, "before", None, 1, MAX_ID)
        filters = {k: req.get_param(k) for k in AUDIT_FILTERS if req.get_param(k) is not None}
        entries, more = self._store.list_audit(filters, limit, before)
        resp.media = {"entries": entries, "limit": limit,
                      "next_before": entries[-1]["id"] if more else None}
