"""The dashboard shows the cluster: every instance's counts and every worker of every instance.

One test runs three engine processes on Redis (one `serve`, two `worker`) and checks, in
Chromium, that the succeeded counter equals the tasks run across all three and that the heatmap
and the workers table list every worker of every instance. Another fills the broker with the
reports of ten instances of twenty workers and checks the page stays readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskengine.brokers import open_broker
from taskengine.model import WorkerInfo
from taskengine.telemetry.history import Point
from taskengine.telemetry.report import InstanceTelemetry, encode_report
from tests.api.conftest import Server, clean_env, running
from tests.e2e.test_dashboard import (  # the browser set-up (skips without chromium)
    LIVE_TIMEOUT,
    browser,
    new_dashboard,
)

pytestmark = pytest.mark.slow
SHOTS = Path("/tmp")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "cluster-dashboard.png"
assert browser  # the fixture, imported for its side of pytest

REDIS = "redis://127.0.0.1:6379/0?namespace={ns}"
HEARTBEAT = "1"  # seconds: reports reach `serve` within about a second
TASKS = 300
WORKERS = {"serve": 4, "worker": 3}
SETTLED = 60.0  # seconds the tasks get to finish (bounded poll)
TASKENGINE = [sys.executable, "-m", "taskengine"]
ROWS = "#workers-table tbody tr:not(.group)"


def run_async(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main()` to the end on a loop of its own thread (Playwright's sync API holds one
    in this thread)."""
    failed: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


@pytest.fixture
def redis_url() -> str:
    """A fresh Redis namespace, or a skip when Redis does not answer (CI: it must)."""
    url = REDIS.format(ns=f"cluster-{uuid.uuid4().hex[:8]}")

    async def ping() -> None:
        broker = open_broker(url)
        await broker.start()
        await broker.close()

    try:
        run_async(ping)
    except Exception as exc:
        pytest.skip(f"redis unreachable: {exc}")
    return url


