"""Redis server time per task spent in each broker script (enqueue, reserve, settle).

    python -m bench.redis_script_cost [--url redis://127.0.0.1:6379/0] [--tasks 20000]

Reads `INFO commandstats` (EVALSHA's total microseconds) before and after each phase on a
fresh namespace: enqueue in batches of 500, reserve and settle in batches of 100. The server's
own clock: no client or network time is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from redis.asyncio import Redis

from taskengine.brokers import open_broker
from taskengine.model import ResultStatus, TaskResult, new_task
from taskengine.model import outcome as outcomes


async def _script_usec(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def measure(url: str, count: int) -> dict[str, float]:
    """Microseconds of server time per task for each phase."""
    namespace = f"cost{uuid.uuid4().hex[:8]}"
    broker = open_broker(f"{url}?namespace={namespace}", max_depth=10**8)
    client = Redis.from_url(url)
    await broker.start()
    try:
        now = time.time()
        tasks = [new_task("bench.noop", None, now=now) for _ in range(count)]
        marks = [await _script_usec(client)]
        for start in range(0, count, 500):
            await broker.enqueue(tasks[start : start + 500], time.time())
        marks.append(await _script_usec(client))
        leases = []
        while got := await broker.reserve("w1", 100, 30.0, time.time(), None):
            leases += got
        marks.append(await _script_usec(client))
        for start in range(0, len(leases), 100):
            now = time.time()
            done = [
                outcomes.succeeded(
                    lease,
                    TaskResult(
                        task_id=lease.task_id,
                        status=ResultStatus.SUCCESS,
                        completed_at=now,
                        attempt=lease.record.attempt,
                    ),
                )
                for lease in leases[start : start + 100]
            ]
            await broker.settle(done, now)
        marks.append(await _script_usec(client))
        await broker.drop_namespace()
    finally:
        await broker.close()
        await client.aclose()
    phases = ("enqueue", "reserve", "settle")
    return {name: (marks[i + 1] - marks[i]) / count for i, name in enumerate(phases)}


def main() -> None:
    """Print µs of Redis server time per task for each script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    for name, usec in asyncio.run(measure(args.url, args.tasks)).items():
        print(f"{name}: {usec:.1f} µs of server time per task")


if __name__ == "__main__":
    main()
