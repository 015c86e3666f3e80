"""Time-shaped built-in task types: a plain sleep and a chunked batch that reports progress."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec

from taskengine.registry import TaskContext


class SleepPayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Sleep for `seconds` on the event loop."""

    seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)]


class BatchPayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Process `items` in chunks, pausing `delay_per_chunk` seconds after each one."""

    items: Annotated[list[Any], msgspec.Meta(max_length=100_000)]
    chunk_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    delay_per_chunk: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.0


async def sleep(payload: SleepPayload) -> dict[str, float]:
    """Sleep without blocking the loop; return the requested duration."""
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds}


async def batch(payload: BatchPayload, ctx: TaskContext) -> dict[str, int | float]:
    """Count the items and sum the numeric ones, chunk by chunk, reporting progress."""
    total = len(payload.items)
    done = chunks = numeric = 0
    acc: int | float = 0
    size = payload.chunk_size
    count = -(-total // size)  # chunks, rounded up
    ctx.progress(0, total, f"chunk 0 of {count}")
    for start in range(0, total, payload.chunk_size):
        chunk = payload.items[start : start + payload.chunk_size]
        for item in chunk:
            if isinstance(item, int | float) and not isinstance(item, bool):
                acc += item
                numeric += 1
        done += len(chunk)
        chunks += 1
        ctx.progress(done, total, f"chunk {chunks} of {count}")
        await asyncio.sleep(payload.delay_per_chunk)  # yields to the loop even when 0
    return {"processed": done, "chunks": chunks, "numeric": numeric, "sum": acc}
