"""The README's quick start as one script: the built-in task types, a worker pool, results.

    python examples/quickstart.py

It stores tasks in `quickstart.db` in the current directory (delete it to start afresh),
runs a worker pool in this process, submits built-in tasks and prints their results. `taskengine
serve` does the same with an HTTP API and a dashboard in front.
"""

from __future__ import annotations

import asyncio

from taskengine import App


async def main() -> None:
    # builtins=True: cpu.primes, cpu.sha256, time.sleep, io.http... (a plain App has only yours)
    app = App("sqlite:///quickstart.db", builtins=True)
    async with app:
        engine = app.engine(processes=2)  # cpu.* run in child processes
        await engine.start()
        try:
            primes = await app.submit("cpu.primes", {"limit": 100_000})
            digest = await app.submit("cpu.sha256", {"size": 1_048_576}, priority="high")
            nap = await app.submit("time.sleep", {"seconds": 0.2}, priority="low")
            for task_id in (primes, digest, nap):
                result = await app.result(task_id, timeout=60)
                record = await app.get(task_id)
                print(f"{record.type:<12} {result.status}  {result.data}")
        finally:
            await engine.stop()


if __name__ == "__main__":
    asyncio.run(main())
