"""Each place the OpenAPI document and the server disagreed (issue #13, item 9), pinned.

For every input below, what the document calls valid (checked with jsonschema_rs, formats on)
and what the server accepts must be the same thing, against a real server (SQLite, no workers).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from taskengine.api.openapi import openapi_document
from taskengine.model.task import MAX_DELAY
from tests.api.conftest import Server, submit

jsonschema_rs = pytest.importorskip("jsonschema_rs")

DOC = openapi_document()
PRIMES = {"type": "cpu.primes", "payload": {"limit": 10}}
DAY = 86400.0


def _valid(schema: dict[str, Any], value: Any) -> bool:
    """What the document says about `value` (its $refs resolved against the document)."""
    root = {**schema, "components": DOC["components"]}
    return bool(jsonschema_rs.validator_for(root, validate_formats=True).is_valid(value))


def _param_schema(path: str, method: str, name: str) -> dict[str, Any]:
    params = DOC["paths"][path][method]["parameters"]
    schema: dict[str, Any] = next(p["schema"] for p in params if p["name"] == name)
    return schema.get("items", schema) if schema.get("type") == "array" else schema


LIST_CASES = [  # (parameter, one value, the server takes it): the old server took the junk
    ("created_before", "", False),
    ("created_before", "1700000000", True),
    ("created_before", "1700000000.25", True),
    ("created_before", "2026-01-31T12:00:00Z", True),
    ("created_before", "2026-01-31t12:00:00.5z", True),
    ("created_before", "2016-12-31T23:59:60Z", True),  # a leap second is a date-time
    ("created_before", "2026-01-31T12:00:00+05:30", True),
    ("created_before", "2026-01-31T12:00:00", False),  # no offset: which zone?
    ("created_before", "2026-01-31", False),
    ("created_before", "1e9", False),
    ("created_after", "2026-02-30T00:00:00Z", False),
    ("cursor", "", False),
    ("cursor", "01ARZ3NDEKTSV4RRFFQ69G5FAV", True),
    ("cursor", "81ARZ3NDEKTSV4RRFFQ69G5FAV", False),  # past 2**48 ms: no id starts with 8
    ("cursor", "01arz3ndektsv4rrffq69g5fav", False),
    ("state", "queued", True),
    ("state", "QUEUED,dead", True),
    ("state", "", False),
    ("state", " queued", False),
    ("state", "queued,", False),
    ("priority", "low,HIGH", True),
    ("priority", "High", False),
    ("type", "cpu.primes,io.file", True),
    ("type", "not a name", False),
    ("queue", "", False),
]


@pytest.mark.parametrize(("name", "value", "accepted"), LIST_CASES)
def test_list_parameters_take_what_the_document_says(
    idle_client: httpx.Client, name: str, value: str, accepted: bool
) -> None:
    assert _valid(_param_schema("/api/tasks", "get", name), value) is accepted
    response = idle_client.get("/api/tasks", params={name: value, "limit": 1})
    assert response.status_code == (200 if accepted else 422), response.text


@pytest.mark.parametrize(("value", "accepted"), [("10", True), ("1_0", False), ("\u0665", False)])
def test_limit_is_plain_digits(idle_client: httpx.Client, value: str, accepted: bool) -> None:
    response = idle_client.get("/api/tasks", params={"limit": value})
    assert response.status_code == (200 if accepted else 422), response.text


@pytest.mark.parametrize(
    ("queue", "accepted"),
    [("doc-check", True), ("a.b:c_d-1", True), ("bad name", False), ("é", False), ("-x", False)],
)
def test_queue_path_takes_what_the_document_says(
    idle_client: httpx.Client, queue: str, accepted: bool
) -> None:
    for action in ("pause", "resume"):
        path = f"/api/queues/{{queue}}/{action}"
        assert _valid(_param_schema(path, "post", "queue"), queue) is accepted
        response = idle_client.post(f"/api/queues/{queue}/{action}")
        assert response.status_code == (200 if accepted else 422), response.text


def test_task_id_pattern_is_the_ids_the_server_makes(idle_client: httpx.Client) -> None:
    task_id = submit(idle_client, {**PRIMES, "delay": 600})
    documented = _param_schema("/api/tasks/{task_id}", "get", "task_id")
    assert _valid(documented, task_id)
    for junk in ("nope", task_id.lower(), task_id[:-1], "8" + task_id[1:], task_id + "0"):
        assert not _valid(documented, junk), junk
        for method, url in (
            ("GET", f"/api/tasks/{junk}"),
            ("DELETE", f"/api/tasks/{junk}"),
            ("POST", f"/api/tasks/{junk}/retry"),
        ):
            response = idle_client.request(method, url)
            assert response.status_code == 404, (method, url, response.text)
            assert response.json()["error"]["code"] == "task_not_found"


def _submit_schema_valid(body: dict[str, Any]) -> bool:
    return _valid(
        DOC["paths"]["/api/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"],
        body,
    )


@pytest.mark.parametrize(
    ("delay", "accepted"),
    [(365 * DAY, True), (MAX_DELAY, True), (MAX_DELAY + 1, False), (-1, False)],
)
def test_delay_up_to_366_days(idle_client: httpx.Client, delay: float, accepted: bool) -> None:
    body = {**PRIMES, "delay": delay}
    assert _submit_schema_valid(body) is accepted
    response = idle_client.post("/api/tasks", json=body)
    assert response.status_code == (201 if accepted else 422), response.text


def _run_at(idle_client: httpx.Client, task_id: str) -> str:
    view: dict[str, Any] = idle_client.get(f"/api/tasks/{task_id}").json()
    return str(view["run_at"])


@pytest.mark.parametrize(
    ("run_at", "stored"),
    [
        ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z"),
        ("1969-07-20T20:17:40Z", "1970-01-01T00:00:00Z"),  # in the past: now, clamped
        ("2030-01-01t00:00:00+01:00", "2029-12-31T23:00:00Z"),
        (1e9, "2001-09-09T01:46:40Z"),
    ],
)
def test_run_at_takes_every_documented_date_time(
    idle_client: httpx.Client, run_at: Any, stored: str
) -> None:
    body = {**PRIMES, "run_at": run_at}
    assert _submit_schema_valid(body)
    assert _run_at(idle_client, submit(idle_client, body)) == stored


@pytest.mark.parametrize("run_at", ["2030-01-01T00:00:00", "2030-01-01 00:00:00Z", "tomorrow", -1])
def test_run_at_refuses_what_the_document_refuses(idle_client: httpx.Client, run_at: Any) -> None:
    body = {**PRIMES, "run_at": run_at}
    assert not _submit_schema_valid(body)
    response = idle_client.post("/api/tasks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_delay_and_run_at_together_are_documented_as_refused(idle_client: httpx.Client) -> None:
    both = {**PRIMES, "delay": 5, "run_at": "2030-01-01T00:00:00Z"}
    assert not _submit_schema_valid(both)
    assert idle_client.post("/api/tasks", json=both).status_code == 422
    assert _submit_schema_valid({**PRIMES, "delay": 5, "run_at": None})


@pytest.mark.parametrize("field", ["priority", "max_attempts"])
def test_a_whole_number_written_as_a_float_is_an_integer(
    idle_client: httpx.Client, field: str
) -> None:
    body = {**PRIMES, "delay": 600, field: 2.0}  # JSON Schema: 2.0 is an integer
    assert _submit_schema_valid(body)
    view = idle_client.get(f"/api/tasks/{submit(idle_client, body)}").json()
    assert view[field] == ("HIGH" if field == "priority" else 2)
    assert idle_client.post("/api/tasks", json={**body, field: 1.5}).status_code == 422


def test_a_non_json_body_is_a_documented_415(idle_client: httpx.Client) -> None:
    response = idle_client.post(
        "/api/tasks", content=json.dumps(PRIMES), headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert "415" in DOC["paths"]["/api/tasks"]["post"]["responses"]


def test_sse_events_match_the_documented_event_schema(idle_server: Server) -> None:
    documented = DOC["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    schema = documented["text/event-stream"]["schema"]
    events: list[dict[str, str]] = []
    event: dict[str, str] = {}
    with (
        httpx.Client(base_url=idle_server.url, timeout=30) as client,
        client.stream("GET", "/api/events") as response,
    ):
        for line in response.iter_lines():
            if not line and event:
                events.append(event)
                event = {}
                if len(events) == 2:
                    break
            elif line.startswith(("event: ", "data: ")):
                field, value = line.split(": ", 1)
                event[field] = value
    assert [e["event"] for e in events] == ["history", "tick"]
    for one in events:
        assert _valid(schema, one), one
        json.loads(one["data"])
    assert not _valid(schema, "event: history")
    assert not _valid(schema, {"event": "other", "data": "{}"})


def test_operations_have_unique_ids_and_links_name_them() -> None:
    operations = [op for ops in DOC["paths"].values() for op in ops.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    targets = {
        link["operationId"]
        for op in operations
        for answer in op["responses"].values()
        for link in answer.get("links", {}).values()
    }
    assert targets == {"getTask", "cancelTask", "retryTask"}
