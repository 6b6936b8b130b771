"""Every error the API returns: ``{"error": {"message": ..., "field": ...}}``."""
import json
import logging
import re

import apsw
import falcon

from octopus import nesting
from octopus.store.guard import DatabaseUnusable

log = logging.getLogger("octopus.server")

MAX_BODY = 1024 * 1024
# A \uD800-\uDFFF escape: JSON allows a lone one, UTF-8 (and so SQLite) does not.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class ApiError(falcon.HTTPError):
    def __init__(self, status, message, field=None, headers=None):
        super().__init__(status, description=message, headers=headers)
        self.field = field


def bad_request(message, field=None):
    return ApiError(falcon.HTTP_400, message, field)


def not_found(message):
    return ApiError(falcon.HTTP_404, message)


def conflict(message, field=None):
    return ApiError(falcon.HTTP_409, message, field)


def serialize_error(req, resp, exc):
    message = exc.description or exc.title or str(exc.status)
    if isinstance(exc, falcon.HTTPRouteNotFound) or (exc.status == falcon.HTTP_404 and not exc.description):
        message = "no such route: %s %s" % (req.method, req.path)
    elif isinstance(exc, falcon.HTTPMethodNotAllowed):
        message = "method %s is not allowed on %s" % (req.method, req.path)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps({"error": {"message": message,
                                      "field": getattr(exc, "field", None)}}).encode()


def handle_unexpected(req, resp, exc, params):
    """A bug on our side: log it with its traceback, answer 500 without one.

    The database being busy or its disk full is not a bug: 503, one log line.
    Nor is its file gone or corrupt: 503 naming the file (logged once, when found).
    """
    if isinstance(exc, DatabaseUnusable):
        raise unusable(str(exc))
    if isinstance(exc, (apsw.BusyError, apsw.FullError)):
        reason = ("the database is busy (locked by another process?)"
                  if isinstance(exc, apsw.BusyError) else "the database's disk is full")
        log.error("%s %s failed: %s: %s", req.method, req.path, reason, exc)
        raise ApiError(falcon.HTTP_503, reason + "; nothing was changed, try again later",
                       headers={"Retry-After": "5"})
    log.exception("Unhandled error on %s %s", req.method, req.path)
    raise ApiError(falcon.HTTP_500, "internal server error; see the server log")


def unusable(why):
    return ApiError(falcon.HTTP_503, why, headers={"Retry-After": "30"})


def read_json(req, kind=dict, max_bytes=MAX_BODY, max_depth=nesting.MAX_DEPTH, items=None):
    """The request body as JSON of type ``kind``; 400/413 otherwise.

    Arrays and objects may nest ``max_depth`` levels under each field (None:
    any depth the parser takes; the caller checks); a field of an array of
    objects is named ``items[3].field``.
    """
    length = req.content_length
    too_large = ApiError(falcon.HTTP_413, "request body is larger than %d bytes" % max_bytes)
    if length is not None and length > max_bytes:
        raise too_large
    data = req.bounded_stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    if not data.strip():
        raise bad_request("request body is empty; expected a JSON object")
    try:
        value = json.loads(data, parse_constant=_no_constant, parse_float=_finite)
        if _SURROGATE_ESCAPE.search(data):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise too_deep(nesting.deep_field(data, max_depth or nesting.MAX_DEPTH), max_depth, items)
    except ValueError as e:
        raise bad_request("request body is not valid JSON: %s" % (str(e)[:200],))
    if max_depth and nesting.nests_deeper(data, max_depth + (2 if isinstance(value, list) else 1)):
        raise too_deep(nesting.deep_field(data, max_depth), max_depth, items)
    if not isinstance(value, kind):
        names = {dict: "object", list: "array"}
        raise bad_request("request body must be a JSON %s" % " or ".join(
            names[k] for k in (kind if isinstance(kind, tuple) else (kind,))))
    return value


def too_deep(field, max_depth, items=None):
    """400 for JSON nested more than ``max_depth`` levels under ``field``
    (``[3].args`` within an array body, named ``items[3].args``)."""
    if field and field.startswith("[") and items:
        field = items + field
    where = field or "request body"
    return bad_request("%s nests arrays and objects more than %d levels deep"
                       % (where, max_depth or nesting.MAX_DEPTH), field)


def _no_constant(name):
    raise ValueError("%s is not a JSON number" % name)


def _finite(text):
    """1e309 is valid JSON but a Python infinity, which replies would send as bare
    Infinity (not JSON)."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("%s is too large for a JSON number" % text[:50])
    return value
