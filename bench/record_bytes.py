"""Bytes a finished task leaves on Redis, by result retention (ADR 0035).

`python -m bench.record_bytes [--url redis://127.0.0.1:6379/0] [--tasks 2000]`: in a fresh
namespace, submits that many tasks with a small email-like payload, runs each once to success
(with a small result) and sums `MEMORY USAGE` (exact: SAMPLES 0) over every key of the
namespace, for keep_result None (the global 24 h retention), 3600 (a TTL) and 0 (not kept).
The namespace is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from redis.asyncio import Redis

from taskengine.brokers.redis import RedisBroker
from taskengine.model import Outcome, OutcomeKind, ResultStatus, TaskResult, new_task

PAYLOAD = {"to": "someone@example.com", "subject": "Your receipt", "order": 123456}
RESULT = {"sent": True, "message_id": "0123456789abcdef"}


async def measure(url: str, tasks: int, keep_result: float | None) -> int:
    """Total bytes of the namespace's keys after `tasks` tasks succeeded with `keep_result`."""
    namespace = f"bytes-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(f"{url}?namespace={namespace}&server_clock=false", max_depth=tasks + 1)
    await broker.start()
    try:
        now = 1_800_000_000.0
        batch = [
            new_task("email.send", PAYLOAD, now=now, keep_result=keep_result) for _ in range(tasks)
        ]
        await broker.enqueue(batch, now)
        leases = await broker.reserve("bench/w1", tasks, 30.0, now)
        outcomes = [
            Outcome(
                kind=OutcomeKind.SUCCEEDED,
                task_id=lease.task_id,
                token=lease.token,
                result=TaskResult(
                    task_id=lease.task_id,
                    status=ResultStatus.SUCCESS,
                    data=RESULT,
                    duration=0.001,
                    worker_id="bench/w1",
                    completed_at=now,
                ),
            )
            for lease in leases
        ]
        assert all(await broker.settle(outcomes, now))
        return await _namespace_bytes(url, broker.keys.pattern)
    finally:
        await broker.drop_namespace()
        await broker.close()


async def _namespace_bytes(url: str, pattern: str) -> int:
    client = Redis.from_url(url)
    try:
        total = 0
        async for key in client.scan_iter(match=pattern, count=1000):
            total += int(await client.memory_usage(key, samples=0) or 0)
        return total
    finally:
        await client.aclose()


async def main(url: str, tasks: int) -> None:
    """Print bytes per finished task for each retention."""
    base: float | None = None
    for keep in (None, 3600.0, 0.0):
        per_task = await measure(url, tasks, keep) / tasks
        base = per_task if base is None else base
        label = "global (24 h)" if keep is None else f"keep_result={keep:g}"
        print(f"{label:>20}: {per_task:8.0f} B per finished task ({base - per_task:+.0f} saved)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.record_bytes", description=__doc__)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.tasks))