@contextlib.contextmanager
def worker(url: str, workdir: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """`taskengine worker` with a one-second heartbeat; stopped with SIGTERM (exit 0)."""
    env = clean_env({"TASKENGINE_HEARTBEAT_EVERY": HEARTBEAT}, data_dir=workdir / name)
    with (workdir / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [*TASKENGINE, "--broker", url, "worker", "--workers", str(WORKERS["worker"])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its PID
            proc.wait(10)
            raise
    assert code == 0, (workdir / f"{name}.log").read_text()[-3000:]


def drop(url: str) -> None:
    async def run() -> None:
        broker = open_broker(url)
        await broker.start()
        try:
            await broker.drop_namespace()  # type: ignore[attr-defined]
        finally:
            await broker.close()

    run_async(run)


def wait_until(what: str, check: object, timeout: float = SETTLED) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@contextlib.contextmanager
def three_processes(redis_url: str, tmp_path: Path) -> Iterator[tuple[Server, httpx.Client]]:
    """`serve` and two `worker` processes on one Redis namespace, every worker registered."""
    env = {"TASKENGINE_HEARTBEAT_EVERY": HEARTBEAT}
    args = ("--workers", str(WORKERS["serve"]))
    try:
        with (
            running(tmp_path / "serve", broker=redis_url, env=env, args=args, name="s") as server,
            worker(redis_url, tmp_path, "w1"),
            worker(redis_url, tmp_path, "w2"),
            server.client() as api,
        ):
            expected = WORKERS["serve"] + 2 * WORKERS["worker"]
            wait_until(
                "every worker of every instance",
                lambda: len(api.get("/api/workers").json()["workers"]) == expected,
            )
            yield server, api
    finally:
        drop(redis_url)


def test_three_processes_on_redis_one_dashboard(
    browser: object, redis_url: str, tmp_path: Path
) -> None:
    with three_processes(redis_url, tmp_path) as (server, api):

        def live_workers() -> list[dict[str, object]]:
            workers: list[dict[str, object]] = api.get("/api/workers").json()["workers"]
            return workers

        tasks = [{"type": "time.sleep", "payload": {"seconds": 0.02}} for _ in range(TASKS)]
        created = api.post("/api/tasks", json={"tasks": tasks})
        assert created.status_code == 201, created.text

        def succeeded() -> int:
            counts: int = api.get("/api/metrics").json()["outcomes"].get("succeeded", 0)
            return counts

        wait_until(f"{TASKS} succeeded across the cluster", lambda: succeeded() >= TASKS)
        metrics = api.get("/api/metrics").json()
        assert metrics["outcomes"]["succeeded"] == TASKS
        instances = {w["instance"] for w in live_workers()}
        assert {i["instance"] for i in metrics["instances"]} == instances
        assert len(instances) == 3
        ran = [i for i in metrics["instances"] if i["outcomes"].get("succeeded")]
        assert len(ran) >= 2, metrics["instances"]  # the tasks were run across processes
        worker_ids = {str(w["id"]) for w in live_workers()}

        context, board = new_dashboard(browser, server.url)  # type: ignore[arg-type]
        try:
            page = board.open().page
            page.wait_for_function(
                """([tasks, ids, rowsSelector]) => {
                    const value = document.querySelector(
                        '.counter[data-key=succeeded] .value').textContent;
                    const heatmap = document.getElementById('heatmap');
                    const rows = document.querySelectorAll(rowsSelector);
                    return Number(value.replaceAll(',', '')) === tasks
                        && Number(heatmap.dataset.rows) === ids.length
                        && rows.length === ids.length;
                }""",
                arg=[TASKS, sorted(worker_ids), ROWS],
                polling=200,
                timeout=LIVE_TIMEOUT * 2,
            )
            shown = set(
                page.evaluate("() => document.getElementById('heatmap').dataset.instances").split()
            )
            assert shown == instances
            assert page.locator("#instances-table tbody tr").count() == 3
            assert page.locator("#workers-table tbody tr.group").count() == 3
            board.assert_clean()
        finally:
            context.close()


def test_a_screenshot_of_the_cluster_under_load(
    browser: object, redis_url: str, tmp_path: Path
) -> None:
    """With UPDATE_SCREENSHOT=1, the README's picture of the cluster dashboard."""
    with three_processes(redis_url, tmp_path) as (server, api):
        context, board = new_dashboard(browser, server.url)  # type: ignore[arg-type]
        try:
            page = board.open().page
            board.wait_live()
            priorities = ["HIGH", "NORMAL", "NORMAL", "LOW"]
            tasks = [
                {
                    "type": "time.sleep",
                    "payload": {"seconds": 0.05 + (i % 7) * 0.04},
                    "priority": priorities[i % 4],
                    "delay": (i % 9) * 0.5,
                }
                for i in range(900)
            ]
            assert api.post("/api/tasks", json={"tasks": tasks}).status_code == 201
            page.wait_for_function(  # every instance's workers busy for a few seconds
                """() => {
                    const heatmap = document.getElementById('heatmap');
                    return Number(heatmap.dataset.groups) === 3
                        && Number(heatmap.dataset.busyColumns) >= 6;
                }""",
                polling=200,
                timeout=LIVE_TIMEOUT * 3,
            )
            path = tmp_path / "cluster.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 10_000
            if os.environ.get("UPDATE_SCREENSHOT") == "1":
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, SCREENSHOT)
            board.assert_clean()
        finally:
            context.close()


def _fake_cluster(url: str, now: float, instances: int, workers: int) -> list[str]:
    """Write the registry entries and reports of `instances` fake instances (as their
    heartbeats would), with a minute of seconds around `now`; return their ids."""
    names = [f"host-{n // 3}:{4000 + n}:f{n:05x}" for n in range(instances)]

    async def write() -> None:
        broker = open_broker(url)
        await broker.start()
        try:
            for n, name in enumerate(names):
                ids = [f"{name}/w{k + 1}" for k in range(workers)]
                await broker.record_workers(
                    [
                        WorkerInfo(
                            id=worker_id,
                            instance=name,
                            host=name.split(":")[0],
                            pid=4000 + n,
                            state="busy" if k % 3 else "idle",
                            started_at=now - 300,
                            last_seen=now + 60,  # seen "now" for the whole test
                        )
                        for k, worker_id in enumerate(ids)
                    ]
                )
                points = [
                    Point(
                        t=float(int(now) + s),
                        ok=1,
                        busy={w: ((k + s + n) % 10) / 10 for k, w in enumerate(ids)},
                    )
                    for s in range(-30, 30)
                ]
                report = InstanceTelemetry(
                    instance=name,
                    host=name.split(":")[0],
                    pid=4000 + n,
                    version="test",
                    started_at=now - 300,
                    at=now,
                    outcomes=[("demo", "succeeded", 10)],
                    size=workers,
                    busy=workers // 2,
                    points=points,
                )
                await broker.record_instance(name, encode_report(report), now, 120.0)
        finally:
            await broker.close()

    run_async(write)
    return names


def test_ten_instances_of_twenty_workers_stay_readable(browser: object, tmp_path: Path) -> None:
    with running(tmp_path, args=("--workers", "20"), name="big") as server:
        names = _fake_cluster(server.broker, time.time(), 9, 20)
        context, board = new_dashboard(browser, server.url)  # type: ignore[arg-type]
        try:
            page = board.open().page
            page.wait_for_function(
                """() => {
                    const heatmap = document.getElementById('heatmap');
                    // the tables fill from their own requests: wait for them too
                    return Number(heatmap.dataset.rows) === 200
                        && Number(heatmap.dataset.groups) === 10
                        && Number(heatmap.dataset.busyColumns) >= 3
                        && document.querySelectorAll('#workers-table tbody tr.group').length
                            === 10
                        && document.querySelectorAll('#instances-table tbody tr').length === 10;
                }""",
                polling=200,
                timeout=LIVE_TIMEOUT * 2,
            )
            box = page.locator("#heatmap").bounding_box()
            assert box is not None and box["height"] < 800  # a screen, not a scroll
            groups = page.locator("#workers-table tbody tr.group")
            assert groups.count() == 10
            texts = groups.all_inner_texts()
            assert all(any(name in text for text in texts) for name in names), (texts, names)
            assert page.locator("#instances-table tbody tr").count() == 10
            page.screenshot(path=str(SHOTS / "cluster.png"), full_page=True)
            board.assert_clean()
        finally:
            context.close()


def test_the_charts_range_is_selectable(browser: object, tmp_path: Path) -> None:
    with running(tmp_path, name="ranges") as server, server.client() as api:
        assert api.get("/api/metrics/history", params={"range": "1h"}).json()["step"] == 1
        assert api.get("/api/metrics/history", params={"range": "24h"}).json()["step"] == 60
        refused = api.get("/api/metrics/history", params={"range": "2d"})
        assert refused.status_code == 422 and "5m, 1h, 24h" in refused.text
        context, board = new_dashboard(browser, server.url)  # type: ignore[arg-type]
        try:
            page = board.open().page
            board.wait_live()
            for label, span, step in (("1 hour", 3600, 1), ("24 hours", 86400, 60)):
                page.get_by_role("button", name=label).click()
                page.wait_for_function(
                    """([span]) => {
                        const box = document.getElementById('chart-depth');
                        return Number(box.dataset.span) === span;
                    }""",
                    arg=[span],
                    timeout=LIVE_TIMEOUT,
                )
                pressed = page.get_by_role("button", name=label).get_attribute("aria-pressed")
                assert pressed == "true"
                if step == 1:  # the hour's points come from the server, a point per second
                    page.wait_for_function(
                        "() => Number(document.getElementById('chart-depth').dataset.points) > 0",
                        timeout=LIVE_TIMEOUT,
                    )
            page.get_by_role("button", name="5 min").click()
            page.wait_for_function(
                "() => Number(document.getElementById('chart-depth').dataset.span) === 300",
                timeout=LIVE_TIMEOUT,
            )
            board.assert_clean()
        finally:
            context.close()
