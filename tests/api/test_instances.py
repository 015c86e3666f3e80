"""Instances and remote control over HTTP (ADR 0036): drain, resume, resize, shut down."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import taskengine
from tests.api.conftest import READ_TOKEN, Server, in_state, running, submit, wait_task
from tests.cli.test_admin import record_workers, worker_info

BOUND = 20.0  # generous: the machine is shared


def _until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {BOUND} s: {what}")


def _instances(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/api/instances")
    assert response.status_code == 200
    instances: list[dict[str, Any]] = response.json()["instances"]
    return instances


def test_instances_lists_the_serving_process(client: httpx.Client) -> None:
    [view] = _instances(client)
    assert set(view) == {
        "instance",
        "host",
        "pid",
        "started_at",
        "last_heartbeat",
        "workers",
        "busy",
        "processed",
        "draining",
        "types",
        "version",
        "rss_bytes",
    }
    assert view["workers"] == 5
    assert view["draining"] is False
    assert "cpu.primes" in view["types"]


def test_instances_show_version_and_rss_from_each_report(tmp_path: Path) -> None:
    with running(tmp_path, name="two", args=("--workers", "2")) as server, server.client() as c:
        # a second instance whose workers registered and whose first report is not in yet
        record_workers(server.broker, [worker_info(1, task=None, now=time.time())])

        def both() -> list[dict[str, Any]]:
            views = _instances(c)
            reported = [v for v in views if v["rss_bytes"]]
            return views if len(views) == 2 and reported else []

        views = {v["instance"]: v for v in _until(both, "both instances, the server's reported")}
        other = views.pop("host:1:abc")
        assert (other["version"], other["rss_bytes"]) == (None, None)
        [serving] = views.values()
        assert serving["version"] == taskengine.__version__
        assert 10 * 2**20 < serving["rss_bytes"] < 2**31  # a Python process's resident set


def test_drain_stops_taking_tasks_resume_takes_them_again_resize_and_shutdown(
    tmp_path: Path,
) -> None:
    with running(tmp_path, name="ctl", args=("--workers", "2")) as server, server.client() as c:
        [view] = _instances(c)
        instance = view["instance"]
        answer = c.post(f"/api/instances/{instance}/control", json={"command": "drain"})
        assert answer.status_code == 202
        assert answer.json() == {"instance": instance, "command": "drain", "size": None}
        _until(lambda: _instances(c)[0]["draining"], "the instance to say it drains")
        task_id = submit(c, {"type": "cpu.primes", "payload": {"limit": 10}})
        time.sleep(2.5)  # > idle_wait (1 s): the workers had their chance
        assert c.get(f"/api/tasks/{task_id}").json()["state"] == "queued"

        answer = c.post(f"/api/instances/{instance}/control", json={"command": "resume"})
        assert answer.status_code == 202
        wait_task(c, task_id, in_state("succeeded"), timeout=BOUND)
        assert _instances(c)[0]["draining"] is False

        answer = c.post(f"/api/instances/{instance}/control", json={"command": "resize", "size": 4})
        assert answer.status_code == 202
        _until(lambda: _instances(c)[0]["workers"] == 4, "the pool to grow to 4")

        answer = c.post(f"/api/instances/{instance}/control", json={"command": "shutdown"})
        assert answer.status_code == 202
        assert server.proc is not None
        server.proc.wait(BOUND)  # stops by itself, gracefully: `running` asserts exit code 0


def test_control_refuses_bad_commands(idle_client: httpx.Client, client: httpx.Client) -> None:
    [view] = _instances(client)
    path = f"/api/instances/{view['instance']}/control"
    for body in (
        {"command": "resize"},
        {"command": "resize", "size": 0},
        {"command": "explode"},
        {"command": "drain", "size": 3},
    ):
        response = client.post(path, json=body)
        assert response.status_code == 422, (body, response.text)
    response = idle_client.post("/api/instances/nobody:1:x/control", json={"command": "drain"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "instance_not_found"


def test_a_read_token_lists_instances_but_cannot_control(auth_server: Server) -> None:
    with auth_server.client(headers={"Authorization": f"Bearer {READ_TOKEN}"}) as reader:
        [view] = _instances(reader)
        response = reader.post(
            f"/api/instances/{view['instance']}/control", json={"command": "drain"}
        )
        assert response.status_code == 403
