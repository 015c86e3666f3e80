"""Prometheus /metrics, the JSON snapshot, the live feed (/api/events) and the saved history."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import ADMIN_TOKEN, READ_TOKEN, Server, in_state, running, submit, wait_task

FAMILIES = {
    "taskengine_tasks_submitted": "counter",
    "taskengine_tasks_started": "counter",
    "taskengine_tasks": "counter",
    "taskengine_task_duration_seconds": "histogram",
    "taskengine_task_wait_seconds": "histogram",
    "taskengine_queue_depth": "gauge",
    "taskengine_pool_size": "gauge",
    "taskengine_pool_busy": "gauge",
    "taskengine_pool_efficiency": "gauge",
    "taskengine_worker_busy_ratio": "gauge",
    "taskengine_circuit_breaker_state": "gauge",
    "taskengine_event_loop_lag_seconds": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_cpu_seconds": "counter",
}


def scrape(client: httpx.Client) -> dict[str, Any]:
    """Parse /metrics with prometheus_client's own parser: family name -> family."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    for family in families.values():
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return float(item.value)
    raise AssertionError(f"no sample {name}{labels}")


def read_events(
    url: str, count: int, timeout: float = 10.0, **headers: str
) -> list[dict[str, Any]]:
    """The first `count` events of /api/events: [{"event": ..., "data": parsed JSON}, ...]."""
    events: list[dict[str, Any]] = []
    with (
        httpx.Client(base_url=url, timeout=timeout) as plain,
        plain.stream("GET", "/api/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("event:"):
                current["event"] = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                current["data"] = json.loads(line.split(":", 1)[1])
            elif not line and current:
                events.append(current)
                current = {}
                if len(events) == count:
                    break
    return events


def test_prometheus_families_parse_and_count_every_outcome(server: Server) -> None:
    with server.client() as client:
        ok = submit(client, {"type": "cpu.fibonacci", "payload": {"n": 10}})
        dead = submit(
            client,
            {
                "type": "io.file",
                "payload": {"op": "read", "path": "missing.txt"},
                "max_attempts": 1,
            },
        )
        wait_task(client, ok, in_state("succeeded"))
        wait_task(client, dead, in_state("dead"))
        families = scrape(client)
    for name, kind in FAMILIES.items():
        assert name in families, name
        assert families[name].type == kind, name
    assert (
        sample(families, "taskengine_tasks_total", type="cpu.fibonacci", outcome="succeeded") >= 1
    )
    assert sample(families, "taskengine_tasks_total", type="io.file", outcome="failed") >= 1
    assert sample(families, "taskengine_tasks_total", type="io.file", outcome="dead") >= 1
    assert sample(families, "taskengine_tasks_submitted_total", type="cpu.fibonacci") >= 1
    count = sample(families, "taskengine_task_duration_seconds_count", type="cpu.fibonacci")
    inf = sample(
        families, "taskengine_task_duration_seconds_bucket", type="cpu.fibonacci", le="+Inf"
    )
    assert count == inf >= 1
    assert sample(families, "taskengine_pool_size") == 5
    assert sample(families, "process_resident_memory_bytes") > 10_000_000
    state = sample(
        families, "taskengine_circuit_breaker_state", breaker="cpu.fibonacci", state="closed"
    )
    assert state == 1.0


def test_snapshot_has_rates_timings_breakers_and_process(tmp_path: Path) -> None:
    # a server of its own: on the shared one, other files' instant time.sleep tasks (whichever
    # ran on this test worker before) would set the p50
    with running(tmp_path, name="snapshot") as server, server.client() as client:
        task_id = submit(client, {"type": "time.sleep", "payload": {"seconds": 0.01}})
        wait_task(client, task_id, in_state("succeeded"))
        metrics = client.get("/api/metrics").json()
    assert metrics["started"] >= 1
    assert "time.sleep" in metrics["wait_seconds"]
    assert metrics["latency_seconds"]["time.sleep"]["p50"] >= 0.005  # timers may fire a bit early
    assert {"name": "time.sleep", "state": "closed"}.items() <= next(
        b for b in metrics["breakers"] if b["name"] == "time.sleep"
    ).items()
    assert 0.0 <= metrics["pool"]["efficiency"] <= 1.0
    process = metrics["process"]
    assert process["rss_bytes"] > 0 and process["open_fds"] > 0
    assert process["loop_lag_seconds"] >= 0.0


def test_events_send_the_history_then_a_tick_a_second(server: Server) -> None:
    with server.client() as client:
        submit(client, {"type": "cpu.fibonacci", "payload": {"n": 5}})
    started = time.monotonic()
    history, first, second = read_events(server.url, 3)
    assert history["event"] == "history" and isinstance(history["data"]["points"], list)
    assert first["event"] == second["event"] == "tick"
    assert second["data"]["point"]["t"] == first["data"]["point"]["t"] + 1
    assert time.monotonic() - started < 5
    tick = second["data"]
    assert set(tick) == {"point", "amended", "metrics", "workers", "progress"}
    assert isinstance(tick["progress"], dict)  # the running tasks' reports, by task id
    assert set(tick["point"]["depth"]) == {"HIGH", "NORMAL", "LOW"}
    assert len(tick["point"]["busy"]) == 5
    assert tick["metrics"]["submitted"] >= 1
    assert {w["state"] for w in tick["workers"]} <= {"idle", "busy", "stopping"}
    assert len(tick["workers"]) >= 5


def test_ticks_show_work_as_it_happens(server: Server) -> None:
    seen: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: seen.extend(read_events(server.url, 5)))
    reader.start()
    time.sleep(0.5)
    with server.client() as client:
        client.post(
            "/api/tasks",
            json={"tasks": [{"type": "time.sleep", "payload": {"seconds": 0.2}}] * 20},
        ).raise_for_status()
    reader.join(15)
    ticks = [event["data"] for event in seen if event["event"] == "tick"]
    assert any(tick["point"]["ok"] > 0 for tick in ticks), ticks
    assert any(max(tick["point"]["busy"].values()) > 0 for tick in ticks)


def test_read_token_needed_for_metrics_and_events(auth_server: Server) -> None:
    with httpx.Client(base_url=auth_server.url, timeout=10) as plain:
        assert plain.get("/metrics").status_code == 401
        assert plain.get("/api/events").status_code == 401
        assert plain.get("/api/metrics/history").status_code == 401
        bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert plain.get("/metrics", headers=bearer).status_code == 200
    events = read_events(auth_server.url, 1, Authorization=f"Bearer {ADMIN_TOKEN}")
    assert events[0]["event"] == "history"


def test_history_survives_a_restart(tmp_path: Path) -> None:
    with running(tmp_path, name="history") as first, first.client() as client:
        deadline = time.monotonic() + 15
        while len(client.get("/api/metrics/history").json()["points"]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        before = client.get("/api/metrics/history").json()["points"]
    with running(tmp_path, name="history") as second, second.client() as client:
        after = client.get("/api/metrics/history").json()["points"]
    assert {p["t"] for p in before} <= {p["t"] for p in after}


def test_open_stream_does_not_hold_up_a_graceful_stop(tmp_path: Path) -> None:
    ended = threading.Event()

    def follow(url: str) -> None:
        try:
            with httpx.Client(timeout=30) as plain, plain.stream("GET", f"{url}/api/events") as r:
                for _ in r.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        ended.set()

    server = Server(tmp_path, name="streaming").start()
    try:
        thread = threading.Thread(target=follow, args=(server.url,), daemon=True)
        thread.start()
        time.sleep(1.5)
    finally:
        stop_started = time.monotonic()
        code = server.stop()
    assert code == 0, server.stderr()[-3000:]
    assert time.monotonic() - stop_started < 5  # not uvicorn's 5 s forced cancel of the stream
    assert ended.wait(5)
    assert "Traceback" not in server.stderr()
