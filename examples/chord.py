"""A chord of 100 tasks and a chain, end to end: dependencies and workflows (ADR 0037).

    python examples/chord.py [N]

Squares 0..N-1 (default 100) in parallel, then one callback adds them up: the callback
receives every member's result, in the group's order, through its context
(`ctx.parent_results`). Then a chain where each step adds to the previous step's result. Tasks
are stored in `chord.db` in the current directory; a worker pool runs in this process.
"""

from __future__ import annotations

import asyncio
import sys

from taskengine import App, chain, chord, signature
from taskengine.registry import TaskContext

app = App("sqlite:///chord.db")


@app.task("math.square")
async def square(payload: dict[str, int]) -> int:
    """One member of the group."""
    return payload["n"] ** 2


@app.task("math.total")
async def total(payload: None, ctx: TaskContext) -> int:
    """The chord's callback: every member's result arrives in order."""
    return sum(ctx.parent_results)


@app.task("math.add")
async def add(payload: dict[str, int], ctx: TaskContext) -> int:
    """A chain step: the previous step's result (none for the first) plus `n`."""
    return sum(ctx.parent_results) + payload["n"]


async def main(n: int) -> None:
    async with app:
        engine = app.engine(workers=8)
        await engine.start()
        try:
            squares = chord(
                [signature("math.square", {"n": i}) for i in range(n)], signature("math.total")
            )
            flow = await app.submit_workflow(squares)  # n + 1 tasks, one enqueue batch
            callback = flow.tasks[str(n)]
            result = await app.result(callback, timeout=120)
            print(f"chord of {n}: sum of squares = {result.data} (workflow {flow.id})")

            steps = await app.submit_workflow(
                chain(*(signature("math.add", {"n": k}) for k in (1, 2, 3, 4)))
            )
            last = await app.result(steps.tasks["3"], timeout=120)
            print(f"chain 1+2+3+4 = {last.data}")
        finally:
            await engine.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
