"""/api/workflows and depends_on over a real socket: a DAG submitted in one call, its graph,
cancel and replay of the whole, and the errors of a parent that does not exist."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.api.conftest import in_state, submit, wait_task

UNKNOWN = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def _wait_workflow(client: httpx.Client, workflow_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60.0
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/workflows/{workflow_id}")
        assert response.status_code == 200, response.text
        view = response.json()
        if view["state"] == state:
            return view
        time.sleep(0.05)
    raise AssertionError(f"workflow {workflow_id} is not {state}: {view}")


def test_a_dag_is_submitted_in_one_call_and_shown_with_its_edges(client: httpx.Client) -> None:
    body = {
        "nodes": [
            {"name": "a", "task": {"type": "time.sleep", "payload": {"seconds": 0}}},
            {"name": "b", "task": {"type": "time.sleep", "payload": {"seconds": 0}}},
            {
                "name": "join",
                "task": {"type": "time.sleep", "payload": {"seconds": 0}},
                "after": ["a", "b"],
            },
        ]
    }
    response = client.post("/api/workflows", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created["tasks"]) == {"a", "b", "join"}
    assert response.headers["location"] == f"/api/workflows/{created['id']}"

    view = _wait_workflow(client, created["id"], "succeeded")

    ids = created["tasks"]
    assert [n["id"] for n in view["nodes"]][-1] == ids["join"]
    assert sorted(view["edges"]) == sorted([[ids["a"], ids["join"]], [ids["b"], ids["join"]]])
    assert view["counts"] == {"succeeded": 3}
    task = client.get(f"/api/tasks/{ids['join']}").json()
    assert task["workflow"] == created["id"]
    assert sorted(task["depends_on"]) == sorted([ids["a"], ids["b"]])


def test_a_task_waits_blocked_for_the_one_it_depends_on(idle_client: httpx.Client) -> None:
    parent = submit(idle_client, {"type": "time.sleep", "payload": {"seconds": 0}})
    child = submit(
        idle_client,
        {"type": "time.sleep", "payload": {"seconds": 0}, "depends_on": [parent]},
    )
    view = wait_task(idle_client, child, in_state("blocked"))
    assert view["waiting"] == 1
    assert idle_client.delete(f"/api/tasks/{parent}").status_code == 200
    view = wait_task(idle_client, child, in_state("cancelled"))
    assert view["result"]["error"].startswith("a parent ended cancelled")


def test_an_unknown_parent_is_a_422_and_stores_nothing(idle_client: httpx.Client) -> None:
    response = idle_client.post(
        "/api/tasks",
        json={"type": "time.sleep", "payload": {"seconds": 0}, "depends_on": [UNKNOWN]},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_parent"
    assert UNKNOWN in response.json()["error"]["message"]


def test_a_workflow_with_a_cycle_is_a_422(idle_client: httpx.Client) -> None:
    step = {"type": "time.sleep", "payload": {"seconds": 0}}
    response = idle_client.post(
        "/api/workflows",
        json={
            "nodes": [
                {"name": "a", "task": step, "after": ["b"]},
                {"name": "b", "task": step, "after": ["a"]},
            ]
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_workflow"


def test_cancel_and_replay_act_on_the_whole_workflow(idle_client: httpx.Client) -> None:
    step = {"type": "time.sleep", "payload": {"seconds": 0}}
    response = idle_client.post(
        "/api/workflows",
        json={"nodes": [{"name": "a", "task": step}, {"name": "b", "task": step, "after": ["a"]}]},
    )
    workflow = response.json()
    ids = workflow["tasks"]

    cancelled = idle_client.post(f"/api/workflows/{workflow['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["tasks"] == {ids["a"]: "cancelled", ids["b"]: "cancelled"}
    assert idle_client.get(f"/api/workflows/{workflow['id']}").json()["state"] == "cancelled"

    replayed = idle_client.post(f"/api/workflows/{workflow['id']}/replay")
    assert replayed.status_code == 200
    assert replayed.json()["tasks"] == {ids["a"]: "replayed", ids["b"]: "replayed"}
    view = idle_client.get(f"/api/workflows/{workflow['id']}").json()
    assert [n["state"] for n in view["nodes"]] == ["queued", "blocked"]
    assert view["state"] == "running"


def test_an_unknown_workflow_is_a_404(idle_client: httpx.Client) -> None:
    for path in (f"/api/workflows/{UNKNOWN}", "/api/workflows/not-an-id"):
        response = idle_client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "workflow_not_found"
