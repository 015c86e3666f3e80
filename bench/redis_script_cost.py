"""Redis server time per task spent in each broker script (enqueue, reserve, settle).

    python -m bench.redis_script_cost [--url redis://127.0.0.1:6379/0] [--tasks 20000]
        [--pid PID] [--rounds 1]

Reads `INFO commandstats` before and after each phase on a fresh namespace: enqueue in batches
of 500, reserve and settle in batches of 100. EVALSHA's microseconds are the script's whole
cost; Redis also counts each command a script calls, which gives the breakdown printed below
each phase. The server's own clock: no client or network time is counted.

Both figures are wall time inside the server, so a busy machine inflates them (the server is
preempted mid-command) and a shared server adds the other clients' commands. With --pid (a
redis-server of your own on this machine), the server process's CPU time per task in each phase
is printed too (/proc, utime + stime: parsing, scripts and replies, not time preempted); with
--rounds N, each figure is the median of N rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
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


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` so far (0.0 without a pid)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    url: str, count: int, pid: int | None = None
) -> dict[str, dict[str, tuple[float, float]]]:
    """Per phase, the calls and µs of server time per task of each command (and, with `pid`,
    the server process's CPU µs per task under the name "process")."""
    namespace = f"cost{uuid.uuid4().hex[:8]}"
    broker = open_broker(f"{url}?namespace={namespace}", max_depth=10**8)
    client = Redis.from_url(url)
    await broker.start()
    try:
        now = time.time()
        tasks = [new_task("bench.noop", None, now=now) for _ in range(count)]
        marks = [await _command_stats(client)]
        cpu = [_cpu_seconds(pid)]
        for start in range(0, count, 500):
            await broker.enqueue(tasks[start : start + 500], time.time())
        cpu.append(_cpu_seconds(pid))
        marks.append(await _command_stats(client))
        leases = []
        while got := await broker.reserve("w1", 100, 30.0, time.time(), None):
            leases += got
        cpu.append(_cpu_seconds(pid))
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
        cpu.append(_cpu_seconds(pid))
        marks.append(await _command_stats(client))
        await broker.drop_namespace()
    finally:
        await broker.close()
        await client.aclose()
    phases = ("enqueue", "reserve", "settle")
    out = {name: _per_task(marks[i], marks[i + 1], count) for i, name in enumerate(phases)}
    if pid is not None:
        for i, name in enumerate(phases):
            out[name]["process"] = (0.0, (cpu[i + 1] - cpu[i]) * 1e6 / count)
    return out


def _median(
    rounds: list[dict[str, dict[str, tuple[float, float]]]],
) -> dict[str, dict[str, tuple[float, float]]]:
    """Per phase and command, the median calls and µs over the rounds that ran it."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for phase in rounds[0]:
        names = {name for r in rounds for name in r[phase]}
        out[phase] = {
            name: (
                statistics.median(r[phase].get(name, (0.0, 0.0))[0] for r in rounds),
                statistics.median(r[phase].get(name, (0.0, 0.0))[1] for r in rounds),
            )
            for name in names
        }
    return out


def main() -> None:
    """Print µs of Redis server time per task for each script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--pid", type=int, default=None, help="the server's pid (local)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rounds = [asyncio.run(measure(args.url, args.tasks, args.pid)) for _ in range(args.rounds)]
    for phase, commands in _median(rounds).items():
        usec = commands.get("evalsha", (0.0, 0.0))[1]
        line = f"{phase}: {usec:.1f} µs of server time per task"
        if "process" in commands:
            line += f" ({commands['process'][1]:.1f} µs of server process CPU)"
        print(line)
        ranked = sorted(commands.items(), key=lambda item: -item[1][1])
        for name, (calls, cost) in ranked:
            if name not in ("evalsha", "process"):
                print(f"    {name:<18} {calls:6.2f} calls {cost:6.2f} µs per task")


if __name__ == "__main__":
    main()
