"""An acknowledged enqueue survives SIGKILL: the SQLite broker's durability promise, for real.

A child process (`enqueue_child.py`) enqueues checkable tasks into one SQLite file with several
calls in flight, printing each id only after its `enqueue` returned. The test kills it with
SIGKILL at a random moment, many times over on the same file, then opens the file and checks
that every acknowledged task is there, exactly as sent, that nothing stored is torn, and that
SQLite's own integrity check passes. Set TASKENGINE_DURABILITY_SEED to replay a run and
TASKENGINE_DURABILITY_ROUNDS for a longer soak.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

from taskengine.brokers import TaskFilter, open_broker
from taskengine.model import TaskState
from tests.e2e.enqueue_child import expected_task, number

CHILD = Path(__file__).with_name("enqueue_child.py")
ROUNDS = int(os.environ.get("TASKENGINE_DURABILITY_ROUNDS") or 25)  # more for a soak run
BUDGET = max(40.0, 2.0 * ROUNDS)  # seconds of kill rounds at most, however fast they go
IDS_PER_ROUND = 10_000_000  # round r numbers its tasks from r * IDS_PER_ROUND
FIRST_ACK_TIMEOUT = 15.0
CHUNK = 500


async def run_and_kill(db: Path, first: int, rng: random.Random, early: bool) -> list[str]:
    """Start the child, SIGKILL it at a random moment, return the ids it acknowledged.

    `early`: kill 0-0.3 s after the start (during start-up, schema creation or WAL recovery)
    instead of 0.05-0.6 s after the first acknowledgement.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(db),
        str(first),
        str(rng.randrange(2**32)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    lines: list[bytes] = []
    first_ack = asyncio.Event()

    async def read() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            lines.append(line)
            first_ack.set()

    reader = asyncio.create_task(read())
    stderr = asyncio.create_task(proc.stderr.read())
    try:
        if early:
            await asyncio.sleep(rng.uniform(0.0, 0.3))
        else:
            waiter = asyncio.create_task(first_ack.wait())
            await asyncio.wait(
                [waiter, reader], timeout=FIRST_ACK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if first_ack.is_set():
                await asyncio.sleep(rng.uniform(0.05, 0.6))
    finally:
        _kill(proc)
        await proc.wait()
        await reader
    err = (await stderr).decode(errors="replace")[-2000:]
    assert early or first_ack.is_set(), f"child acknowledged nothing: {err}"
    assert proc.returncode == -signal.SIGKILL, f"child exited {proc.returncode}: {err}"
    # A line cut by the kill has no newline: it is not an acknowledgement.
    acked = [line.decode().strip() for line in lines if line.endswith(b"\n")]
    errors = [line for line in acked if line.startswith("ERROR")]
    assert not errors, errors
    return acked


def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the child once, without reaping it.

    Not `proc.kill()`: Popen.send_signal polls first, which can reap a child that is already
    dying, so asyncio's child watcher then reports a made-up returncode 255.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


async def test_acknowledged_enqueues_survive_sigkill(tmp_path: Path) -> None:
    seed = int(
        os.environ.get("TASKENGINE_DURABILITY_SEED") or random.SystemRandom().getrandbits(32)
    )
    rng = random.Random(seed)
    db = tmp_path / "d.db"
    acked: list[str] = []
    started = time.monotonic()
    rounds = 0
    while rounds < ROUNDS and time.monotonic() - started < BUDGET:
        # Every sixth round, and half the time the first one (the file is created then), the
        # kill comes during start-up rather than mid-stream.
        early = rounds % 6 == 5 or (rounds == 0 and rng.random() < 0.5)
        acked += await run_and_kill(db, rounds * IDS_PER_ROUND, rng, early=early)
        rounds += 1
    context = f"seed {seed}, {rounds} rounds, {len(acked)} acknowledged"
    assert rounds >= 10, context
    assert len(acked) == len(set(acked)), context

    broker = open_broker(f"sqlite:///{db}", max_depth=10**9)
    await broker.start()
    try:
        assert broker.capabilities.durable
        missing: list[str] = []
        for start in range(0, len(acked), CHUNK):
            ids = acked[start : start + CHUNK]
            for task_id, record in zip(ids, await broker.get(ids), strict=True):
                if record is None:
                    missing.append(task_id)
        assert not missing, f"{len(missing)} acknowledged tasks lost ({context}): {missing[:5]}"

        # Every stored task, acknowledged or not (committed before the kill, ack unsent),
        # must be whole and exactly as sent.
        stored = 0
        cursor: str | None = None
        while True:
            page = await broker.list_tasks(TaskFilter(), 1000, cursor)
            for record in page.items:
                sent = expected_task(number(record.id))
                for name in sent.__struct_fields__:
                    assert getattr(record, name) == getattr(sent, name), (name, record.id, context)
                assert record.state is TaskState.QUEUED, (record.id, context)
                assert record.history == [], (record.id, context)
                stored += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert stored >= len(acked), context

        # The file still takes writes after all those crashes.
        extra = expected_task(ROUNDS * IDS_PER_ROUND + 1)
        [result] = await broker.enqueue([extra], time.time())
        assert result.created, context
    finally:
        await broker.close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], context
