"""Workers, metrics, queues (pause/resume), dead letters, health, the OpenAPI document and docs."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskengine.telemetry.report import InstanceTelemetry
from tests.api.conftest import Server, clean_env, in_state, running, submit, wait_task
from tests.cli.test_instances import record_report

# -- workers and metrics ----------------------------------------------------------------------


def test_workers_lists_the_five_workers(client: httpx.Client) -> None:
    response = client.get("/api/workers")
    assert response.status_code == 200
    workers = response.json()["workers"]
    assert len(workers) == 5
    assert len({w["id"] for w in workers}) == 5
    assert len({w["instance"] for w in workers}) == 1
    for worker in workers:
        assert set(worker) >= {
            "id",
            "instance",
            "host",
            "pid",
            "state",
            "current_task",
            "processed",
            "busy_ratio",
            "started_at",
            "last_heartbeat",
        }
        assert worker["id"].startswith(worker["instance"])
        assert worker["state"] in {"idle", "busy", "starting", "stopping"}
        assert 0.0 <= worker["busy_ratio"] <= 1.0
        assert worker["last_heartbeat"] >= worker["started_at"]


def test_metrics_snapshot_keys(client: httpx.Client) -> None:
    task_id = submit(client, {"type": "cpu.primes", "payload": {"limit": 30}})
    wait_task(client, task_id, in_state("succeeded"))
    response = client.get("/api/metrics")
    assert response.status_code == 200
    metrics = response.json()
    for key in ("submitted", "outcomes", "throughput", "latency_seconds", "queue_depth", "pool"):
        assert key in metrics, key
    assert metrics["submitted"] >= 1
    assert metrics["outcomes"].get("succeeded", 0) >= 1
    assert isinstance(metrics["throughput"], dict)
    assert "cpu.primes" in metrics["latency_seconds"]
    assert {"p50", "p99"} <= set(metrics["latency_seconds"]["cpu.primes"])
    assert isinstance(metrics["queue_depth"], dict)
    assert metrics["pool"]["size"] == 5
    assert metrics["process"]["rss_bytes"] > 1_000_000


# -- queues -----------------------------------------------------------------------------------


def test_queues_lists_counts(idle_client: httpx.Client) -> None:
    queue = f"counts-{uuid.uuid4().hex[:8]}"
    for priority in ("HIGH", "HIGH", "LOW"):
        submit(
            idle_client,
            {"type": "cpu.primes", "payload": {"limit": 10}, "queue": queue, "priority": priority},
        )
    response = idle_client.get("/api/queues")
    assert response.status_code == 200
    views = {view["name"]: view for view in response.json()["queues"]}
    view = views[queue]
    assert set(view) == {
        "name",
        "paused",
        "states",
        "queued_by_priority",
        "oldest_queued_at",
        "rate_per_second",
    }
    assert view["rate_per_second"] == 0.0  # nothing ran on it
    assert view["paused"] is False
    assert view["states"] == {"queued": 3}
    assert view["queued_by_priority"] == {"HIGH": 2, "LOW": 1}
    assert view["oldest_queued_at"] is not None


def test_queues_show_the_rate_of_this_process_and_the_other_instances(
    server: Server, client: httpx.Client
) -> None:
    queue = f"rate-{uuid.uuid4().hex[:8]}"
    ids = [
        submit(client, {"type": "cpu.primes", "payload": {"limit": 10}, "queue": queue})
        for _ in range(3)
    ]
    for task_id in ids:
        wait_task(client, task_id, in_state("succeeded"))
    now = time.time()
    other = InstanceTelemetry(
        instance=f"other:{queue}",
        host="h2",
        pid=2,
        version="0",
        started_at=now - 100,
        at=now,
        queues=[(queue, "succeeded", 90)],
        queue_rates={queue: 1.5},
    )
    record_report(server.broker, other)
    views = {v["name"]: v for v in client.get("/api/queues").json()["queues"]}
    # 3 ran here within the last minute (3/60 per second) plus what the other instance reports
    assert views[queue]["rate_per_second"] == pytest.approx(1.5 + 3 / 60, abs=1e-4)
    assert views[queue]["states"] == {"succeeded": 3}


def test_pause_keeps_tasks_queued_and_resume_runs_them(client: httpx.Client) -> None:
    queue = f"paused-{uuid.uuid4().hex[:8]}"
    response = client.post(f"/api/queues/{queue}/pause")
    assert response.status_code == 200
    assert response.json() == {"queue": queue, "paused": True}
    listed = {v["name"]: v for v in client.get("/api/queues").json()["queues"]}
    assert listed[queue]["paused"] is True  # listed even before it has a task
    task_id = submit(client, {"type": "cpu.primes", "payload": {"limit": 10}, "queue": queue})
    time.sleep(2.5)  # > idle_wait (1 s): the workers had their chance
    assert client.get(f"/api/tasks/{task_id}").json()["state"] == "queued"
    response = client.post(f"/api/queues/{queue}/resume")
    assert response.status_code == 200
    assert response.json() == {"queue": queue, "paused": False}
    wait_task(client, task_id, in_state("succeeded"))
    listed = {v["name"]: v for v in client.get("/api/queues").json()["queues"]}
    assert listed[queue]["paused"] is False


@pytest.mark.parametrize("name", ["bad name", "a" * 129, "-leading-dash", "caf\u00e9"])
def test_pause_invalid_queue_name_is_422(idle_client: httpx.Client, name: str) -> None:
    for action in ("pause", "resume"):
        response = idle_client.post(f"/api/queues/{name}/{action}")
        assert response.status_code == 422, (name, response.text)
        assert response.json()["error"]["code"] == "validation_error"


# -- dead letters -----------------------------------------------------------------------------


def test_dead_letters_lists_dead_tasks_only(client: httpx.Client) -> None:
    queue = f"dlq-{uuid.uuid4().hex[:8]}"
    dead = [
        submit(
            client,
            {
                "type": "io.file",
                "payload": {"op": "read", "path": f"missing-{i}.txt"},
                "max_attempts": 1,
                "queue": queue,
            },
        )
        for i in range(3)
    ]
    alive = submit(client, {"type": "cpu.primes", "payload": {"limit": 10}, "queue": queue})
    for task_id in dead:
        wait_task(client, task_id, in_state("dead"))
    wait_task(client, alive, in_state("succeeded"))
    response = client.get("/api/dead-letters", params={"queue": queue})
    assert response.status_code == 200
    page = response.json()
    assert set(page) == {"items", "next_cursor"}
    assert [item["id"] for item in page["items"]] == list(reversed(dead))
    assert all(item["state"] == "dead" for item in page["items"])
    first = client.get("/api/dead-letters", params={"queue": queue, "limit": 2}).json()
    rest = client.get(
        "/api/dead-letters", params={"queue": queue, "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [i["id"] for i in first["items"] + rest["items"]] == list(reversed(dead))
    assert rest["next_cursor"] is None
    typed = client.get("/api/dead-letters", params={"queue": queue, "type": "cpu.primes"})
    assert typed.json()["items"] == []


# -- health -----------------------------------------------------------------------------------


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_with_and_without_a_pool(client: httpx.Client, idle_client: httpx.Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    duties = {"pool": "ok", "settle": "ok", "reserve": "ok", "heartbeat": "ok"}
    assert response.json() == {"status": "ok", "checks": {"broker": "ok", **duties}}
    response = idle_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"broker": "ok"}}


def test_security_headers_and_request_id(client: httpx.Client) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "trace-me-123"})
    assert response.headers["x-request-id"] == "trace-me-123"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    generated = client.get("/healthz").headers["x-request-id"]
    assert generated and generated != "trace-me-123"


# -- OpenAPI and docs -------------------------------------------------------------------------

DOCS_ONLY = {"/openapi.json", "/docs", "/docs.js", "/", "/favicon.ico"}  # pages, not the API


def _served_routes() -> set[tuple[str, str]]:
    """(path, method) of every route build_api mounts (read from the app, not from the doc)."""
    from taskengine.api import ApiContext, build_api
    from taskengine.app import App

    api = build_api(ApiContext(app=App("memory://")))
    served = set()
    for route in api.routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                served.add((route.path, method.lower()))
    return served


def test_openapi_document_is_3_1_and_documents_every_route(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    served = {(p, m) for p, m in _served_routes() if p not in DOCS_ONLY}
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (path, method)
            assert op["responses"], (path, method)
            for status, answer in op["responses"].items():
                assert status.isdigit() and answer.get("description"), (path, method, status)


def test_openapi_refs_resolve_and_schemas_are_valid(client: httpx.Client) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for schema in schemas.values():
        jsonschema_rs.meta.validate(schema)  # Draft 2020-12, as OpenAPI 3.1 uses
    text = client.get("/openapi.json").text
    refs = {part.split('"')[0] for part in text.split('"$ref":"')[1:]}
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref


def _validator(doc: dict[str, Any], name: str) -> Any:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(root)


def test_responses_match_their_documented_schemas(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    task_id = submit(client, {"type": "cpu.primes", "payload": {"limit": 20}})
    view = wait_task(client, task_id, in_state("succeeded"))
    _validator(doc, "TaskView").validate(view)
    _validator(doc, "TaskPage").validate(client.get("/api/tasks", params={"limit": 3}).json())
    _validator(doc, "TaskPage").validate(client.get("/api/dead-letters").json())
    for worker in client.get("/api/workers").json()["workers"]:
        _validator(doc, "WorkerView").validate(worker)
    for queue in client.get("/api/queues").json()["queues"]:
        _validator(doc, "QueueView").validate(queue)
    _validator(doc, "HealthView").validate(client.get("/readyz").json())
    one = client.post("/api/tasks", json={"type": "cpu.primes", "payload": {"limit": 10}})
    _validator(doc, "Submitted").validate(one.json())
    batch = client.post(
        "/api/tasks", json={"tasks": [{"type": "cpu.primes", "payload": {"limit": 10}}]}
    )
    _validator(doc, "SubmittedBatch").validate(batch.json())
    delayed = submit(client, {"type": "cpu.primes", "payload": {"limit": 10}, "delay": 60})
    _validator(doc, "CancelView").validate(client.delete(f"/api/tasks/{delayed}").json())
    _validator(doc, "ErrorView").validate(client.get("/api/tasks/nope").json())


def test_every_documented_operation_is_routed(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    fill = {
        "{task_id}": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "{workflow_id}": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "{queue}": "routed-check",
    }
    for path, ops in doc["paths"].items():
        url = path
        for name, value in fill.items():
            url = url.replace(name, value)
        for method in ops:
            if "text/event-stream" in ops[method]["responses"].get("200", {}).get("content", {}):
                method = "head"  # an endless stream: HEAD answers with its headers only
            response = client.request(method.upper(), url)
            assert response.status_code != 405, (method, path)
            if response.status_code == 404:  # the resource, never the route, is missing
                code = response.json()["error"]["code"]
                assert code in {"task_not_found", "periodic_not_found", "workflow_not_found"}, (
                    method,
                    path,
                )
    client.post("/api/queues/routed-check/resume")


def test_docs_page_is_html(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text and "/openapi.json" in response.text
    script = client.get("/docs.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")


# -- a worker in another process --------------------------------------------------------------


def test_cancel_reaches_a_worker_in_another_process(tmp_path: Path) -> None:
    """The API (no workers) and a `taskengine worker` share a SQLite file (default heartbeat)."""
    env: dict[str, str] = {}
    with running(tmp_path, name="split", args=("--no-workers",), env=env) as api:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskengine", "--broker", api.broker, "worker"],
            cwd=tmp_path,
            env=clean_env(env, data_dir=tmp_path / "data"),
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "worker.stderr").open("wb"),
        )
        try:
            with api.client() as c:
                task_id = submit(c, {"type": "time.sleep", "payload": {"seconds": 30}})
                wait_task(c, task_id, in_state("running"), timeout=60)  # the worker starts
                asked = time.monotonic()
                response = c.delete(f"/api/tasks/{task_id}")
                assert response.status_code == 202
                assert response.json()["result"] == "requested"
                view = wait_task(c, task_id, in_state("cancelled", "succeeded"), timeout=12)
                took = time.monotonic() - asked
                assert view["state"] == "cancelled"
                # the cancel watch polls every 0.5 s; the heartbeat (10 s) plays no part (the
                # bound leaves room for a machine loaded by parallel test workers)
                assert took < 5, f"cross-process cancel took {took:.1f} s"
                workers = c.get("/api/workers").json()["workers"]
                assert len(workers) == 5 and {w["pid"] for w in workers} == {worker.pid}
        finally:
            worker.send_signal(15)
            assert worker.wait(30) == 0
