"""Slow and fat clients: header size and count caps, a read timeout, a connection bound.

Raw sockets on loopback against real servers; every wait has a generous bound. A refusal is
either the server's answer (431, 408, 503 as JSON) or the connection closed: a server that
closes while the client is still sending may reset the connection before the answer is read.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import Server, running

MIB = 1024 * 1024
WAIT = 15.0  # the longest any test waits for the server to act (its settings are ~1 s)
HEADER_BYTES = 8192
HEADERS = 20
LIMITS = {
    "TASKENGINE_API_MAX_HEADER_BYTES": str(HEADER_BYTES),
    "TASKENGINE_API_MAX_HEADERS": str(HEADERS),
    "TASKENGINE_API_READ_TIMEOUT": "1",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Small limits and a one-second read timeout."""
    with running(
        tmp_path_factory.mktemp("api-slow"), name="slow", args=("--no-workers",), env=LIMITS
    ) as srv:
        yield srv


@contextlib.contextmanager
def connect(server: Server) -> Iterator[socket.socket]:
    """A raw connection to `server`, reads bounded by WAIT."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        yield sock
    finally:
        sock.close()


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" if it closed or reset at once)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def error_code(answer: bytes, status: int) -> str:
    """The JSON error code of a raw HTTP answer, asserting its status."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"content-type: application/json" in head.lower(), head
    code: str = json.loads(body)["error"]["code"]
    return code


def head(lines: list[str]) -> bytes:
    return ("\r\n".join(["GET /healthz HTTP/1.1", "Host: 127.0.0.1", *lines]) + "\r\n\r\n").encode()


def test_one_mib_header_is_refused(idle_server: Server) -> None:
    """The default cap; the issue's case (it was a 200)."""
    with connect(idle_server) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head(["X-Big: " + "a" * MIB]))
        answer = read_answer(sock)
    if answer:
        assert error_code(answer, 431) == "header_too_large"
    with idle_server.client() as c:
        assert c.get("/healthz").status_code == 200


def test_1_mib_header_through_httpx_is_refused(idle_server: Server) -> None:
    with idle_server.client() as c:
        try:
            response = c.get("/healthz", headers={"X-Big": "a" * MIB})
        except httpx.TransportError:
            return  # closed while sending
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "header_too_large"


def test_header_just_over_the_cap_is_431(limited: Server) -> None:
    """Never completed: the server must not wait for the rest of a head it will refuse."""
    partial = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * HEADER_BYTES
    with connect(limited) as sock:
        sock.sendall(partial)
        assert error_code(read_answer(sock), 431) == "header_too_large"


def test_header_within_the_cap_is_served(limited: Server) -> None:
    lines = ["X-Fill: " + "a" * (HEADER_BYTES - 200)]
    assert len(head(lines)) <= HEADER_BYTES
    with connect(limited) as sock:
        sock.sendall(head(lines))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_pipelined_heads_near_the_cap_are_each_counted_alone(limited: Server) -> None:
    one = head(["X-Fill: " + "a" * (HEADER_BYTES - 200)])
    with connect(limited) as sock:
        sock.sendall(one * 3)
        answers = b""
        while answers.count(b"HTTP/1.1 200 ") < 3:
            chunk = sock.recv(65536)
            assert chunk, answers
            answers += chunk
    assert b"HTTP/1.1 4" not in answers


def test_too_many_headers_is_431(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(head([f"X-H{i}: 1" for i in range(HEADERS)]))  # Host + 20
        assert error_code(read_answer(sock), 431) == "header_too_large"
    with connect(limited) as sock:
        sock.sendall(head([f"X-H{i}: 1" for i in range(HEADERS - 1)]))  # Host + 19
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_half_sent_head_is_closed(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = read_answer(sock)  # a socket.timeout here means it was never closed
    assert error_code(answer, 408) == "request_timeout"


def test_trickled_head_is_closed(limited: Server) -> None:
    """A byte every 0.2 s keeps no connection open past the timeout."""
    with connect(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + WAIT
        sock.settimeout(0.2)
        answer = b""
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            break
        else:
            raise AssertionError(f"a trickling client kept its connection for {WAIT} s")
    if answer:
        assert error_code(answer, 408) == "request_timeout"


def test_silent_connection_is_closed(limited: Server) -> None:
    with connect(limited) as sock:
        assert read_answer(sock) == b""


def test_half_sent_body_is_closed(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(
            b"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = read_answer(sock)
    assert not answer.startswith(b"HTTP/1.1 2"), answer[:300]


def test_idle_keep_alive_and_served_requests_still_work(limited: Server) -> None:
    with limited.client() as c:
        for _ in range(3):
            assert c.get("/healthz").status_code == 200
        body = {"type": "cpu.primes", "payload": {"limit": 10}, "delay": 600}
        created = c.post("/api/tasks", json=body)
        assert created.status_code == 201
        assert c.delete(created.headers["location"]).status_code == 200


# -- the connection bound -----------------------------------------------------------------------

MAX_CONNECTIONS = 4


def test_connections_beyond_the_bound_are_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    env = {"TASKENGINE_API_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}
    workdir = tmp_path_factory.mktemp("api-bound")
    with running(workdir, name="bound", args=("--no-workers",), env=env) as srv:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)]
        try:
            held += [
                socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
                for _ in range(MAX_CONNECTIONS - 1)
            ]
            with connect(srv) as extra:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    extra.sendall(head([]))
                answer = read_answer(extra)
            if answer:
                assert error_code(answer, 503) == "too_many_connections"
                assert b"retry-after: 1" in answer.lower()
            # the held ones are served: the bound refuses the newcomer, not them
            held[0].sendall(head([]))
            assert held[0].recv(65536).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + WAIT
        while True:  # the closed ones are forgotten: room again
            with contextlib.suppress(httpx.TransportError), srv.client() as c:
                if c.get("/healthz").status_code == 200:
                    break
            assert time.monotonic() < deadline, "no room after the held connections closed"
            time.sleep(0.05)
