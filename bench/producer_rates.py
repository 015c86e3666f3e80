"""The producer: `App.submit_many` of 10,000 no-op tasks in one call, tasks/s, per broker.

Each run opens a fresh app on a fresh store (memory, or a Redis namespace of its own that is
dropped afterwards) and times one `submit_many` of `TASKS` requests: building and validating
each task, and the broker storing the batch. Three payload shapes: none, a small dict to a
type annotated `dict` (no conversion at submit), and the same dict to a type annotated with a
msgspec struct (converted, so validated, at submit).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from bench import loop_runner, row
from taskengine.app import App, TaskRequest
from taskengine.settings import Settings

TASKS = 10_000
REDIS_URL = "redis://127.0.0.1:6379/0"
PAYLOAD = {"user": 42, "email": "someone@example.com", "tags": ["a", "b"]}


class Signup(msgspec.Struct):
    """The struct payload of the converted case."""

    user: int
    email: str
    tags: list[str]


def make_app(url: str) -> App:
    """An app with the three producer task types."""
    app = App(settings=Settings(broker_url=url, max_depth=10**8))

    @app.task("bench.noop")
    async def noop(payload: Any) -> None:
        return None

    @app.task("bench.dict")
    async def with_dict(payload: dict) -> None:  # type: ignore[type-arg]
        return None

    @app.task("bench.struct")
    async def with_struct(payload: Signup) -> None:
        return None

    return app


CASES: dict[str, tuple[str, Any]] = {
    "no payload": ("bench.noop", None),
    "dict payload, dict annotation": ("bench.dict", PAYLOAD),
    "dict payload, struct annotation": ("bench.struct", PAYLOAD),
}


async def submit_rate(url: str, task_type: str, payload: Any, count: int = TASKS) -> float:
    """Tasks/s of one `submit_many` of `count` requests on a fresh store."""
    if url.startswith("redis"):
        url = f"{url}?namespace=producer{uuid.uuid4().hex[:8]}"
    app = make_app(url)
    await app.start()
    try:
        requests = [TaskRequest(type=task_type, payload=payload) for _ in range(count)]
        started = time.perf_counter()
        await app.submit_many(requests)
        elapsed = time.perf_counter() - started
        if url.startswith("redis"):
            await app.broker.drop_namespace()  # type: ignore[attr-defined]
    finally:
        await app.close()
    return count / elapsed


async def _measure(runs: int, urls: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for url in urls:
        broker = url.split(":", 1)[0]
        for case, (task_type, payload) in CASES.items():
            values = [await submit_rate(url, task_type, payload) for _ in range(runs)]
            rows.append(row(f"{broker}, submit_many of {TASKS:,}, {case} (tasks/s)", values))
    return rows


def run(runs: int = 3, urls: tuple[str, ...] = ("memory://", REDIS_URL)) -> list[dict[str, Any]]:
    """Every producer figure, `runs` times each."""
    return loop_runner(_measure(runs, urls))  # type: ignore[no-any-return]
