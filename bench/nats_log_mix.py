"""One NATS latency run (`bench.latency.one_run`, single submits) with its stages' p50/p90/p99,
then what its log holds: messages per task, by the operations each message carries.

    PYTHONPATH=src:. python -m bench.nats_log_mix [rate]

The run's stream is kept until it is counted, then deleted. Prints one line per figure set,
with the 1-minute load average before and after the run (docs/BENCHMARKS.md, NATS latency)."""

from __future__ import annotations

import asyncio
import collections
import os
import statistics
import sys
import uuid

import nats

from bench import latency
from taskengine.brokers.nats.codec import decode_message
from taskengine.brokers.nats.ops import Enqueue

SERVER = "nats://127.0.0.1:4222"


async def _keep(url: str) -> None:
    """Instead of dropping the run's stream: it is counted first."""


async def log_mix(stream: str) -> str:
    """Messages per enqueued task and the operations they carry, read back from `stream`;
    deletes it."""
    nc = await nats.connect(SERVER)
    js = nc.jetstream()
    try:
        messages = (await js.stream_info(stream)).state.messages
        sub = await js.subscribe(f"taskengine.{stream}.log", ordered_consumer=True)
        kinds: collections.Counter[str] = collections.Counter()
        ops: collections.Counter[str] = collections.Counter()
        parts: dict[str, list[bytes]] = {}
        tasks = 0
        for _ in range(messages):
            batch = decode_message((await sub.next_msg(timeout=10)).data, parts)
            if batch is not None:
                kinds["+".join(sorted({type(op).__name__ for op in batch.ops}))] += 1
                ops.update(type(op).__name__ for op in batch.ops)
                tasks += sum(len(op.tasks) for op in batch.ops if isinstance(op, Enqueue))
        return (
            f"log: {messages} messages for {tasks} tasks enqueued ({messages / max(tasks, 1):.2f} "
            f"per task); "
            f"messages by what they carry {dict(kinds.most_common())}; operations {dict(ops)}"
        )
    finally:
        await js.delete_stream(stream)
        await nc.close()


def main(rate: int) -> None:
    """One run at `rate` tasks/s offered; print its stages and its log's mix."""
    latency._drop_storage = _keep  # type: ignore[assignment]
    stream = f"lat{uuid.uuid4().hex[:8]}"
    before = os.getloadavg()[0]
    measured = latency.one_run(f"{SERVER}?stream={stream}", rate, 1)
    after = os.getloadavg()[0]
    cells = []
    for key in ("total", *latency.STAGES):
        q = statistics.quantiles(measured[key], n=100)
        cells.append(f"{key} {q[49]:.2f}/{q[89]:.2f}/{q[98]:.2f}")
    reserves = measured.get("reserves", [float("nan")])[0]
    empty = measured.get("empty reserves", [float("nan")])[0]
    print(
        f"nats {rate}/s single, load {before:.1f} -> {after:.1f}, p50/p90/p99 ms: "
        + ", ".join(cells)
        + f"; reserves per task {reserves:.2f} (empty {empty:.2f})",
        flush=True,
    )
    print(asyncio.run(log_mix(stream)), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000)
