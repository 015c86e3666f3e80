"""Rate and concurrency limits through the API (GET /api/limits, PUT /api/limits/{scope}/{name})
and unique submissions (ADR 0038)."""

from __future__ import annotations

import uuid

import httpx
import pytest


def test_a_limit_is_set_listed_and_removed_at_run_time(idle_client: httpx.Client) -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    put = idle_client.put(
        f"/api/limits/queue/{name}", json={"max_concurrency": 3, "rate_limit": "120/m"}
    )
    assert put.status_code == 200
    assert put.json() == {
        "scope": "queue",
        "name": name,
        "max_concurrency": 3,
        "rate": 2.0,
        "burst": 1,
    }
    listed = idle_client.get("/api/limits").json()["limits"]
    assert put.json() in listed

    removed = idle_client.put(f"/api/limits/queue/{name}", json={})
    assert removed.status_code == 200
    assert all(item["name"] != name for item in idle_client.get("/api/limits").json()["limits"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/limits/queue/q", {"max_concurrency": 0}),
        ("/api/limits/queue/q", {"rate_limit": "fast"}),
        ("/api/limits/host/q", {"max_concurrency": 1}),
        ("/api/limits/queue/q", {"max_concurrency": 1, "other": 1}),
    ],
)
def test_bad_limits_are_422(idle_client: httpx.Client, path: str, body: dict[str, object]) -> None:
    response = idle_client.put(path, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_a_unique_repeat_answers_the_first_task(idle_client: httpx.Client) -> None:
    body = {"type": "cpu.primes", "payload": {"limit": 7}, "unique_for": 3600}
    first = idle_client.post("/api/tasks", json=body)
    again = idle_client.post("/api/tasks", json=body)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["created"] is False
