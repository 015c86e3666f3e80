"""GET /api/tasks: every filter and cursor pagination, on a server without workers."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.api.conftest import submit


def _queue() -> str:
    return f"list-{uuid.uuid4().hex[:10]}"


def _ids(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/api/tasks", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


@pytest.fixture
def mix(idle_client: httpx.Client) -> dict[str, Any]:
    """Six tasks in a fresh queue: types, priorities and states differ; two created later."""
    queue = _queue()

    def add(type_: str, payload: Any, priority: str) -> str:
        return submit(
            idle_client,
            {"type": type_, "payload": payload, "priority": priority, "queue": queue},
        )

    early = [
        add("cpu.primes", {"limit": 10}, "HIGH"),
        add("cpu.primes", {"limit": 11}, "LOW"),
        add("cpu.fibonacci", {"n": 3}, "NORMAL"),
        add("cpu.fibonacci", {"n": 4}, "HIGH"),
    ]
    time.sleep(0.05)
    boundary = datetime.now(UTC)
    time.sleep(0.05)
    late = [add("time.sleep", {"seconds": 0}, "LOW"), add("cpu.primes", {"limit": 12}, "NORMAL")]
    cancelled = early[1]
    assert idle_client.delete(f"/api/tasks/{cancelled}").status_code == 200
    return {
        "queue": queue,
        "early": early,
        "late": late,
        "all": early + late,
        "boundary": boundary,
        "cancelled": cancelled,
    }


def test_queue_filter_lists_newest_first(idle_client: httpx.Client, mix: dict[str, Any]) -> None:
    response = idle_client.get("/api/tasks", params={"queue": mix["queue"]})
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    ids = [item["id"] for item in body["items"]]
    assert ids == list(reversed(mix["all"]))
    assert all(item["queue"] == mix["queue"] for item in body["items"])
    created = [item["created_at"] for item in body["items"]]
    assert created == sorted(created, reverse=True)


def test_state_filter(idle_client: httpx.Client, mix: dict[str, Any]) -> None:
    queue = mix["queue"]
    assert _ids(idle_client, queue=queue, state="cancelled") == [mix["cancelled"]]
    queued = _ids(idle_client, queue=queue, state="queued")
    assert set(queued) == set(mix["all"]) - {mix["cancelled"]}
    both = _ids(idle_client, queue=queue, state="queued,cancelled")
    assert set(both) == set(mix["all"])
    repeated = idle_client.get(
        "/api/tasks", params=[("queue", queue), ("state", "QUEUED"), ("state", "cancelled")]
    )
    assert len(repeated.json()["items"]) == 6
    assert _ids(idle_client, queue=queue, state="succeeded") == []


def test_type_filter(idle_client: httpx.Client, mix: dict[str, Any]) -> None:
    queue = mix["queue"]
    fib = _ids(idle_client, queue=queue, type="cpu.fibonacci")
    assert set(fib) == {mix["early"][2], mix["early"][3]}
    two = _ids(idle_client, queue=queue, type="cpu.fibonacci,time.sleep")
    assert set(two) == {mix["early"][2], mix["early"][3], mix["late"][0]}
    assert _ids(idle_client, queue=queue, type="no.such.type") == []


def test_priority_filter(idle_client: httpx.Client, mix: dict[str, Any]) -> None:
    queue = mix["queue"]
    high = idle_client.get("/api/tasks", params={"queue": queue, "priority": "HIGH"}).json()
    assert {item["id"] for item in high["items"]} == {mix["early"][0], mix["early"][3]}
    assert all(item["priority"] == "HIGH" for item in high["items"])
    low = _ids(idle_client, queue=queue, priority="low")
    assert set(low) == {mix["early"][1], mix["late"][0]}
    normal_or_low = _ids(idle_client, queue=queue, priority="NORMAL,LOW")
    assert len(normal_or_low) == 4


def test_created_after_and_before(idle_client: httpx.Client, mix: dict[str, Any]) -> None:
    queue = mix["queue"]
    iso = mix["boundary"].isoformat().replace("+00:00", "Z")
    epoch = str(mix["boundary"].timestamp())
    for when in (iso, epoch):
        assert set(_ids(idle_client, queue=queue, created_after=when)) == set(mix["late"])
        assert set(_ids(idle_client, queue=queue, created_before=when)) == set(mix["early"])
    naive = mix["boundary"].replace(tzinfo=None).isoformat()  # no offset: which zone? refused
    response = idle_client.get("/api/tasks", params={"queue": queue, "created_after": naive})
    assert response.status_code == 422, response.text
    assert _ids(idle_client, queue=queue, created_after=iso, created_before=iso) == []


def test_filters_combine(idle_client: httpx.Client, mix: dict[str, Any]) -> None:
    ids = _ids(
        idle_client,
        queue=mix["queue"],
        type="cpu.primes",
        priority="NORMAL",
        state="queued",
        created_after=str(mix["boundary"].timestamp()),
    )
    assert ids == [mix["late"][1]]


def test_cursor_pages_do_not_overlap(idle_client: httpx.Client) -> None:
    queue = _queue()
    response = idle_client.post(
        "/api/tasks",
        json={
            "tasks": [
                {"type": "cpu.primes", "payload": {"limit": 10 + i}, "queue": queue}
                for i in range(23)
            ]
        },
    )
    created = [item["id"] for item in response.json()["tasks"]]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"queue": queue, "limit": 5}
        if cursor is not None:
            params["cursor"] = cursor
        page = idle_client.get("/api/tasks", params=params).json()
        pages += 1
        assert len(page["items"]) <= 5
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == page["items"][-1]["id"]
        assert pages < 10
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == set(created)
    assert seen == sorted(seen, reverse=True)  # ids sort by creation: newest first


def test_cursor_with_exact_multiple_ends_cleanly(idle_client: httpx.Client) -> None:
    queue = _queue()
    for i in range(4):
        submit(idle_client, {"type": "cpu.primes", "payload": {"limit": 10 + i}, "queue": queue})
    first = idle_client.get("/api/tasks", params={"queue": queue, "limit": 2}).json()
    second = idle_client.get(
        "/api/tasks", params={"queue": queue, "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None


def test_default_limit_is_50(idle_client: httpx.Client) -> None:
    queue = _queue()
    idle_client.post(
        "/api/tasks",
        json={
            "tasks": [
                {"type": "cpu.primes", "payload": {"limit": 10}, "queue": queue} for _ in range(55)
            ]
        },
    )
    page = idle_client.get("/api/tasks", params={"queue": queue}).json()
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"state": "bogus"},
        {"state": "queued,bogus"},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "x"},
        {"limit": "1.5"},
        {"cursor": "abc"},
        {"cursor": "01ARZ3NDEKTSV4RRFFQ69G5FA!"},
        {"cursor": "01arz3ndektsv4rrffq69g5fav"},
        {"priority": "urgent"},
        {"created_after": "yesterday"},
        {"created_after": "nan"},
        {"created_before": "inf"},
        {"created_before": "1e400"},
        {"created_after": "2024-13-01T00:00:00Z"},
    ],
)
def test_bad_list_parameters_are_422(idle_client: httpx.Client, params: dict[str, str]) -> None:
    for path in ("/api/tasks", "/api/dead-letters"):
        if path == "/api/dead-letters" and "state" in params:
            continue
        response = idle_client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"]["code"] == "validation_error"


def test_a_page_ends_at_its_byte_budget_with_a_cursor(idle_client: httpx.Client) -> None:
    """Twelve tasks of ~600 KB each do not come back as one 7 MB page: a page stops before its
    JSON passes 4 MiB and hands a cursor; following it lists every task once, newest first."""
    queue = _queue()
    payload = {"items": ["x" * 1000] * 600}
    ids = [
        submit(idle_client, {"type": "time.batch", "payload": payload, "queue": queue})
        for _ in range(12)
    ]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"queue": queue, "limit": 500}
        if cursor is not None:
            params["cursor"] = cursor
        response = idle_client.get("/api/tasks", params=params)
        assert response.status_code == 200, response.text[:500]
        assert len(response.content) <= 4 * 1024 * 1024
        page = response.json()
        assert page["items"], "a page holds at least one task"
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == seen[-1]
    assert seen == ids[::-1]
    assert pages >= 2
