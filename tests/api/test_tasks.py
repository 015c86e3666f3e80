"""/api/tasks: submit (one, batch, idempotency), look up, cancel and retry, over a real socket."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import httpx

from tests.api.conftest import in_state, submit, wait_task

ULID_CHARS = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _is_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 26 and set(value) <= ULID_CHARS


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, value
    return parsed


# -- submit -----------------------------------------------------------------------------------


def test_submit_one_answers_201_with_location(client: httpx.Client) -> None:
    response = client.post("/api/tasks", json={"type": "cpu.primes", "payload": {"limit": 100}})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "created", "location"}
    assert _is_id(body["id"])
    assert body["created"] is True
    assert body["location"] == f"/api/tasks/{body['id']}"
    assert response.headers["location"] == body["location"]
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")


def test_submitted_task_succeeds_with_the_task_result_shape(client: httpx.Client) -> None:
    task_id = submit(client, {"type": "cpu.primes", "payload": {"limit": 100}})
    view = wait_task(client, task_id, in_state("succeeded", "dead", "cancelled"))
    assert view["state"] == "succeeded", view
    assert view["id"] == task_id
    assert view["type"] == "cpu.primes"
    assert view["payload"] == {"limit": 100}
    assert view["attempt"] == 1
    assert view["cancel_requested"] is False
    result = view["result"]
    assert set(result) == {
        "task_id",
        "status",
        "data",
        "duration",
        "worker_id",
        "completed_at",
        "error",
        "attempt",
    }
    assert result["task_id"] == task_id
    assert result["status"] == "SUCCESS"
    assert result["data"] == {"count": 25, "largest": 97}
    assert isinstance(result["duration"], float) and result["duration"] >= 0
    assert isinstance(result["worker_id"], str) and result["worker_id"]
    assert result["error"] is None
    assert result["attempt"] == 1
    completed = _iso(result["completed_at"])
    assert _iso(view["created_at"]) <= completed
    assert _iso(view["finished_at"]) >= _iso(view["started_at"])
    assert len(view["history"]) == 1
    line = view["history"][0]
    assert set(line) == {
        "attempt",
        "status",
        "worker_id",
        "finished_at",
        "duration",
        "error",
        "traceback",
    }
    assert line["traceback"] is None  # it succeeded
    assert line["attempt"] == 1 and line["status"] == "SUCCESS"
    assert line["worker_id"] == result["worker_id"]
    _iso(line["finished_at"])


def test_keep_result_zero_deletes_the_task_once_it_succeeded(client: httpx.Client) -> None:
    task_id = submit(client, {"type": "cpu.primes", "payload": {"limit": 100}, "keep_result": 0})
    deadline = time.monotonic() + 15
    status = 200
    while status == 200 and time.monotonic() < deadline:
        response = client.get(f"/api/tasks/{task_id}")
        status = response.status_code
        if status == 200:
            assert response.json()["state"] in ("queued", "running"), response.text
            time.sleep(0.02)
    assert status == 404  # nobody reads its result: no record kept


def test_keep_result_out_of_range_is_422(client: httpx.Client) -> None:
    for bad in (-1, 366 * 24 * 3600 + 1, "forever"):
        response = client.post("/api/tasks", json={"type": "cpu.primes", "keep_result": bad})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"


def test_task_view_has_every_field(client: httpx.Client) -> None:
    task_id = submit(
        client,
        {
            "type": "time.sleep",
            "payload": {"seconds": 0},
            "priority": "high",
            "queue": "views",
            "delay": 3600,
            "timeout": 12.5,
            "max_attempts": 3,
        },
    )
    view = client.get(f"/api/tasks/{task_id}").json()
    assert view["state"] == "queued"
    assert view["priority"] == "HIGH"
    assert view["queue"] == "views"
    assert view["timeout"] == 12.5
    assert view["max_attempts"] == 3
    assert view["result"] is None and view["history"] == [] and view["progress"] is None
    assert view["started_at"] is None and view["finished_at"] is None
    assert (_iso(view["run_at"]) - _iso(view["created_at"])).total_seconds() == 3600
    assert client.delete(f"/api/tasks/{task_id}").status_code == 200


def test_a_running_task_shows_its_progress_and_keeps_the_last(client: httpx.Client) -> None:
    items = list(range(12))
    body = {"items": items, "chunk_size": 1, "delay_per_chunk": 0.25}
    task_id = submit(client, {"type": "time.batch", "payload": body})

    view = wait_task(
        client, task_id, lambda v: v["progress"] is not None and v["state"] == "running"
    )
    progress = view["progress"]
    assert progress["total"] == 12 and 0 <= progress["done"] <= 12
    assert progress["note"].startswith("chunk ") and progress["attempt"] == 1
    assert progress["fraction"] == progress["done"] / 12
    _iso(progress["at"])

    done = wait_task(client, task_id, in_state("succeeded"))
    assert done["progress"]["done"] == 12 and done["progress"]["note"] == "chunk 12 of 12"
    listed = client.get("/api/tasks", params={"type": "time.batch", "limit": 500}).json()
    assert [t["progress"]["done"] for t in listed["items"] if t["id"] == task_id] == [12]


def test_a_failed_attempt_shows_its_traceback_in_the_task_not_in_lists(
    client: httpx.Client,
) -> None:
    missing = f"missing-{uuid.uuid4().hex}.txt"
    task_id = submit(client, {"type": "io.file", "payload": {"op": "read", "path": missing}})
    view = wait_task(client, task_id, in_state("dead"))

    [line] = view["history"]
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert "taskengine/builtins/files.py" in line["traceback"]
    assert line["error"].split(":")[0] in line["traceback"]
    listed = client.get("/api/tasks", params={"state": "dead", "limit": 500}).json()["items"]
    [item] = [t for t in listed if t["id"] == task_id]
    assert item["history"][0]["traceback"] is None


def test_batch_answers_aligned_ids(client: httpx.Client) -> None:
    tasks = [{"type": "cpu.primes", "payload": {"limit": n}} for n in (10, 20, 30)]
    tasks.append({"type": "cpu.fibonacci", "payload": {"n": 10}})
    response = client.post("/api/tasks", json={"tasks": tasks})
    assert response.status_code == 201
    items = response.json()["tasks"]
    assert len(items) == 4
    assert len({item["id"] for item in items}) == 4
    for item, sent in zip(items, tasks, strict=True):
        assert item["created"] is True
        assert item["location"] == f"/api/tasks/{item['id']}"
        view = client.get(item["location"]).json()
        assert view["type"] == sent["type"] and view["payload"] == sent["payload"]


def test_batch_is_all_or_nothing_on_a_bad_item(idle_client: httpx.Client) -> None:
    queue = f"batch-{uuid.uuid4().hex[:8]}"
    tasks = [
        {"type": "cpu.primes", "payload": {"limit": 10}, "queue": queue},
        {"type": "cpu.primes", "payload": {"limit": "x"}, "queue": queue},
    ]
    response = idle_client.post("/api/tasks", json={"tasks": tasks})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_payload"
    assert "tasks[1]" in response.json()["error"]["message"]
    assert idle_client.get("/api/tasks", params={"queue": queue}).json()["items"] == []


def test_idempotency_key_same_body_returns_the_same_task(client: httpx.Client) -> None:
    key = f"idem-{uuid.uuid4()}"
    body = {"type": "cpu.primes", "payload": {"limit": 50}}
    first = client.post("/api/tasks", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    again = client.post("/api/tasks", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 200
    assert again.json() == {
        "id": first.json()["id"],
        "created": False,
        "location": first.json()["location"],
    }
    assert again.headers["location"] == first.headers["location"]
    view = client.get(first.headers["location"]).json()
    assert view["idempotency_key"] == key


def test_idempotency_key_with_another_body_is_a_conflict(client: httpx.Client) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = client.post(
        "/api/tasks",
        json={"type": "cpu.primes", "payload": {"limit": 50}},
        headers={"Idempotency-Key": key},
    )
    assert first.status_code == 201
    other = client.post(
        "/api/tasks",
        json={"type": "cpu.primes", "payload": {"limit": 51}},
        headers={"Idempotency-Key": key},
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    other_type = client.post(
        "/api/tasks",
        json={"type": "cpu.fibonacci", "payload": {"n": 5}},
        headers={"Idempotency-Key": key},
    )
    assert other_type.status_code == 409


def test_idempotency_key_in_the_body_and_in_batches(client: httpx.Client) -> None:
    key = f"idem-{uuid.uuid4()}"
    item = {"type": "cpu.primes", "payload": {"limit": 60}, "idempotency_key": key}
    first = client.post("/api/tasks", json={"tasks": [item]})
    assert first.status_code == 201
    again = client.post("/api/tasks", json=item)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["tasks"][0]["id"]
    assert again.json()["created"] is False


def test_idempotency_payloads_are_compared_as_canonical_json(client: httpx.Client) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = client.post(
        "/api/tasks",
        json={"type": "time.batch", "payload": {"items": [1]}},
        headers={"Idempotency-Key": key},
    )
    assert first.status_code == 201
    for items in ([1.0], [True]):
        other = client.post(
            "/api/tasks",
            json={"type": "time.batch", "payload": {"items": items}},
            headers={"Idempotency-Key": key},
        )
        assert other.status_code == 409, items
        assert other.json()["error"]["code"] == "idempotency_conflict"
    reordered = {"payload": {"items": [1]}, "type": "time.batch", "idempotency_key": key}
    assert client.post("/api/tasks", json=reordered).status_code == 200


def test_a_batch_refuses_a_key_used_for_another_request(client: httpx.Client) -> None:
    key = f"idem-{uuid.uuid4()}"
    item = {"type": "cpu.primes", "payload": {"limit": 60}, "idempotency_key": key}
    first = client.post("/api/tasks", json=item)
    assert first.status_code == 201
    other = {**item, "payload": {"limit": 61}}
    response = client.post(
        "/api/tasks", json={"tasks": [{"type": "cpu.primes", "payload": {"limit": 10}}, other]}
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert error["message"].startswith("tasks[1]: ") and first.json()["id"] in error["message"]


def test_a_batch_refuses_one_key_for_two_requests(client: httpx.Client) -> None:
    key = f"idem-{uuid.uuid4()}"
    queue = f"q{uuid.uuid4().hex[:12]}"
    one = {"type": "time.batch", "payload": {"items": [1]}, "queue": queue, "idempotency_key": key}
    two = {**one, "payload": {"items": [1.0]}}
    response = client.post("/api/tasks", json={"tasks": [one, two]})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert client.get("/api/tasks", params={"queue": queue}).json()["items"] == []
    same = client.post("/api/tasks", json={"tasks": [one, one]})
    assert same.status_code == 201
    ids = [item["id"] for item in same.json()["tasks"]]
    assert ids[0] == ids[1]


def test_a_header_key_and_another_body_key_are_refused(client: httpx.Client) -> None:
    key = f"idem-{uuid.uuid4()}"
    body = {"type": "cpu.primes", "payload": {"limit": 10}, "idempotency_key": f"{key}-body"}
    response = client.post("/api/tasks", json=body, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "ambiguous_idempotency_key"
    agreeing = client.post(
        "/api/tasks", json={**body, "idempotency_key": key}, headers={"Idempotency-Key": key}
    )
    assert agreeing.status_code == 201


def test_idempotency_header_is_refused_on_a_batch_and_when_empty_or_long(
    client: httpx.Client,
) -> None:
    batch = {"tasks": [{"type": "cpu.primes", "payload": {"limit": 10}}]}
    response = client.post("/api/tasks", json=batch, headers={"Idempotency-Key": "k"})
    assert response.status_code == 422
    one = {"type": "cpu.primes", "payload": {"limit": 10}}
    for key in ("", "k" * 257):
        response = client.post("/api/tasks", json=one, headers={"Idempotency-Key": key})
        assert response.status_code == 422, key
        assert response.json()["error"]["code"] == "validation_error"


def test_get_unknown_task_is_404(client: httpx.Client) -> None:
    for task_id in ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "nope", "%00"):
        response = client.get(f"/api/tasks/{task_id}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "task_not_found"


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_queued_delayed_task(client: httpx.Client) -> None:
    task_id = submit(client, {"type": "time.sleep", "payload": {"seconds": 1}, "delay": 600})
    response = client.delete(f"/api/tasks/{task_id}")
    assert response.status_code == 200
    assert response.json() == {"id": task_id, "result": "cancelled"}
    assert client.get(f"/api/tasks/{task_id}").json()["state"] == "cancelled"
    again = client.delete(f"/api/tasks/{task_id}")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "task_finished"


def test_cancel_running_task_is_requested_then_cancelled(client: httpx.Client) -> None:
    task_id = submit(client, {"type": "time.sleep", "payload": {"seconds": 30}})
    wait_task(client, task_id, in_state("running"))
    asked = time.monotonic()
    response = client.delete(f"/api/tasks/{task_id}")
    assert response.status_code == 202
    assert response.json() == {"id": task_id, "result": "requested"}
    view = wait_task(client, task_id, in_state("cancelled", "succeeded", "dead"))
    took = time.monotonic() - asked
    assert view["state"] == "cancelled", view
    # the serving process signals its own worker: far below the 10 s heartbeat
    assert took < 12, f"cancel of a running task took {took:.1f} s"
    assert view["result"]["status"] == "CANCELLED"
    assert [line["status"] for line in view["history"]] == ["CANCELLED"]


def test_cancel_finished_task_is_409(client: httpx.Client) -> None:
    task_id = submit(client, {"type": "cpu.primes", "payload": {"limit": 10}})
    wait_task(client, task_id, in_state("succeeded"))
    response = client.delete(f"/api/tasks/{task_id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "task_finished"


def test_cancel_unknown_task_is_404(client: httpx.Client) -> None:
    response = client.delete("/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"


# -- retry ------------------------------------------------------------------------------------


def _dead_task(client: httpx.Client) -> str:
    task_id = submit(
        client,
        {
            "type": "io.file",
            "payload": {"op": "read", "path": f"missing-{uuid.uuid4().hex}.txt"},
            "max_attempts": 1,
        },
    )
    view = wait_task(client, task_id, in_state("dead", "succeeded"))
    assert view["state"] == "dead", view
    assert view["result"]["status"] == "FAILURE"
    assert "does not exist" in view["result"]["error"]
    return task_id


def test_retry_dead_task_queues_it_again(client: httpx.Client) -> None:
    task_id = _dead_task(client)
    dead = client.get("/api/dead-letters", params={"limit": 500}).json()["items"]
    assert task_id in {item["id"] for item in dead}
    response = client.post(f"/api/tasks/{task_id}/retry")
    assert response.status_code == 200
    view = response.json()
    assert view["id"] == task_id
    # The answer is the task as read just after the retry: a worker may have taken it already.
    assert view["state"] in ("queued", "running") or len(view["history"]) == 2, view
    # it runs again and, the file still missing, dies again with two history lines
    again = wait_task(client, task_id, lambda v: v["state"] == "dead" and len(v["history"]) == 2)
    assert again["result"]["status"] == "FAILURE"


def test_retry_cancelled_task_queues_it_again(client: httpx.Client) -> None:
    task_id = submit(client, {"type": "time.sleep", "payload": {"seconds": 0}, "delay": 600})
    assert client.delete(f"/api/tasks/{task_id}").status_code == 200
    response = client.post(f"/api/tasks/{task_id}/retry")
    assert response.status_code == 200
    # Due now: a worker may have taken it, or even run it, before the answer was read.
    assert response.json()["state"] in ("queued", "running", "succeeded")
    again = wait_task(client, task_id, in_state("succeeded", "dead", "cancelled"))
    assert again["state"] == "succeeded", again
    assert again["attempt"] == 1


def test_retry_not_dead_task_is_409(client: httpx.Client) -> None:
    queued = submit(client, {"type": "time.sleep", "payload": {"seconds": 0}, "delay": 600})
    succeeded = submit(client, {"type": "cpu.primes", "payload": {"limit": 10}})
    wait_task(client, succeeded, in_state("succeeded"))
    for task_id in (queued, succeeded):
        response = client.post(f"/api/tasks/{task_id}/retry")
        assert response.status_code == 409, task_id
        assert response.json()["error"]["code"] == "not_replayable"
    client.delete(f"/api/tasks/{queued}")


def test_retry_unknown_task_is_404(client: httpx.Client) -> None:
    response = client.post("/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV/retry")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"


def test_a_key_with_a_nul_character_is_refused_and_a_repeat_of_another_is_found(
    client: httpx.Client,
) -> None:
    """A NUL cannot be stored by every broker (PostgreSQL text, SQLite's JSON lookups): it is
    a 422, never a 500; other control characters are kept and a repeat finds the task."""
    one = {"type": "cpu.primes", "payload": {"limit": 10}}
    for field in ("idempotency_key", "unique_key"):
        body = {**one, field: "a\x00b", "unique_for": 60}
        response = client.post("/api/tasks", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"
    key = f"~?\x90«{{7î\x1a\n\U0003d35aè\x02{uuid.uuid4().hex}"
    first = client.post("/api/tasks", json={**one, "idempotency_key": key})
    again = client.post("/api/tasks", json={**one, "idempotency_key": key})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert first.json()["id"] == again.json()["id"]
