"""A small JSON-over-HTTP client for the server, on one keep-alive connection.

Not thread-safe: each agent thread keeps its own.
"""
import http.client
import json
import logging
import random
import socket
import urllib.parse

BACKOFF_CAP = 30.0


class ServerError(Exception):
    """The server answered with an error status."""

    def __init__(self, status, message, field=None):
        super().__init__("%d %s" % (status, message))
        self.status = status
        self.message = message
        self.field = field  # the request field the server names, if any


class Unreachable(Exception):
    """No answer: connection refused, reset or timed out."""


class ServerClient:
    def __init__(self, url, token, timeout=30.0):
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self._token = token  # a str, or an Identity: its token may change, and it hears of 401s
        self.timeout = timeout  # seconds per request, unless a request says otherwise
        self._conn = None
        self.last_status = None

    def _connection(self, timeout):
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout)
        else:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        return self._conn

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method, path, body=None, timeout=None, raw=False, data=None,
                content_type="application/json"):
        """Send one request with JSON ``body`` (or bytes ``data``); returns the
        decoded JSON reply (or bytes and headers if ``raw``).  The reply's
        status stays in ``last_status``."""
        token = self._token if isinstance(self._token, str) else self._token.token()
        headers = {"Authorization": "Bearer " + token, "Accept": "application/json"}
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
        if data is not None:
            headers["Content-Type"] = content_type
        timeout = self.timeout if timeout is None else timeout
        for attempt in (1, 2):
            # A kept-alive connection the server has closed since its last use
            # fails at once: one more try on a fresh one, never after a timeout.
            reused = self._conn is not None and self._conn.sock is not None
            conn = self._connection(timeout)
            try:
                conn.request(method, self._base + path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError, socket.timeout) as e:
                self.close()
                if attempt == 2 or not reused or isinstance(e, socket.timeout):
                    raise Unreachable("%s %s: %s" % (method, path, e or type(e).__name__))
        self.last_status = response.status
        if response.status >= 400:
            error = ServerError(response.status, *_error_of(payload))
            if response.status == 401 and not isinstance(self._token, str):
                self._token.refused(token, error.message)
            raise error
        if raw:
            return payload, response.headers
        return json.loads(payload) if payload else None


def _error_of(payload):
    """The ``(message, field)`` of an error reply (its text, if it is not ours)."""
    try:
        error = json.loads(payload)["error"]
        return error["message"], error.get("field")
    except (ValueError, KeyError, TypeError):
        return " ".join(payload[:200].decode("utf-8", "replace").split()), None


class Backoff:
    """Exponential backoff with full jitter: spreads reconnecting agents out."""

    def __init__(self, base=0.5, cap=BACKOFF_CAP, rand=random.random):
        self._base, self._cap, self._rand = base, cap, rand
        self._failures = 0

    def next_delay(self):
        delay = min(self._cap, self._base * (2 ** self._failures)) * (0.5 + self._rand() / 2)
        self._failures = min(self._failures + 1, 16)
        return delay

    def reset(self):
        self._failures = 0


def local_address(server_url):
    """The local address this host reaches ``server_url`` from (no packet is sent)."""
    host = urllib.parse.urlsplit(server_url).hostname
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((socket.gethostbyname(host), 9))
            return s.getsockname()[0]
    except OSError:
        return None


def log_failure(what, error, delay=None, log=logging.getLogger("octopus.agent")):
    """A network or server failure is a warning; anything else is a bug: log its traceback."""
    retry = "" if delay is None else "; retrying in %.1fs" % delay
    if isinstance(error, (Unreachable, ServerError)):
        log.warning("%s failed: %s%s", what, error, retry)
    else:
        log.exception("%s failed unexpectedly%s", what, retry)
