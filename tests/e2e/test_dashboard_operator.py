"""The operator's views in a real browser (issue 16 item 6, ADR 0036): instances with remote
control, queues (pause, resume, purge), task search with paging and bulk actions, scheduled,
retrying, periodic tasks (enable, disable), task types; a read token sees no mutating control;
and a `worker` process on Redis drained from the dashboard stops taking tasks.

Playwright and /usr/bin/chromium as in test_dashboard.py (skipped outside CI without them).
Waits are bounded polls (`expect`), never sleeps, except one: showing that a drained worker
leaves a submitted task queued needs time to pass.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

import taskengine
from tests.api.conftest import (
    ADMIN_TOKEN,
    READ_TOKEN,
    Server,
    clean_env,
    running,
    submit,
    wait_task,
)
from tests.e2e.test_dashboard import (  # noqa: F401 (the browser fixture)
    LIVE_TIMEOUT,
    Dashboard,
    browser,
    new_dashboard,
)

pytestmark = pytest.mark.slow

BOUND = 30.0  # s: generous, the machine is shared
PRIMES = {"type": "cpu.primes", "payload": {"limit": 10}}
CRON = [{"name": "tick", "cron": "* * * * * */5", "type": "time.sleep", "payload": {"seconds": 0}}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SQLite, two workers and one periodic task."""
    env = {"TASKENGINE_CRON": json.dumps(CRON)}
    with running(
        tmp_path_factory.mktemp("operator"), name="op", args=("--workers", "2"), env=env
    ) as srv:
        yield srv


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[tuple[Page, Dashboard]]:  # noqa: F811
    context, board = new_dashboard(browser, server.url)
    try:
        board.open()
        board.page.on("dialog", lambda dialog: dialog.accept())  # the confirmations
        yield board.page, board
    finally:
        context.close()


def test_instances_drain_resume_and_resize_from_the_page(
    page: tuple[Page, Dashboard], api: httpx.Client
) -> None:
    p, board = page
    [instance] = api.get("/api/instances").json()["instances"]
    row = p.locator(f"#control-table tbody tr[data-instance='{instance['instance']}']")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    # the version and RSS of its telemetry report (the first one comes with a heartbeat)
    expect(row.locator("td[data-cell=version]")).to_have_text(
        taskengine.__version__, timeout=int(BOUND * 1000)
    )
    expect(row.locator("td[data-cell=rss]")).to_have_text(
        re.compile(r"^\d+\.\d MiB$"), timeout=int(BOUND * 1000)
    )

    row.locator("button[data-control=drain]").click()
    expect(row).to_have_attribute("data-draining", "true", timeout=LIVE_TIMEOUT)
    row.locator("button[data-control=resume]").click()
    expect(row).to_have_attribute("data-draining", "false", timeout=LIVE_TIMEOUT)
    row.locator("input[type=number]").fill("3")
    row.locator("button[data-control=resize]").click()
    expect(row.locator("td[data-cell=workers]")).to_have_text("3", timeout=LIVE_TIMEOUT)
    row.locator("input[type=number]").fill("2")
    row.locator("button[data-control=resize]").click()
    expect(row.locator("td[data-cell=workers]")).to_have_text("2", timeout=LIVE_TIMEOUT)
    board.assert_clean()


