"""The operator's actions over HTTP: purge a queue, bulk actions, scheduled and retrying."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import READ_TOKEN, Server, running, submit

PRIMES = {"type": "cpu.primes", "payload": {"limit": 10}}


def _until(check: Callable[[], Any], what: str, bound: float = 20.0) -> Any:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {bound} s: {what}")


def _queue(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _state(client: httpx.Client, task_id: str) -> str | None:
    response = client.get(f"/api/tasks/{task_id}")
    return None if response.status_code == 404 else response.json()["state"]


def test_purge_deletes_the_queued_tasks_of_one_queue(idle_client: httpx.Client) -> None:
    queue, other = _queue("purge"), _queue("spared")
    doomed = [submit(idle_client, {**PRIMES, "queue": queue}) for _ in range(3)]
    kept = submit(idle_client, {**PRIMES, "queue": other})

    unconfirmed = idle_client.post(f"/api/queues/{queue}/purge", json={"confirm": False})
    assert unconfirmed.status_code == 422
    assert [_state(idle_client, i) for i in doomed] == ["queued"] * 3

    response = idle_client.post(f"/api/queues/{queue}/purge", json={"confirm": True})
    assert response.status_code == 200
    assert response.json() == {"queue": queue, "purged": 3}
    assert [_state(idle_client, i) for i in doomed] == [None] * 3
    assert _state(idle_client, kept) == "queued"


def test_bulk_by_ids_and_by_filter_say_how_many_they_touched(idle_client: httpx.Client) -> None:
    queue = _queue("bulk")
    ids = [submit(idle_client, {**PRIMES, "queue": queue}) for _ in range(4)]

    one = idle_client.post("/api/bulk", json={"action": "cancel", "ids": ids[:1]})
    assert one.json() == {"action": "cancel", "touched": 1}
    every = {"action": "cancel", "filter": {"queue": [queue]}}
    assert idle_client.post("/api/bulk", json=every).json()["touched"] == 3
    replay = {"action": "replay", "filter": {"queue": [queue], "state": ["cancelled"]}}
    assert idle_client.post("/api/bulk", json=replay).json()["touched"] == 4
    assert idle_client.post("/api/bulk", json=every).json()["touched"] == 4
    delete = {"action": "delete", "filter": {"queue": [queue]}}
    assert idle_client.post("/api/bulk", json=delete).json()["touched"] == 4
    assert [_state(idle_client, i) for i in ids] == [None] * 4

    for bad in (
        {"action": "cancel"},
        {"action": "cancel", "ids": ids, "filter": {}},
        {"action": "explode", "ids": ids},
        {"action": "cancel", "ids": []},
    ):
        assert idle_client.post("/api/bulk", json=bad).status_code == 422, bad


def test_scheduled_lists_future_tasks_only(idle_client: httpx.Client) -> None:
    queue = _queue("sched")
    later = [submit(idle_client, {**PRIMES, "queue": queue, "delay": 3600}) for _ in range(3)]
    now = submit(idle_client, {**PRIMES, "queue": queue})

    page = idle_client.get("/api/scheduled", params={"queue": queue, "limit": 2}).json()
    rest = idle_client.get(
        "/api/scheduled", params={"queue": queue, "limit": 2, "cursor": page["next_cursor"]}
    ).json()
    listed = [item["id"] for item in page["items"] + rest["items"]]
    assert listed == sorted(later, reverse=True)  # newest first: by id
    assert now not in listed
    retrying = idle_client.get("/api/retrying", params={"queue": queue}).json()
    assert retrying == {"items": [], "next_cursor": None}


def test_a_read_token_cannot_purge_or_bulk(auth_server: Server) -> None:
    with auth_server.client(headers={"Authorization": f"Bearer {READ_TOKEN}"}) as reader:
        assert reader.get("/api/scheduled").status_code == 200
        purge = reader.post("/api/queues/q/purge", json={"confirm": True})
        assert purge.status_code == 403
        bulk = reader.post("/api/bulk", json={"action": "delete", "filter": {}})
        assert bulk.status_code == 403


def test_task_types_list_this_servers_types_with_their_limits(client: httpx.Client) -> None:
    response = client.get("/api/types")
    assert response.status_code == 200
    types = {view["name"]: view for view in response.json()["types"]}
    primes = types["cpu.primes"]
    assert primes["submittable"] is True
    assert primes["executor"] in {"async", "thread", "process"}
    assert primes["timeout"] > 0 and primes["max_attempts"] >= 1
    assert len(primes["instances"]) == 1  # the serving process runs it


def test_periodic_tasks_listed_disabled_and_enabled(tmp_path: Path) -> None:
    entry = {
        "name": "tick",
        "cron": "* * * * * */5",
        "type": "time.sleep",
        "payload": {"seconds": 0},
    }
    env = {"TASKENGINE_CRON": json.dumps([entry])}
    with running(tmp_path, name="cron", env=env) as server, server.client() as c:
        [view] = _until(lambda: c.get("/api/periodic").json()["periodic"], "the entry")
        assert (view["name"], view["cron"], view["enabled"]) == ("tick", "* * * * * */5", True)
        assert view["next_slot"] is not None
        disabled = c.post("/api/periodic/tick/disable")
        assert disabled.json() == {"name": "tick", "enabled": False}
        [view] = c.get("/api/periodic").json()["periodic"]
        assert view["enabled"] is False and view["next_slot"] is None
        assert c.post("/api/periodic/tick/enable").json()["enabled"] is True
        missing = c.post("/api/periodic/nope/disable")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "periodic_not_found"
        assert c.get("/api/queues").json()["queues"] == []  # the switch is no queue


def test_me_says_the_scope_of_the_token(client: httpx.Client, auth_server: Server) -> None:
    assert client.get("/api/me").json() == {"scope": "admin"}  # an open server
    with auth_server.client(headers={"Authorization": f"Bearer {READ_TOKEN}"}) as reader:
        assert reader.get("/api/me").json() == {"scope": "read"}
    with auth_server.client() as anonymous:
        assert anonymous.get("/api/me").status_code == 401


def test_bulk_cancel_by_state_blocked_takes_the_blocked_tasks_only(
    idle_client: httpx.Client,
) -> None:
    queue = _queue("blocked")
    parent = submit(idle_client, {**PRIMES, "queue": queue})
    children = [
        submit(idle_client, {**PRIMES, "queue": queue, "depends_on": [parent]}) for _ in range(3)
    ]
    assert [_state(idle_client, i) for i in children] == ["blocked"] * 3
    listed = idle_client.get("/api/tasks", params={"queue": queue, "state": "blocked"}).json()
    assert sorted(item["id"] for item in listed["items"]) == sorted(children)

    cancel = {"action": "cancel", "filter": {"queue": [queue], "state": ["blocked"]}}
    response = idle_client.post("/api/bulk", json=cancel)

    assert response.status_code == 200, response.text
    assert response.json() == {"action": "cancel", "touched": 3}
    assert [_state(idle_client, i) for i in children] == ["cancelled"] * 3
    assert _state(idle_client, parent) == "queued"
