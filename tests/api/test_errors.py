"""Bad input: size and depth caps, strict JSON, validation, media type, routing; JSON errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, running

MIB = 1024 * 1024
PRIMES = {"type": "cpu.primes", "payload": {"limit": 10}}


def _error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    if code is not None:
        assert error["code"] == code, error
    return error


def _post(client: httpx.Client, content: bytes | str, **headers: str) -> httpx.Response:
    return client.post(
        "/api/tasks", content=content, headers={"content-type": "application/json", **headers}
    )


# -- size and depth ---------------------------------------------------------------------------


def test_body_over_1_mib_is_413(idle_client: httpx.Client) -> None:
    body = b'{"type":"cpu.sha256","payload":{"data":"' + b"a" * (2 * MIB) + b'"}}'
    _error(_post(idle_client, body), 413, "body_too_large")


def test_chunked_body_over_1_mib_is_413(idle_client: httpx.Client) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"type":"cpu.sha256","payload":{"data":"'
        for _ in range(64):
            sent += 32 * 1024
            yield b"a" * (32 * 1024)
        yield b'"}}'

    response = idle_client.post(
        "/api/tasks", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    _error(response, 413, "body_too_large")


def test_body_of_exactly_1_mib_is_accepted(idle_client: httpx.Client) -> None:
    head, tail = b'{"type":"cpu.sha256","payload":{"data":"', b'"}}'
    body = head + b"a" * (MIB - len(head) - len(tail)) + tail
    assert len(body) == MIB
    response = _post(idle_client, body)
    assert response.status_code == 201
    idle_client.delete(response.headers["location"])


@pytest.mark.parametrize("depth", [33, 200, 100_000])
def test_json_nested_too_deep_is_400(idle_client: httpx.Client, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    body = '{"type":"time.batch","payload":{"items":' + nested + "}}"
    _error(_post(idle_client, body), 400, "json_too_deep")


def test_json_nested_within_the_limit_is_accepted(idle_client: httpx.Client) -> None:
    nested = "[" * 29 + "]" * 29  # + payload object + items list + the body object = 32
    body = '{"type":"time.batch","payload":{"items":' + nested + "}}"
    response = _post(idle_client, body)
    assert response.status_code == 201, response.text
    idle_client.delete(response.headers["location"])


# -- strict JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"cpu.primes","payload":{"limit":10',
        b'{"type":"cpu.primes","payload":{"limit":10}} trailing',
        b"{'type':'cpu.primes'}",
        b"",
        b"   ",
        b'\xef\xbb\xbf{"type":"cpu.primes","payload":{"limit":10}}',
    ],
)
def test_malformed_json_is_400(idle_client: httpx.Client, body: bytes) -> None:
    _error(_post(idle_client, body), 400, "invalid_json")


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"\xff\xfe"}',
        b'{"type":"cpu.primes","payload":{"limit":10},"queue":"\xc3\x28"}',
        b'{"type":"time.batch","payload":{"items":["\xed\xa0\x80"]}}',  # encoded surrogate
    ],
)
def test_invalid_utf8_is_400_invalid_json(idle_client: httpx.Client, body: bytes) -> None:
    _error(_post(idle_client, body), 400, "invalid_json")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
@pytest.mark.parametrize("where", ["timeout", "payload"])
def test_nan_and_infinity_are_400(idle_client: httpx.Client, literal: str, where: str) -> None:
    if where == "timeout":
        body = '{"type":"cpu.primes","payload":{"limit":10},"timeout":' + literal + "}"
    else:
        body = '{"type":"time.batch","payload":{"items":[' + literal + "]}}"
    _error(_post(idle_client, body), 400, "invalid_json")


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**PRIMES, "timeout": "x"}, "validation_error"),
        ({**PRIMES, "max_attempts": "3"}, "validation_error"),
        ({**PRIMES, "priority": ["HIGH"]}, "validation_error"),
        ({**PRIMES, "queue": 7}, "validation_error"),
        ({"type": 5}, "validation_error"),
        ({"type": "cpu.primes", "payload": {"limit": "x"}}, "invalid_payload"),
        ({"type": "cpu.primes", "payload": {"limit": 1}}, "invalid_payload"),
        ({"type": "cpu.primes", "payload": {"limit": 10, "extra": 1}}, "invalid_payload"),
        ({"type": "cpu.primes", "payload": None}, "invalid_payload"),
        ({"type": "time.sleep", "payload": {"seconds": -1}}, "invalid_payload"),
        ({**PRIMES, "bogus": 1}, "validation_error"),
        ({"tasks": [PRIMES], "bogus": 1}, "validation_error"),
        ({"payload": {"limit": 10}}, "validation_error"),
        ({"type": "no.such.type"}, "unknown_task_type"),
        ({"type": "bad type!"}, "validation_error"),
        ({**PRIMES, "timeout": 0}, "validation_error"),
        ({**PRIMES, "timeout": -5}, "validation_error"),
        ({**PRIMES, "timeout": 7 * 24 * 3600 + 1}, "validation_error"),
        ({**PRIMES, "max_attempts": 0}, "validation_error"),
        ({**PRIMES, "max_attempts": 1001}, "validation_error"),
        ({**PRIMES, "priority": 3}, "validation_error"),
        ({**PRIMES, "priority": -1}, "validation_error"),
        ({**PRIMES, "priority": "urgent"}, "validation_error"),
        ({**PRIMES, "delay": -1}, "validation_error"),
        ({**PRIMES, "delay": 10**12}, "validation_error"),
        ({**PRIMES, "run_at": "not a date"}, "validation_error"),
        ({**PRIMES, "run_at": "2024-01-01T00:00:00Z", "delay": 5}, "validation_error"),
        ({**PRIMES, "queue": ""}, "validation_error"),
        ({**PRIMES, "queue": "q" * 129}, "validation_error"),
        ({**PRIMES, "idempotency_key": ""}, "validation_error"),
        ({**PRIMES, "idempotency_key": "k" * 257}, "validation_error"),
        ([], "validation_error"),
        ("just a string", "validation_error"),
        (0, "validation_error"),
        (True, "validation_error"),
        ({"tasks": []}, "validation_error"),
        ({"tasks": "x"}, "validation_error"),
        ({"tasks": [PRIMES, {"type": "no.such.type"}]}, "unknown_task_type"),
        ({"tasks": [PRIMES] * 1001}, "validation_error"),
    ],
)
def test_invalid_submissions_are_422(idle_client: httpx.Client, body: Any, code: str) -> None:
    _error(idle_client.post("/api/tasks", json=body), 422, code)


def test_json_null_body_is_422(idle_client: httpx.Client) -> None:
    _error(_post(idle_client, b"null"), 422, "validation_error")


def test_batch_of_1000_is_accepted(idle_client: httpx.Client) -> None:
    response = idle_client.post("/api/tasks", json={"tasks": [PRIMES] * 1000})
    assert response.status_code == 201
    assert len(response.json()["tasks"]) == 1000


# -- media type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ],
)
def test_non_json_content_type_is_415(idle_client: httpx.Client, content_type: str) -> None:
    response = idle_client.post(
        "/api/tasks",
        content=b'{"type":"cpu.primes","payload":{"limit":10},"queue":"media-type"}',
        headers={"content-type": content_type},
    )
    _error(response, 415, "unsupported_media_type")
    assert idle_client.get("/api/tasks", params={"queue": "media-type"}).json()["items"] == []


def test_missing_content_type_is_read_as_json(idle_client: httpx.Client) -> None:
    response = idle_client.post(
        "/api/tasks", content=b'{"type":"cpu.primes","payload":{"limit":10}}'
    )
    assert "content-type" not in response.request.headers
    assert response.status_code == 201


def test_json_content_types_are_accepted(idle_client: httpx.Client) -> None:
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.taskengine+json",
    ):
        response = idle_client.post(
            "/api/tasks",
            content=b'{"type":"cpu.primes","payload":{"limit":10}}',
            headers={"content-type": content_type},
        )
        assert response.status_code == 201, content_type


# -- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/api", "/api/nope", "/api/tasks/x/y/z", "/api/queues/q", "/robots.txt"]
)
def test_unknown_route_is_404_json(idle_client: httpx.Client, path: str) -> None:
    _error(idle_client.get(path), 404, None)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/tasks"),
        ("DELETE", "/api/tasks"),
        ("PATCH", "/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ("POST", "/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ("GET", "/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV/retry"),
        ("GET", "/api/queues/q/pause"),
        ("POST", "/api/workers"),
        ("DELETE", "/healthz"),
        ("POST", "/openapi.json"),
        ("OPTIONS", "/api/tasks"),
    ],
)
def test_wrong_method_is_405_json(idle_client: httpx.Client, method: str, path: str) -> None:
    _error(idle_client.request(method, path), 405, "method_not_allowed")


def test_405_lists_the_allowed_methods(idle_client: httpx.Client) -> None:
    response = idle_client.put("/api/tasks")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_head_is_allowed_on_get_routes(idle_client: httpx.Client) -> None:
    assert idle_client.head("/api/tasks").status_code == 200
    assert idle_client.head("/healthz").status_code == 200


# -- stored values the API cannot show back (one isolated server: they poison listings) --------


@pytest.fixture(scope="module")
def scratch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("api-scratch"), name="scratch", args=("--no-workers",)
    ) as srv:
        yield srv


@pytest.mark.parametrize("run_at", [1e300, -1e300, 1e12])
def test_out_of_range_run_at_is_422(scratch_server: Server, run_at: float) -> None:
    with scratch_server.client() as c:
        response = c.post("/api/tasks", json={**PRIMES, "run_at": run_at})
        if response.status_code == 201:  # stored: the listing must still work
            task_id = response.json()["id"]
            looked_up = c.get(f"/api/tasks/{task_id}")
            listed = c.get("/api/tasks")
            c.delete(f"/api/tasks/{task_id}")
            assert looked_up.status_code == 200 and listed.status_code == 200
        _error(response, 422, "validation_error")


def test_run_at_in_range_is_accepted(idle_client: httpx.Client) -> None:
    for run_at in ("2020-01-01T00:00:00Z", "2020-01-01T00:00:00+00:00", 0, 1_700_000_000.5):
        response = idle_client.post("/api/tasks", json={**PRIMES, "run_at": run_at})
        assert response.status_code == 201, (run_at, response.text)
        view = idle_client.get(response.headers["location"]).json()
        assert view["run_at"].startswith(("2020-01-01T00:00:00", "1970-01-01", "2023-11-14"))


def test_scratch_server_restarts_cleanly_after_errors(tmp_path: Path) -> None:
    """A server that answered only errors still stops with exit code 0 (asserted by running)."""
    with running(tmp_path, name="errors-only", args=("--no-workers",)) as srv, srv.client() as c:
        for _ in range(20):
            assert c.post("/api/tasks", content=b"{").status_code == 400


# -- values that cannot be stored -------------------------------------------------------------

BATCH = '{"type": "time.batch", "payload": {"items": [1, %s]}}'
UNSTORABLE = [
    pytest.param(BATCH % "1000000000000000000000000000000", "$.items[1]", id="10**30"),
    pytest.param(BATCH % "18446744073709551616", "$.items[1]", id="2**64"),
    pytest.param(BATCH % "-9223372036854775809", "$.items[1]", id="-2**63-1"),
    pytest.param(BATCH % '{"n": [18446744073709551616]}', "$.items[1].n[0]", id="nested"),
    pytest.param(BATCH % ("9" * 400), "$.items[1]", id="400-digits"),
    pytest.param(BATCH % '"\\ud800"', "$.items[1]", id="lone-high-surrogate"),
    pytest.param(BATCH % '"a\\udc80b"', "$.items[1]", id="lone-low-surrogate"),
    pytest.param('{"type": "cpu.sha256", "payload": {"data": "x\\ud83d"}}', "$.data", id="sha256"),
]


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one HTTP/1.1 request on an open connection; read its whole response."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def post_request(port: int, body: bytes) -> bytes:
    return (
        f"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def check_unstorable(server: Server, body: bytes, where: str) -> None:
    """422 naming the value; then the same connection still answers a good submission."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        status, headers, content = exchange(sock, post_request(server.port, body))
        assert status == 422, content
        error = json.loads(content)["error"]
        assert error["code"] == "invalid_payload", error
        assert "cannot be stored" in error["message"] and where in error["message"], error
        assert headers.get("connection", "").lower() != "close", headers
        good = json.dumps(PRIMES).encode()
        status, _, content = exchange(sock, post_request(server.port, good))
        assert status == 201, content  # the keep-alive connection survived the 422


