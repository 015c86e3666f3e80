"""bounded_page on the memory broker, in process: the byte budget, the cursor, the chunks."""

from __future__ import annotations

from typing import Any

import msgspec

from taskengine.api.paging import bounded_page
from taskengine.brokers.base import TaskFilter
from taskengine.testing import memory_app


async def _pages(sizes: list[int], limit: int, budget: int) -> tuple[list[list[Any]], list[str]]:
    """Submit one task per size (its payload that many characters); page through them all:
    each page as [id, payload size] pairs."""
    app = memory_app(builtins=False)
    app.task("blob")(_blob)
    await app.start()
    try:
        ids = [await app.submit("blob", "x" * size) for size in sizes]
        pages: list[list[Any]] = []
        cursor = None
        while True:
            raw = await bounded_page(app.broker, TaskFilter(), limit, cursor, budget)
            assert len(raw) <= budget or len(msgspec.json.decode(raw)["items"]) == 1
            page = msgspec.json.decode(raw)
            pages.append([[item["id"], len(item["payload"])] for item in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                return pages, ids
    finally:
        await app.close()


async def _blob(payload: str) -> None:
    pass


async def test_small_tasks_fill_the_limit() -> None:
    pages, _ = await _pages([10] * 120, limit=50, budget=1_000_000)
    assert [len(p) for p in pages] == [50, 50, 20]


async def test_big_tasks_end_a_page_early_and_every_task_is_listed_once() -> None:
    sizes = [30_000, 1000, 5000, 200_000, 40_000, 10, 90_000, 90_000]
    pages, ids = await _pages(sizes, limit=500, budget=100_000)
    assert [task_id for page in pages for task_id, _ in page] == sorted(ids, reverse=True)
    assert all(pages)
    assert [[ids[3], 200_000]] in pages  # a task bigger than the budget comes alone
    assert len(pages) >= 4
