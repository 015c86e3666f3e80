"""Start-up of a new NATS broker process with 100k tasks stored: replaying the whole log
against loading the newest snapshot (ADR 0031, compaction), and the streams' sizes.

    PYTHONPATH=src python -m bench.nats_startup [nats://127.0.0.1:4222] [tasks]

Two streams get the same tasks, 10 per call, one call after another (count / 10 log
messages); one is compacted. New brokers then start on each in turn
(A, B, A, B, ...), each start timed with the 1-minute load average beside it. Streams are
named `bench-startup-<random>-*` and deleted at the end."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

from taskengine.brokers import open_broker
from taskengine.model import new_task

ROUNDS = 3


async def _fill(url: str, count: int) -> None:
    broker = open_broker(url)
    await broker.start()
    now = time.time()
    tasks = [new_task("bench.noop", {"n": n}, now=now) for n in range(count)]
    for start in range(0, count, 10):  # one call of 10 tasks at a time: 1 message each
        await broker.enqueue(tasks[start : start + 10], now)
    await broker.close()


async def _start_time(url: str) -> float:
    broker = open_broker(url)
    began = time.perf_counter()
    await broker.start()
    took = time.perf_counter() - began
    await broker.close()
    return took


async def _sizes(url: str, stream: str) -> str:
    broker = open_broker(url)
    await broker.start()
    js = broker._live()  # type: ignore[attr-defined]
    parts = []
    for name in (stream, f"{stream}_snap"):
        state = (await js.stream_info(name)).state
        parts.append(f"{name}: {state.messages} msgs, {state.bytes / 1e6:.1f} MB")
    await broker.close()
    return "; ".join(parts)


async def main(server: str, count: int) -> None:
    """Fill, compact one, time the starts alternately, print the figures, clean up."""
    uid = uuid.uuid4().hex[:8]
    full, snap = f"bench-startup-{uid}-full", f"bench-startup-{uid}-snap"
    urls = {name: f"{server}?stream={name}&snapshot_seconds=0&timeout=300" for name in (full, snap)}
    try:
        for url in urls.values():
            await _fill(url, count)
        compactor = open_broker(urls[snap])
        await compactor.start()
        began = time.perf_counter()
        seq = await compactor.compact()  # type: ignore[attr-defined]
        print(f"compaction at {seq}: {time.perf_counter() - began:.2f} s")
        await compactor.close()
        for name in (full, snap):
            print(await _sizes(urls[name], name))
        for round_ in range(ROUNDS):
            for label, name in (("full replay", full), ("snapshot", snap)):
                took = await _start_time(urls[name])
                load = os.getloadavg()[0]
                print(f"round {round_ + 1} {label}: start {took:.2f} s (load {load:.1f})")
    finally:
        for url in urls.values():
            broker = open_broker(url)
            await broker.start()
            await broker.drop_stream()  # type: ignore[attr-defined]
            await broker.close()


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222",
            int(sys.argv[2]) if len(sys.argv) > 2 else 100_000,
        )
    )
