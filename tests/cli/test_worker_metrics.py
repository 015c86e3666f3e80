"""`taskengine worker --metrics-port`: each worker process serves /metrics, /healthz, /readyz."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import free_port
from tests.cli.support import Cli
from tests.cli.test_worker_process import DEADLINE, GRACE, stop, wait_for_state, worker_process

pytestmark = pytest.mark.slow


def get_when_up(url: str) -> httpx.Response:
    """GET `url` once something listens there (bounded)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return httpx.get(url, timeout=5.0)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing listens at {url}"
            time.sleep(0.05)


def succeeded(text: str) -> dict[str, float]:
    """taskengine_tasks_total{outcome="succeeded"} per instance in a scrape."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "taskengine_tasks_total" and sample.labels["outcome"] == "succeeded":
                instance = sample.labels["instance"]
                found[instance] = found.get(instance, 0.0) + sample.value
    return found


def test_each_child_of_processes_serves_its_own_endpoint_on_port_plus_k(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    base = free_port()
    while free_port() == base + 1:  # unlikely; the kernel hands out ports at random
        base = free_port()
    args = ("--processes", "2", "--workers", "2", "--metrics-port", str(base), "--grace", "5")
    with worker_process(cli, *args) as proc:
        urls = [f"http://127.0.0.1:{port}" for port in (base, base + 1)]
        for url in urls:
            assert get_when_up(f"{url}/healthz").json() == {"status": "ok", "checks": {}}
            ready = httpx.get(f"{url}/readyz", timeout=5.0)
            assert ready.status_code == 200, ready.text
        ids = [cli.submit("time.sleep", {"seconds": 0.01}) for _ in range(20)]
        for task_id in ids:
            assert wait_for_state(cli, task_id, {"succeeded", "dead"})["state"] == "succeeded"
        deadline = time.monotonic() + DEADLINE
        while True:  # a scrape reads the counters as the settles reached them
            scraped = [succeeded(httpx.get(f"{url}/metrics", timeout=5.0).text) for url in urls]
            if sum(sum(s.values()) for s in scraped) == len(ids):
                break
            assert time.monotonic() < deadline, scraped
            time.sleep(0.05)
        assert all(len(s) <= 1 for s in scraped)  # each endpoint: its own instance only
        instances = {name for s in scraped for name in s}
        assert len(instances) == len([s for s in scraped if s])
        code, out, err, _ = stop(proc, GRACE + 20)
    assert code == 0, err
    assert f"metrics at http://127.0.0.1:{base}/metrics" in out
    assert f"metrics at http://127.0.0.1:{base + 1}/metrics" in out
