"""Periodic tasks: a cron schedule (UTC) submitted once per slot, however many instances run.

    python examples/periodic.py [ticks]

`app.periodic(name, cron, type, payload)` adds a schedule; a six-field cron has seconds. The
worker that holds the scheduler lease submits each slot as a task keyed by its slot, so two
instances never submit it twice, and a standby takes over within five seconds if the holder
dies. This script runs the schedule below until it has seen `ticks` slots, then stops.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from taskengine import App
from taskengine.brokers import TaskFilter

app = App("sqlite:///periodic.db")
app.periodic("heartbeat", "* * * * * *", "status.heartbeat", {"service": "billing"})  # each second
app.periodic("nightly", "0 3 * * *", "report.nightly", {"pages": 3})  # 03:00 UTC, daily

seen: list[str] = []
ticked = asyncio.Event()  # set by every heartbeat run


@app.task("status.heartbeat")
async def heartbeat(payload: dict[str, str]) -> str:
    now = datetime.now(UTC).strftime("%H:%M:%S")
    seen.append(now)
    ticked.set()
    return f"{payload['service']} alive at {now}"


@app.task("report.nightly")
async def nightly(payload: dict[str, int]) -> dict[str, int]:
    return {"pages": payload["pages"]}


async def main(ticks: int = 3) -> None:
    async with app:
        started = app.clock.now()
        engine = app.engine(scheduler_every=0.2)  # how often the scheduler looks for due slots
        await engine.start()
        try:
            async with asyncio.timeout(ticks + 30):
                while len(seen) < ticks:
                    await ticked.wait()
                    ticked.clear()
        finally:
            await engine.stop()
        ran = TaskFilter(types=frozenset({"status.heartbeat"}), created_after=started)
        page = await app.broker.list_tasks(ran, 100)
        print(f"{len(seen)} heartbeats ran, from {len(page.items)} tasks (one per slot):")
        for record in reversed(page.items):
            print(f"  {record.state}: {record.result.data if record.result else None}")


if __name__ == "__main__":
    asyncio.run(main(*(int(arg) for arg in sys.argv[1:2])))
