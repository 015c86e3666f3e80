"""Synchronous producers (a Django view, a script): one connection, reused, on every broker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskengine.app
from taskengine.app import App, TaskRequest
from taskengine.brokers import open_broker
from taskengine.errors import ConfigurationError
from taskengine.model import ResultStatus, TaskState
from taskengine.registry import UnknownTaskType
from taskengine.settings import Settings
from taskengine.testing import running_worker
from tests.brokers.support import broker_urls, drop_storage, fill_url, url_id

SHARED_URLS = [url for url in broker_urls(oldest=False) if not url.startswith("memory")]


async def _double(payload: int) -> int:
    return 2 * payload


def _app(url: str) -> App:
    app = App(settings=Settings(broker_url=url, idle_wait=0.05))
    app.task("double")(_double)
    return app


@pytest.fixture(params=SHARED_URLS, ids=url_id)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A broker URL of its own (namespace, schema or file), dropped after the test."""
    filled = fill_url(request.param, tmp_path)
    yield filled

    async def drop() -> None:
        broker = open_broker(filled)
        await broker.start()
        await drop_storage(broker)
        await broker.close()

    asyncio.run(drop())


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs of every broker an App opens from now on."""
    urls: list[str] = []
    real = taskengine.app.open_broker

    def counting(url: str, **options: object) -> object:
        urls.append(url)
        return real(url, **options)

    monkeypatch.setattr(taskengine.app, "open_broker", counting)
    return urls


def test_submit_sync_reuses_one_connection_across_calls_and_threads(
    url: str, opened: list[str]
) -> None:
    app = _app(url)
    ids = [app.submit_sync("double", n) for n in range(10)]

    def produce() -> None:
        for n in range(10):
            ids.append(app.submit_sync("double", n))

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(set(ids)) == 50
    assert len(opened) == 1  # the sync client's broker, once for 50 submissions
    records = [app.sync().get(task_id) for task_id in ids]
    assert {record.state for record in records} == {TaskState.QUEUED}
    app.sync().close()


async def test_a_batch_is_submitted_and_its_results_awaited_from_a_thread(url: str) -> None:
    app = _app(url)
    client = app.sync()
    requests = [TaskRequest(type="double", payload=n) for n in range(20)]
    async with app, running_worker(app):
        # A synchronous caller (another thread) submits and blocks; the worker runs here.
        ids = await asyncio.to_thread(client.submit_many, requests)
        results = [await asyncio.to_thread(client.result, task_id, 60) for task_id in ids]
    assert [result.status for result in results] == [ResultStatus.SUCCESS] * 20
    stored = [await asyncio.to_thread(client.get, task_id) for task_id in ids]
    assert [record.result.data for record in stored if record.result] == [2 * n for n in range(20)]
    client.close()


def test_bad_input_fails_in_the_caller_before_any_connection(
    tmp_path: Path, opened: list[str]
) -> None:
    app = _app(f"sqlite:///{tmp_path}/t.db")
    with pytest.raises(UnknownTaskType):
        app.submit_sync("no.such.type", 1)
    with pytest.raises(UnknownTaskType):
        app.sync().submit_many([TaskRequest(type="double", payload=1), TaskRequest(type="x")])
    assert opened == []


def test_closed_then_used_again_reopens(tmp_path: Path, opened: list[str]) -> None:
    app = _app(f"sqlite:///{tmp_path}/t.db")
    with app.sync() as client:
        first = client.submit("double", 1)
    second = app.submit_sync("double", 2)
    assert app.sync().get(first).state is app.sync().get(second).state is TaskState.QUEUED
    app.sync().close()
    app.sync().close()  # idempotent
    assert len(opened) == 2


async def test_a_sync_call_inside_an_event_loop_is_refused(tmp_path: Path) -> None:
    app = _app(f"sqlite:///{tmp_path}/t.db")
    with pytest.raises(RuntimeError, match=r"await app\.submit"):
        app.submit_sync("double", 1)


def test_a_memory_broker_is_refused_with_a_reason() -> None:
    app = _app("memory://")
    with pytest.raises(ConfigurationError, match="memory"):
        app.submit_sync("double", 1)