def test_queues_pause_resume_and_purge_from_the_page(
    page: tuple[Page, Dashboard], api: httpx.Client
) -> None:
    p, board = page
    queue = f"ui-{uuid.uuid4().hex[:6]}"
    ids = [submit(api, {**PRIMES, "queue": queue, "delay": 3600}) for _ in range(3)]
    row = p.locator(f"#queues-table tbody tr[data-queue='{queue}']")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    expect(row.locator("td").nth(2)).to_have_text("3")  # NORMAL

    row.locator("button[data-action=pause]").click()
    expect(row).to_have_attribute("data-paused", "true", timeout=LIVE_TIMEOUT)
    row.locator("button[data-action=resume]").click()
    expect(row).to_have_attribute("data-paused", "false", timeout=LIVE_TIMEOUT)

    scheduled = p.locator(f"#scheduled-table tbody tr[data-id='{ids[0]}']")
    expect(scheduled).to_be_visible(timeout=LIVE_TIMEOUT)
    row.locator("button[data-action=purge]").click()
    expect(p.locator("#queues-message")).to_have_text(f"purged 3 queued tasks of {queue}")
    assert [api.get(f"/api/tasks/{i}").status_code for i in ids] == [404] * 3
    expect(scheduled).to_have_count(0, timeout=LIVE_TIMEOUT)

    # the rate: 3 tasks ended on this queue within the last minute, 3/60 per second
    ran = f"ran-{uuid.uuid4().hex[:6]}"
    for task_id in [submit(api, {**PRIMES, "queue": ran}) for _ in range(3)]:
        wait_task(api, task_id, lambda view: view["state"] == "succeeded")
    rate = p.locator(f"#queues-table tbody tr[data-queue='{ran}'] td[data-cell=rate]")
    expect(rate).to_have_text("0.05", timeout=LIVE_TIMEOUT)
    expect(p.locator("#queues-table thead th").nth(6)).to_have_text("rate/s")
    board.assert_clean()


def test_search_pages_and_bulk_actions_from_the_page(
    page: tuple[Page, Dashboard], api: httpx.Client
) -> None:
    p, board = page
    queue = f"bulk-{uuid.uuid4().hex[:6]}"
    ids = [submit(api, {**PRIMES, "queue": queue, "delay": 3600}) for _ in range(3)]

    p.fill("#search-queue", queue)
    p.click("#search-form button[type=submit]")
    rows = p.locator("#search-table tbody tr[data-id]")
    expect(rows).to_have_count(3, timeout=LIVE_TIMEOUT)
    p.locator(f"#search-table tbody tr[data-id='{ids[0]}'] input[type=checkbox]").check()
    p.click("button[data-bulk=cancel][data-scope=selected]")
    expect(p.locator("#bulk-message")).to_have_text("cancel: 1 tasks changed")
    assert api.get(f"/api/tasks/{ids[0]}").json()["state"] == "cancelled"

    p.click("button[data-bulk=cancel][data-scope=matching]")
    expect(p.locator("#bulk-message")).to_have_text("cancel: 2 tasks changed")
    p.click("button[data-bulk=delete][data-scope=matching]")
    expect(p.locator("#bulk-message")).to_have_text("delete: 3 tasks changed")
    expect(rows).to_have_count(0, timeout=LIVE_TIMEOUT)

    # keyset paging: 55 tasks, a page of 50 and the next one
    many = api.post("/api/tasks", json={"tasks": [{**PRIMES, "queue": queue, "delay": 3600}] * 55})
    assert many.status_code == 201
    p.click("#search-form button[type=submit]")
    expect(rows).to_have_count(50, timeout=LIVE_TIMEOUT)
    p.click("#search-next")
    expect(rows).to_have_count(55, timeout=LIVE_TIMEOUT)
    expect(p.locator("#search-next")).to_be_hidden()
    p.fill("#search-id", ids[1])
    p.click("#search-form button[type=submit]")
    expect(p.locator("#search-table tbody tr.empty")).to_be_visible()  # deleted: not found
    api.post("/api/bulk", json={"action": "cancel", "filter": {"queue": [queue]}})
    api.post("/api/bulk", json={"action": "delete", "filter": {"queue": [queue]}})
    assert board.page_errors == []


def test_search_by_state_blocked_and_cancel_the_matching_from_the_page(
    page: tuple[Page, Dashboard], api: httpx.Client
) -> None:
    p, board = page
    queue = f"blocked-{uuid.uuid4().hex[:6]}"
    parent = submit(api, {**PRIMES, "queue": queue, "delay": 3600})
    children = [submit(api, {**PRIMES, "queue": queue, "depends_on": [parent]}) for _ in range(2)]

    p.fill("#search-queue", queue)
    p.select_option("#search-state", "blocked")
    p.click("#search-form button[type=submit]")
    rows = p.locator("#search-table tbody tr[data-id]")
    expect(rows).to_have_count(2, timeout=LIVE_TIMEOUT)
    p.click("button[data-bulk=cancel][data-scope=matching]")
    expect(p.locator("#bulk-message")).to_have_text("cancel: 2 tasks changed")
    assert [api.get(f"/api/tasks/{i}").json()["state"] for i in children] == ["cancelled"] * 2
    assert api.get(f"/api/tasks/{parent}").json()["state"] == "queued"
    p.select_option("#search-state", "")
    api.post("/api/bulk", json={"action": "cancel", "filter": {"queue": [queue]}})
    api.post("/api/bulk", json={"action": "delete", "filter": {"queue": [queue]}})
    assert board.page_errors == []


