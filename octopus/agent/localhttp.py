"""The HTTP side of the agent's local API (agent/localapi.py): http.server
with bounded threads and a deadline for each whole request.

A request is first read (request line, headers, body), then handled.  Reading
must be done within REQUEST_DEADLINE in all, however slowly the bytes come: a
deadline for each read alone let a client sending a byte a second hold a
thread for ever.  Requests being read and requests being handled have caps of
their own (MAX_READING, MAX_HANDLING; past them a 503 at once), so clients
too slow to finish a request cannot take the places of those that do.
"""
import http.server
import io
import json
import logging
import socket
import threading
import time

log = logging.getLogger("octopus.agent")

MAX_BODY = 1024 * 1024
MAX_HANDLING = 16      # requests handled at once
MAX_READING = 64       # connections whose request is still being read
REQUEST_DEADLINE = 10.0  # seconds a client has to send its whole request
WRITE_TIMEOUT = 10.0   # seconds a client has to take the reply


class ApiError(Exception):
    def __init__(self, status, message, field=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.headers = headers or {}


def error_body(message, field=None):
    return {"error": {"message": message, "field": field}}


class _Deadline:
    """A socket whose reads all end by ``deadline`` (time.monotonic())."""

    def __init__(self, sock, deadline):
        self._sock = sock
        self._deadline = deadline

    def recv_into(self, buffer, nbytes=0):
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the request was not received within %gs" % REQUEST_DEADLINE)
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer, nbytes)

    def __getattr__(self, name):  # what socket.SocketIO asks of its socket besides
        return getattr(self._sock, name)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api, address):
        self.api = api  # handle(method, target, headers, read_body) -> (status, body)
        self.reading = threading.BoundedSemaphore(MAX_READING)
        self.handling = threading.BoundedSemaphore(MAX_HANDLING)
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        # Bounded, so no local process can make the agent start threads without end.
        if not self.reading.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)


def _refuse(sock):
    body = json.dumps(error_body("too many requests at once; try again")).encode()
    try:
        sock.settimeout(1.0)
        sock.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    except OSError:
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "octopus-agent"
    sys_version = ""
    timeout = REQUEST_DEADLINE

    def setup(self):
        super().setup()
        self._stage = "reading"  # then "handling", then "done": which cap it holds
        deadline = time.monotonic() + REQUEST_DEADLINE
        self.rfile = io.BufferedReader(socket.SocketIO(_Deadline(self.connection, deadline),
                                                       "rb"))

    def finish(self):
        try:
            super().finish()
        finally:
            self._release()

    def _release(self):
        held = {"reading": self.server.reading, "handling": self.server.handling}.get(
            self._stage)
        self._stage = "done"
        if held is not None:
            held.release()

    def __getattr__(self, name):
        # http.server answers a method it has no do_X for with an HTML 501:
        # every method goes through one place, so it is a JSON 404, 401 or 405.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _handle(self):
        body, refused = self._read_whole_body()
        self._release()  # read: it leaves the readers' cap for the handlers'
        if not self.server.handling.acquire(blocking=False):
            return self._reply(503, error_body("too many requests at once; try again"))
        self._stage = "handling"
        self.connection.settimeout(WRITE_TIMEOUT)

        def read_body():
            if refused is not None:
                raise refused
            return body

        headers = {}
        try:
            status, reply = self.server.api.handle(self.command, self.path, self.headers,
                                                   read_body)
        except ApiError as e:
            status, reply, headers = e.status, error_body(e.message, e.field), e.headers
        except Exception:  # a bug here: logged with its traceback, never sent
            log.exception("Local API: %s %s failed", self.command, self.path.split("?")[0][:200])
            status, reply = 500, error_body("internal error; see the agent's log")
        self._reply(status, reply, headers)

    def _read_whole_body(self):
        """``(body, None)``, or ``(None, ApiError)`` for the route to raise if
        it reads the body (a 401 still comes before a 413)."""
        try:
            return self._read_body(), None
        except ApiError as e:
            self.close_connection = True
            return None, e

    def _read_body(self):
        if self.headers.get("Transfer-Encoding"):
            raise ApiError(411, "send the body with a Content-Length, not chunked")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number")
        if not 0 <= length <= MAX_BODY:
            raise ApiError(413, "request body is larger than %d bytes" % MAX_BODY)
        try:
            data = self.rfile.read(length)
        except socket.timeout:
            raise ApiError(408, "request not received within %gs" % REQUEST_DEADLINE)
        if len(data) < length:
            raise ApiError(400, "request body is shorter than its Content-Length")
        return data

    def send_error(self, code, message=None, explain=None):
        # http.server's own refusals (a garbled request line, headers too
        # long): JSON like every other answer.
        self.close_connection = True
        self._reply(code, error_body(message or "bad request"))

    def _reply(self, status, body, headers=()):
        data = json.dumps(body).encode("utf-8")
        try:
            self.connection.settimeout(WRITE_TIMEOUT)
            self.send_response(status)
            for name, value in dict(headers).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client left: nothing to tell it
            pass
        self.close_connection = True

    def log_message(self, fmt, *args):
        # The request line only: headers, and so the token, are never logged.
        log.debug("Local API %s: " + fmt, self.client_address[0], *args)
