"""A rate-limited fan-out: 40 calls to a fragile API, at most 4 at once and 20 per second.

    python examples/rate_limited.py

`rate_limit` and `max_concurrency` hold across every engine sharing the broker (ADR 0038):
the broker claims a task only while its type has a free slot and a token, so a fan-out of any
size never floods the API, and a task held back waits in the queue without spending an
attempt. `unique_for` makes a repeated submission answer the first task's id. Change the
limits while it runs with `taskengine limits set type api.fetch --rate 5/s`.
"""

from __future__ import annotations

import asyncio
import time

from taskengine import App, TaskRequest

app = App("sqlite:///rate_limited.db")
running = 0
most = 0


@app.task("api.fetch", rate_limit="20/s", max_concurrency=4)
async def fetch(page: int) -> dict[str, int]:
    global running, most
    running += 1
    most = max(most, running)
    await asyncio.sleep(0.05)  # the call to the fragile API
    running -= 1
    return {"page": page}


async def main() -> None:
    async with app:
        engine = app.engine(workers=16)
        await engine.start()
        try:
            began = time.monotonic()
            ids = await app.submit_many(
                [TaskRequest(type="api.fetch", payload=n, unique_for=60) for n in range(40)]
            )
            again = await app.submit("api.fetch", 0, unique_for=60)  # a repeat: the same task
            results = [await app.result(task_id, timeout=60) for task_id in ids]
            took = time.monotonic() - began
        finally:
            await engine.stop()
    done = sum(result.status == "SUCCESS" for result in results)
    print(f"{done} of {len(ids)} pages fetched, at most {most} at once, in {took:.1f} s")
    print(f"the repeat got the first task: {again == ids[0]}")


if __name__ == "__main__":
    asyncio.run(main())
