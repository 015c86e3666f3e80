"""Cluster-wide limits (ADR 0038): three engine processes on one Redis or PostgreSQL broker.

Counted from the run log the handlers write (tests/e2e/limited_child.py), never timed:
- `held` (max_concurrency=3): at no point are more than 3 runs between their start and
  finish lines, although the three processes have 12 workers between them;
- `paced` (rate_limit="20/s", its bucket raised to 20 tokens at run time through the
  Inspector, as `PUT /api/limits` does): over N starts from the first to the last, the measured
  rate (N - burst) / (last - first) is within 5% of 20/s (the issue's definition).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskengine.model import TaskState
from taskengine.model.limits import Limit, LimitScope
from taskengine.request import TaskRequest
from tests.brokers.support import drop_storage, started
from tests.e2e.limited_child import HELD_LIMIT, PACED_RATE, build_app

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "e2e" / "limited_child.py"
PROCESSES = 3
HELD_TASKS = 36
PACED_TASKS = 620  # 30 s at 20/s after the burst: a late start or end weighs half as much
BURST = 20  # set at run time by the rate test (one second of tokens)

URLS = [
    "redis://127.0.0.1:6379/0?namespace={uid}",
    "postgresql://postgres@127.0.0.1:5432/test?schema={uid}",
]


@pytest.fixture(params=URLS, ids=lambda url: url.split(":", 1)[0])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    filled = str(request.param).format(uid=f"lim{uuid.uuid4().hex[:10]}")
    yield filled

    async def drop() -> None:
        broker = await started(filled)
        await drop_storage(broker)
        await broker.close()

    asyncio.run(drop())


def start_children(url: str, log: Path) -> list[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "TASKENGINE_BROKER_URL": url,
        "LIMITED_CHILD_LOG": str(log),
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
    }
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD)], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        for _ in range(PROCESSES)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    return children


def stop_children(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        assert child.wait(timeout=60) == 0


async def submit_and_wait(
    url: str, type_name: str, payloads: list[object], limit: Limit | None = None
) -> None:
    app = build_app(url)
    async with app:
        if limit is not None:  # changed at run time, after each engine stored its code's
            await app.inspector.set_limits([limit])
        ids = await app.submit_many([TaskRequest(type=type_name, payload=p) for p in payloads])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 300
        while True:
            records = [await app.get(task_id) for task_id in ids]
            if all(r.state is TaskState.SUCCEEDED for r in records):
                assert all(r.attempt == 1 for r in records)  # held back: no attempt spent
                return
            assert loop.time() < deadline, "the tasks did not finish"
            await asyncio.sleep(0.2)


def events(log: Path) -> list[tuple[int, int, str]]:
    """(time, +1 start / -1 finish, id) sorted; a finish sorts before a start at one time."""
    out = []
    for line in log.read_text().splitlines():
        event, task_id, ns = line.split()
        out.append((int(ns), 1 if event == "start" else -1, task_id))
    return sorted(out)


def test_three_processes_never_run_more_than_max_concurrency(url: str, tmp_path: Path) -> None:
    log = tmp_path / "held.log"
    children = start_children(url, log)
    try:
        asyncio.run(submit_and_wait(url, "held", [0.2] * HELD_TASKS))
    finally:
        stop_children(children)

    running = most = 0
    starts = 0
    for _, step, _ in events(log):
        running += step
        most = max(most, running)
        starts += step == 1
    assert starts == HELD_TASKS
    assert most == HELD_LIMIT  # reached, never passed


def test_three_processes_keep_the_rate_limit_within_five_percent(url: str, tmp_path: Path) -> None:
    log = tmp_path / "paced.log"
    children = start_children(url, log)
    try:
        # A bucket of one second's tokens: a process the loaded machine does not schedule
        # for a while loses no token (with the code's 2 it must reserve every 100 ms).
        limit = Limit(scope=LimitScope.TYPE, name="paced", rate=PACED_RATE, burst=BURST)
        asyncio.run(submit_and_wait(url, "paced", list(range(PACED_TASKS)), limit))
    finally:
        stop_children(children)

    starts = [ns for ns, step, _ in events(log) if step == 1]
    assert len(starts) == PACED_TASKS
    measured = (len(starts) - BURST) / ((starts[-1] - starts[0]) / 1e9)
    print(f"measured rate {measured:.3f}/s over {len(starts)} starts")  # shown with -s
    assert abs(measured - PACED_RATE) <= 0.05 * PACED_RATE, measured