def test_retrying_and_replay_all_dead_from_the_page(
    page: tuple[Page, Dashboard], api: httpx.Client
) -> None:
    p, board = page
    # io.file retries a missing file? No: it refuses it for good, so it is dead at once.
    dead = submit(api, {"type": "io.file", "payload": {"op": "read", "path": "nope.txt"}})
    wait_task(api, dead, lambda view: view["state"] == "dead")
    expect(p.locator(f"#dlq-table tbody tr[data-id='{dead}']")).to_be_visible(timeout=LIVE_TIMEOUT)
    p.click("#dlq-replay-all")
    wait_task(api, dead, lambda view: len(view["history"]) >= 2)
    expect(p.locator("#retrying-table")).to_be_visible()
    board.assert_clean()


def test_dead_letters_page_and_replay_one_from_the_second_page(
    page: tuple[Page, Dashboard], api: httpx.Client
) -> None:
    p, board = page
    queue = f"dlq-{uuid.uuid4().hex[:6]}"
    missing = {"type": "io.file", "payload": {"op": "read", "path": "nope.txt"}, "queue": queue}
    many = api.post("/api/tasks", json={"tasks": [missing] * 26})  # refused for good: dead
    assert many.status_code == 201
    ids = [item["id"] for item in many.json()["tasks"]]
    for task_id in ids:
        wait_task(api, task_id, lambda view: view["state"] == "dead")
    rows = p.locator("#dlq-table tbody tr[data-id]")
    expect(rows).to_have_count(20, timeout=LIVE_TIMEOUT)  # the first page
    first_page = set(rows.evaluate_all("rows => rows.map(r => r.dataset.id)"))
    expect(p.locator("#dlq-first")).to_be_hidden()

    p.click("#dlq-next")
    expect(p.locator("#dlq-first")).to_be_visible(timeout=LIVE_TIMEOUT)
    second_page = rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert second_page and not first_page & set(second_page)
    mine = [i for i in second_page if i in ids]
    assert mine, second_page  # 26 of ours: at least 6 beyond the first page
    target = mine[0]
    p.locator(f"#dlq-table tbody tr[data-id='{target}'] button.replay").click()
    wait_task(api, target, lambda view: len(view["history"]) >= 2)  # it ran again
    expect(p.locator(f"#dlq-table tbody tr[data-id='{target}']")).to_have_count(0)
    expect(p.locator("#dlq-first")).to_be_visible()  # still on the second page after a refresh
    others = [i for i in ids if i != target]
    assert {api.get(f"/api/tasks/{i}").json()["state"] for i in others} == {"dead"}

    p.click("#dlq-first")
    expect(p.locator("#dlq-first")).to_be_hidden(timeout=LIVE_TIMEOUT)
    expect(rows).to_have_count(20, timeout=LIVE_TIMEOUT)
    api.post("/api/bulk", json={"action": "delete", "filter": {"queue": [queue]}})
    board.assert_clean()


def test_periodic_and_task_types_from_the_page(
    page: tuple[Page, Dashboard], api: httpx.Client
) -> None:
    p, board = page
    row = p.locator("#periodic-table tbody tr[data-periodic=tick]")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    expect(row).to_have_attribute("data-enabled", "true")
    row.locator("button[data-action=disable]").click()
    expect(row).to_have_attribute("data-enabled", "false", timeout=LIVE_TIMEOUT)
    assert api.get("/api/periodic").json()["periodic"][0]["enabled"] is False
    row.locator("button[data-action=enable]").click()
    expect(row).to_have_attribute("data-enabled", "true", timeout=LIVE_TIMEOUT)

    expect(p.locator("#types-table tbody tr[data-type='cpu.primes']")).to_be_visible()
    expect(p.locator("#task-types option[value='cpu.primes']")).to_have_count(1)
    board.assert_clean()


