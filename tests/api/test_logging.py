"""Structured request logs on stderr, and secrets from payloads never in them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.api.conftest import Server, in_state, submit, wait_task


def _wait_for_line(server: Server, match: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log_lines():
            if all(line.get(k) == v for k, v in match.items()):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line with {match}")


def test_every_request_is_logged_as_a_json_line(server: Server, client: httpx.Client) -> None:
    cases = [
        ("GET", "/healthz", 200),
        ("POST", "/api/tasks", 422),
        ("GET", "/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV", 404),
        ("PUT", "/api/tasks", 405),
    ]
    for method, path, status in cases:
        request_id = f"log-{uuid.uuid4().hex}"
        response = client.request(
            method, path, json={"type": "no.such"}, headers={"X-Request-ID": request_id}
        )
        assert response.status_code == status
        assert response.headers["x-request-id"] == request_id
        line = _wait_for_line(server, {"request_id": request_id})
        assert line["event"] == "request"
        assert line["method"] == method
        assert line["path"] == path
        assert line["status"] == status
        assert isinstance(line["latency_ms"], int | float) and line["latency_ms"] >= 0
        assert line["level"] == "info"
        assert "timestamp" in line


def test_generated_request_ids_are_logged(server: Server, client: httpx.Client) -> None:
    response = client.get("/api/queues")
    request_id = response.headers["x-request-id"]
    line = _wait_for_line(server, {"request_id": request_id})
    assert line["path"] == "/api/queues" and line["status"] == 200


def test_oversized_request_id_is_replaced(server: Server, client: httpx.Client) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "x" * 65})
    assert response.headers["x-request-id"] != "x" * 65


def test_failed_task_payload_secrets_stay_out_of_the_logs(
    server: Server, client: httpx.Client
) -> None:
    secret = "hunter2"
    failing = [
        {  # refused: a private address (SSRF rule); the body carries the secret
            "type": "io.http",
            "payload": {
                "url": "http://127.0.0.1:9/login",
                "method": "POST",
                "json": {"password": secret, "user": "alice"},
                "headers": {"X-Api-Key": secret, "Authorization": f"Bearer {secret}"},
            },
            "max_attempts": 1,
        },
        {  # fails at run time: no such database; the secret is a bound parameter
            "type": "io.sqlite",
            "payload": {
                "database": "missing.db",
                "sql": "SELECT * FROM users WHERE password = :password",
                "params": {"password": secret},
            },
            "max_attempts": 1,
        },
    ]
    ids = [submit(client, body) for body in failing]
    for task_id in ids:
        view = wait_task(client, task_id, in_state("dead", "succeeded"))
        assert view["state"] == "dead", view
        _wait_for_line(server, {"event": "task failed", "task_id": task_id})
    refused = client.post(
        "/api/tasks", json={"type": "cpu.primes", "payload": {"password": secret}}
    )
    assert refused.status_code == 422
    time.sleep(0.2)
    logs = server.stderr() + server.stdout_path.read_text()
    assert secret not in logs
