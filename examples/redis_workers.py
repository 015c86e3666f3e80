"""Scaling out on Redis: two worker processes share one queue (competing consumers).

    pip install -e '.[redis]'                 # from a clone (see the README's "Install")
    python examples/redis_workers.py [tasks]

It starts two `taskengine worker` processes on this file's App (as you would on two hosts),
submits a batch, waits for every result, and shows how the tasks were shared. Each task is
claimed by exactly one process: Redis runs every claim as one atomic script. SIGTERM stops the
workers gracefully. TASKENGINE_BROKER_URL picks the Redis (default: loopback, namespace
`example`; a namespace keeps engines on one Redis apart).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from taskengine import App, ResultStatus, TaskRequest

URL = os.environ.get("TASKENGINE_BROKER_URL", "redis://127.0.0.1:6379/0?namespace=example")
app = App(URL)


@app.task("image.resize")
async def resize(payload: dict[str, int]) -> dict[str, int]:
    await asyncio.sleep(0.02)  # stands for I/O: a download, an upload
    return {"image": payload["image"], "pid": os.getpid()}


def start_worker() -> subprocess.Popen[bytes]:
    """One `taskengine worker` process on this module's App."""
    here = Path(__file__).resolve().parent
    command = [sys.executable, "-m", "taskengine", "--app", "redis_workers:app", "worker"]
    return subprocess.Popen(command, cwd=here, stdout=subprocess.DEVNULL)


async def wait_for_instances(count: int, pids: list[int]) -> None:
    """Until `count` worker processes report in the broker's worker registry (their heartbeat)."""
    async with asyncio.timeout(60):
        while True:
            seen = await app.broker.workers(app.clock.now() - 30)
            if len({info.pid for info in seen if info.pid in pids}) >= count:
                return
            await asyncio.sleep(0.1)


async def main(count: int = 200) -> None:
    workers = [start_worker(), start_worker()]
    try:
        async with app:
            await wait_for_instances(2, [process.pid for process in workers])
            ids = await app.submit_many(
                [TaskRequest(type="image.resize", payload={"image": n}) for n in range(count)]
            )
            results = [await app.result(task_id, timeout=120) for task_id in ids]
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)  # graceful: finish or hand back, then exit 0
        codes = [process.wait(timeout=60) for process in workers]
    assert all(r.status is ResultStatus.SUCCESS and r.attempt == 1 for r in results)
    by_pid = Counter(result.data["pid"] for result in results)
    print(f"{count} tasks, each run once, shared by {len(by_pid)} worker processes:")
    for pid, ran in sorted(by_pid.items()):
        print(f"  worker pid {pid}: {ran} tasks")
    print(f"workers exited with {codes}")


if __name__ == "__main__":
    asyncio.run(main(*(int(arg) for arg in sys.argv[1:2])))
