"""time.sleep and time.batch: results, progress, yielding, payload validation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from taskengine.builtins import BuiltinConfig, builtin_registry
from taskengine.builtins.timed import BatchPayload, SleepPayload, batch, sleep
from taskengine.registry import InvalidPayload, Registry, TaskContext


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return builtin_registry(BuiltinConfig(data_dir=str(tmp_path)))


class Recorder(TaskContext):
    def __init__(self) -> None:
        super().__init__("task-1", 1, "worker-1")
        self.seen: list[tuple[int, int, str | None]] = []

    def progress(self, done: int, total: int = 0, note: str | None = None) -> None:
        super().progress(done, total, note)
        self.seen.append((done, total, note))


async def test_sleep() -> None:
    assert await sleep(SleepPayload(0.01)) == {"slept": 0.01}


async def test_batch_sums_counts_and_reports_progress() -> None:
    ctx = Recorder()
    items: list[Any] = [1, 2, 3.5, "x", None, True, 4, 5]
    result = await batch(BatchPayload(items=items, chunk_size=3), ctx)
    assert result == {"processed": 8, "chunks": 3, "numeric": 5, "sum": 15.5}
    assert ctx.seen == [
        (0, 8, "chunk 0 of 3"),
        (3, 8, "chunk 1 of 3"),
        (6, 8, "chunk 2 of 3"),
        (8, 8, "chunk 3 of 3"),
    ]
    assert (ctx.progress_done, ctx.progress_total) == (8, 8)


async def test_batch_yields_to_the_loop_between_chunks() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    await batch(BatchPayload(items=list(range(100)), chunk_size=10), Recorder())
    other.cancel()
    assert ticks >= 5


async def test_an_empty_batch() -> None:
    assert await batch(BatchPayload(items=[]), Recorder()) == {
        "processed": 0,
        "chunks": 0,
        "numeric": 0,
        "sum": 0,
    }


def test_specs(registry: Registry) -> None:
    assert registry.get("time.sleep").executor == "async"
    batch_spec = registry.get("time.batch")
    assert batch_spec.wants_context
    assert batch_spec.convert({"items": [1], "chunk_size": 1}) == BatchPayload(
        items=[1], chunk_size=1
    )


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("time.sleep", {"seconds": -1}),
        ("time.sleep", {"seconds": 3601}),
        ("time.sleep", {}),
        ("time.batch", {"items": [0] * 100_001}),
        ("time.batch", {"items": [], "chunk_size": 0}),
        ("time.batch", {"items": [], "chunk_size": 10_001}),
        ("time.batch", {"items": [], "delay_per_chunk": 11}),
        ("time.batch", {"items": "abc"}),
    ],
)
def test_invalid_payloads_are_refused_at_submit(
    registry: Registry, name: str, payload: dict[str, Any]
) -> None:
    with pytest.raises(InvalidPayload):
        registry.get(name).convert(payload)
