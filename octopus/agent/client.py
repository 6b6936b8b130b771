"""A small JSON-over-HTTP client for the server, on one keep-alive connection.

Not thread-safe: each agent thread keeps its own.
"""
import http.client
import json
import socket
import urllib.parse


class ServerError(Exception):
    """The server answered with an error status."""

    def __init__(self, status, message):
        super().__init__("%d %s" % (status, message))
        self.status = status
        self.message = message


class Unreachable(Exception):
    """No answer: connection refused, reset or timed out."""


class ServerClient:
    def __init__(self, url, token, timeout=30.0):
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._conn = None

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

    def request(self, method, path, body=None, timeout=None, raw=False):
        """Send one request; returns decoded JSON (or bytes and headers if ``raw``)."""
        headers = {"Authorization": "Bearer " + self._token, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        timeout = self._timeout if timeout is None else timeout
        # A kept-alive connection may have been closed by the server since the
        # last use; retry once on a fresh one before calling it unreachable.
        for attempt in (1, 2):
            conn = self._connection(timeout)
            try:
                conn.request(method, self._base + path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError, socket.timeout) as e:
                self.close()
                if attempt == 2 or isinstance(e, (socket.timeout, ConnectionRefusedError)):
                    raise Unreachable("%s %s: %s" % (method, path, e or type(e).__name__))
        if response.status >= 400:
            raise ServerError(response.status, _error_message(payload))
        if raw:
            return payload, response.headers
        return json.loads(payload) if payload else None


def _error_message(payload):
    try:
        return json.loads(payload)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return payload[:200].decode("utf-8", "replace")

