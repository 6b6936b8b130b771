"""The server's epoll loop (octopus.server.eventloop) under a real server process."""
import json
import resource
import socket

import pytest

from octopus.harness import ADMIN_TOKEN, finishes_within, wait_for

IDLE = 1500  # more than waitress's former limit of 1,000 connections


@pytest.fixture
def server(cluster):
    cluster.start_server()
    return cluster


def _open_files(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip("this machine allows %d open files" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def _request(sock, path):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                  % (path, ADMIN_TOKEN)).encode())


def _response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([h.split(b":")[1] for h in head.split(b"\r\n")
                  if h.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(head.split()[1]), body


def test_many_idle_connections_stay_open_and_each_is_answered(server):
    _open_files(IDLE + 200)
    socks = []
    try:
        for _ in range(IDLE):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
        # Idle connections cost the loop nothing; a request on any is answered.
        status, _ = server.api().call("GET", "/health")
        assert status == 200
        for sock in socks:
            _request(sock, "/health")
        answered = sum(_response(sock)[0] == 200 for sock in socks)
        assert answered == IDLE
        for sock in socks[::2]:  # half of them close; the rest ask again
            sock.close()
        for sock in socks[1::2]:
            _request(sock, "/agents")
            assert _response(sock)[0] == 200
    finally:
        for sock in socks:
            sock.close()


def test_a_response_larger_than_one_send_arrives_whole(server):
    api = server.api()
    big = "x" * (900 * 1024)  # many of waitress's 18 kB sends, flushed by the loop
    status, task = api.call("POST", "/tasks", {"plugin": "echo", "action": "echo",
                                               "args": [big], "owner": "nobody"})
    assert status == 201, task
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        for _ in range(3):  # and again on the same connection
            _request(sock, "/tasks/" + task["id"])
            status, body = _response(sock)
            assert status == 200 and json.loads(body)["args"] == [big]
    finally:
        sock.close()


def test_a_client_gone_mid_request_does_not_stall_the_others(server):
    api = server.api()
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\"")
        sock.close()
    wait_for(lambda: api.call("GET", "/health")[0] == 200, timeout=10, what="/health answers")


def test_no_answer_waits_for_the_loops_once_a_second_sweep(cluster):
    """A lost wake-up would still be answered, by the sweep, a second late:
    100 requests in a row would take 100 s."""
    cluster.start_server()
    api = cluster.api()

    def hundred_requests():
        for i in range(50):
            assert api.call("POST", "/tasks", {"plugin": "echo", "action": "echo", "args": [i],
                                               "owner": "nobody"})[0] == 201
            assert api.call("GET", "/health")[0] == 200

    finishes_within(30, hundred_requests, "100 requests in a row (100 s if each waited)")


def test_a_server_on_several_sockets_runs_every_one_on_the_loop():
    """An address resolving to several (localhost: 127.0.0.1 and ::1) makes a
    MultiSocketServer, whose listeners each make their own channels."""
    import http.client
    import threading

    import waitress

    from octopus.server import eventloop

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = waitress.create_server(app, listen="127.0.0.1:0 127.0.0.1:0")
    assert eventloop.install(server) is not None
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _, port in server.effective_listen:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

            def thirty_requests():
                for _ in range(30):
                    conn.request("GET", "/")
                    assert conn.getresponse().read() == b"ok"

            finishes_within(15, thirty_requests, "30 requests in a row (30 s if each waited)")
            conn.close()
    finally:
        server.close()
        thread.join(10)