@pytest.mark.parametrize(("payload", "where"), UNSTORABLE)
def test_unstorable_payload_value_is_422_and_keeps_the_connection(
    idle_server: Server, payload: str, where: str
) -> None:
    check_unstorable(idle_server, payload.encode(), where)


@pytest.mark.parametrize(("payload", "where"), UNSTORABLE)
def test_unstorable_payload_value_in_a_batch_is_422_naming_the_task(
    idle_server: Server, payload: str, where: str
) -> None:
    body = f'{{"tasks": [{json.dumps(PRIMES)}, {payload}]}}'.encode()
    check_unstorable(idle_server, body, where)
    with socket.create_connection((idle_server.host, idle_server.port), timeout=30) as sock:
        _, _, content = exchange(sock, post_request(idle_server.port, body))
    assert json.loads(content)["error"]["message"].startswith("tasks[1]: "), content


def test_largest_storable_integers_are_accepted(idle_client: httpx.Client) -> None:
    items = [2**64 - 1, -(2**63), "\U0001f600"]
    response = idle_client.post(
        "/api/tasks", json={"type": "time.batch", "payload": {"items": items}}
    )
    assert response.status_code == 201, response.text
    task = idle_client.get(response.json()["location"]).json()
    assert task["payload"]["items"] == items
