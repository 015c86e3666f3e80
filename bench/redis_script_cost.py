"""Redis server time per task spent in each broker script (enqueue, reserve, settle).

    python -m bench.redis_script_cost [--url redis://127.0.0.1:6379/0] [--tasks 20000]

Reads `INFO commandstats` before and after each phase on a fresh namespace: enqueue in batches
of 500, reserve and settle in batches of 100. EVALSHA's microseconds are the script's whole
cost; Redis also counts each command a script calls, which gives the breakdown printed below
each phase. The server's own clock: no client or network time is counted.
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

Stats = dict[str, tuple[int, int]]  # command -> (calls, usec)


async def _command_stats(client: Redis) -> Stats:
    stats = await client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
    }


def _per_task(before: Stats, after: Stats, count: int) -> dict[str, tuple[float, float]]:
    """Calls and µs per task of every command that ran between two readings."""
    out = {}
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0))
        if calls > calls0 and name != "info":
            out[name] = ((calls - calls0) / count, (usec - usec0) / count)
    return out


async def measure(url: str, count: int) -> dict[str, dict[str, tuple[float, float]]]:
    """Per phase, the calls and µs of server time per task of each command."""
    namespace = f"cost{uuid.uuid4().hex[:8]}"
    broker = open_broker(f"{url}?namespace={namespace}", max_depth=10**8)
    client = Redis.from_url(url)
    await broker.start()
    try:
        now = time.time()
        tasks = [new_task("bench.noop", None, now=now) for _ in range(count)]
        marks = [await _command_stats(client)]
        for start in range(0, count, 500):
            await broker.enqueue(tasks[start : start + 500], time.time())
        marks.append(await _command_stats(client))
        leases = []
        while got := await broker.reserve("w1", 100, 30.0, time.time(), None):
            leases += got
        marks.append(await _command_stats(client))
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
        marks.append(await _command_stats(client))
        await broker.drop_namespace()
    finally:
        await broker.close()
        await client.aclose()
    phases = ("enqueue", "reserve", "settle")
    return {name: _per_task(marks[i], marks[i + 1], count) for i, name in enumerate(phases)}


def main() -> None:
    """Print µs of Redis server time per task for each script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    for phase, commands in asyncio.run(measure(args.url, args.tasks)).items():
        usec = commands.get("evalsha", (0.0, 0.0))[1]
        print(f"{phase}: {usec:.1f} µs of server time per task")
        ranked = sorted(commands.items(), key=lambda item: -item[1][1])
        for name, (calls, cost) in ranked:
            if name != "evalsha":
                print(f"    {name:<18} {calls:6.2f} calls {cost:6.2f} µs per task")


if __name__ == "__main__":
    main()
