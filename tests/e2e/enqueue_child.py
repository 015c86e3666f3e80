"""The process the durability test kills: enqueue checkable tasks forever, acknowledging each.

    python tests/e2e/enqueue_child.py DB_PATH FIRST_N SEED

Opens `sqlite:///DB_PATH` with the broker's defaults (synchronous=FULL) and runs 1-8 concurrent
callers (so several `enqueue` calls are in flight and the writer can group-commit them). Each
caller enqueues batches of 1-200 tasks numbered from FIRST_N upwards and, only after its
`enqueue` call has returned, writes the batch's ids to stdout, one per line, and flushes. Every
field of task n is a function of n (`expected_task`), so the test can check what was stored.
On anything unexpected it writes a line starting with "ERROR" and exits with status 3.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Any

from taskengine.brokers import open_broker
from taskengine.model import Priority, Task
from taskengine.model.task import new_task

T0 = 1_700_000_000.0
TYPES = ("durable.a", "durable.b")
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def task_id(n: int) -> str:
    """A ULID-shaped id for task n (time part T0, random part n): unique and sortable."""
    value = (int(T0 * 1000) << 80) | n
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def number(task_id_: str) -> int:
    """The n of `task_id(n)`."""
    value = 0
    for char in task_id_:
        value = (value << 5) | _ALPHABET.index(char)
    return value & ((1 << 80) - 1)


def payload(n: int) -> dict[str, Any]:
    """A payload whose every part can be recomputed from n; 0-3 KB, so batches vary in size."""
    return {
        "n": n,
        "blob": "x" * ((n * 7919) % 3000),
        "sum": (n * 2_654_435_761) % 2**32,
        "nested": [n, str(n), {"odd": n % 2 == 1}],
    }


def expected_task(n: int) -> Task:
    """Task n exactly as the child sends it."""
    return new_task(
        TYPES[n % 2],
        payload(n),
        now=T0 + n / 1000,
        priority=Priority(n % 3),
        queue=f"q{n % 4}",
        max_attempts=1 + n % 25,
        task_id=task_id(n),
    )


def batch_size(rng: random.Random) -> int:
    """Mostly small batches, some large: 1..200."""
    return rng.choice((1, 1, 2, 3, 5, 10, rng.randint(1, 200), rng.randint(100, 200)))


async def produce(db: str, first: int, seed: int) -> None:
    rng = random.Random(seed)
    # A long soak run stores millions of tasks: lift the depth limit (backpressure is not tested).
    broker = open_broker(f"sqlite:///{db}", max_depth=10**9)
    await broker.start()
    next_n = first
    out = sys.stdout

    async def caller() -> None:
        nonlocal next_n
        while True:
            size = batch_size(rng)
            start, next_n = next_n, next_n + size  # no await in between: ranges never overlap
            batch = [expected_task(n) for n in range(start, start + size)]
            results = await broker.enqueue(batch, time.time())
            bad = [r for r, t in zip(results, batch, strict=False) if r.id != t.id or not r.created]
            if len(results) != len(batch) or bad:
                out.write(f"ERROR enqueue answered {results[:3]!r}... for {len(batch)} tasks\n")
                out.flush()
                sys.exit(3)
            # The acknowledgement: only now does the test count these tasks as durable.
            out.write("".join(f"{t.id}\n" for t in batch))
            out.flush()

    await asyncio.gather(*(caller() for _ in range(rng.randint(1, 8))))


def main() -> None:
    db, first, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    asyncio.run(produce(db, first, seed))


if __name__ == "__main__":
    main()