def test_a_read_token_sees_no_mutating_control(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    env = {"TASKENGINE_API_TOKENS": f"admin:{ADMIN_TOKEN},read:{READ_TOKEN}"}
    with running(tmp_path / "ro", name="ro", env=env) as srv:
        with srv.client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            submit(admin, {**PRIMES, "queue": "ro-queue", "delay": 3600})
        for token, hidden in ((READ_TOKEN, True), (ADMIN_TOKEN, False)):
            context, board = new_dashboard(browser, srv.url)
            try:
                p = board.open().page
                p.fill("#token-input", token)
                p.click("#token-form button[type=submit]")
                queue = p.locator("#queues-table tbody tr[data-queue='ro-queue']")
                expect(queue).to_be_visible(timeout=LIVE_TIMEOUT)
                expect(p.locator("#control-table tbody tr[data-instance]")).to_have_count(1)
                for selector in (
                    "#queues-table button[data-action=purge]",
                    "#control-table button[data-control=drain]",
                    ".bulk-bar",
                    "#dlq-replay-all",
                    "#submit-form button[type=submit]",
                ):
                    locator = p.locator(selector).first
                    if hidden:
                        expect(locator).to_be_hidden(timeout=LIVE_TIMEOUT)
                    else:
                        expect(locator).to_be_visible(timeout=LIVE_TIMEOUT)
            finally:
                context.close()


# -- a worker process on Redis, drained from the dashboard ----------------------------------


def _redis_url(namespace: str) -> str:
    return f"redis://127.0.0.1:6379/0?namespace={namespace}"


def _drop(url: str) -> None:
    from taskengine.brokers import open_broker

    async def main() -> None:
        broker = open_broker(url)
        await broker.start()
        try:
            await broker.drop_namespace()  # type: ignore[attr-defined]
        finally:
            await broker.close()

    # Playwright's sync API runs a loop on this thread: drop from another one.
    failed: list[BaseException] = []
    thread = threading.Thread(target=lambda: _run(main(), failed))
    thread.start()
    thread.join(BOUND)
    assert not failed, failed


def _run(coroutine: Any, failed: list[BaseException]) -> None:
    try:
        asyncio.run(coroutine)
    except BaseException as exc:
        failed.append(exc)


def test_a_worker_on_redis_drained_from_the_dashboard_stops_taking_tasks(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = _redis_url(f"views-e2e-{uuid.uuid4().hex[:8]}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskengine", "--broker", url, "worker", "--workers", "2"],
        cwd=tmp_path,
        env=clean_env(data_dir=tmp_path / "wdata"),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.stderr").open("wb"),
    )
    try:
        serving = running(tmp_path / "srv", broker=url, name="redis", args=("--no-workers",))
        with serving as srv, srv.client() as client:
            deadline = time.monotonic() + BOUND
            instances: list[dict[str, object]] = []
            while time.monotonic() < deadline and not instances:
                instances = client.get("/api/instances").json()["instances"]
                time.sleep(0.1)
            assert len(instances) == 1, (tmp_path / "worker.stderr").read_text()
            name = str(instances[0]["instance"])
            ran = submit(client, PRIMES)
            wait_task(client, ran, lambda view: view["state"] == "succeeded", timeout=BOUND)

            context, board = new_dashboard(browser, srv.url)
            try:
                p = board.open().page
                row = p.locator(f"#control-table tbody tr[data-instance='{name}']")
                expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
                row.locator("button[data-control=drain]").click()
                expect(row).to_have_attribute("data-draining", "true", timeout=int(BOUND * 1000))
            finally:
                context.close()
            waiting = submit(client, PRIMES)
            time.sleep(3)  # > idle_wait: a worker taking tasks would have run it
            assert client.get(f"/api/tasks/{waiting}").json()["state"] == "queued"
            answer = client.post(f"/api/instances/{name}/control", json={"command": "resume"})
            assert answer.status_code == 202
            wait_task(client, waiting, lambda view: view["state"] == "succeeded", timeout=BOUND)
    finally:
        worker.terminate()  # our own child, by its PID
        try:
            worker.wait(BOUND)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        _drop(url)
