"""Kill -9 churn: four worker processes on one broker, one SIGKILLed every 2 s and restarted.

Every task ends succeeded (none lost); a task that was claimed more than once owes each extra
claim to a lease that expired (its history says "lease expired" for every earlier attempt);
no attempt ran twice. Short form: 600 tasks and three kills; long form (CHAOS_LONG=1): 5,000
tasks, killing until they are done.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import pytest

from taskengine.brokers import BrokerBackend
from taskengine.model import ResultStatus, TaskState
from taskengine.model.records import LEASE_EXPIRED  # requeue_expired's history line
from tests.chaos.support import (
    Child,
    Children,
    RunLog,
    engine_env,
    pick,
    records,
    state_counts,
    submit,
    until,
    worker_command,
)

pytestmark = pytest.mark.slow

TASKS = pick(600, 5000)
KILLS = pick(3, 200)  # the long form kills until every task is done
KILL_EVERY = 2.0
TASK_SECONDS = 0.25  # 4 processes x 5 workers: ~80 tasks/s, so kills find tasks running
PROCESSES = 4
SETTINGS = {"lease_for": 3, "heartbeat_every": 1, "reaper_every": 0.5, "idle_wait": 0.5}
DRAIN_TIMEOUT = pick(90.0, 300.0)  # after the last kill


async def test_sigkill_churn_loses_nothing_and_explains_every_repeat(
    broker_url: str, broker: BrokerBackend, children: Children, tmp_path: Path
) -> None:
    run_log = RunLog(tmp_path / "runs.log")
    env = engine_env(tmp_path, SETTINGS, run_log.path)
    ids = await submit(broker, TASKS, TASK_SECONDS)

    def start() -> Child:
        return children.start("worker", worker_command(broker_url, workers=5), env)

    workers = [start() for _ in range(PROCESSES)]
    await children.started_workers(workers)

    rng = random.Random(6)
    kills = 0
    held_at_kill = 0
    while kills < KILLS:
        await asyncio.sleep(KILL_EVERY)
        counts = await state_counts(broker)
        if counts[TaskState.SUCCEEDED] == TASKS:
            break
        victim = rng.randrange(PROCESSES)
        held_at_kill += run_log.running(workers[victim].pid)
        workers[victim].kill()
        kills += 1
        workers[victim] = start()

    async def all_succeeded() -> bool:
        return (await state_counts(broker))[TaskState.SUCCEEDED] == TASKS

    async def progress() -> str:
        return f"states: {dict(await state_counts(broker))}\n{children.tails()}"

    try:
        await until(all_succeeded, DRAIN_TIMEOUT, f"all {TASKS} tasks to succeed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await progress()}") from None
    for worker in workers:
        assert worker.alive, worker.tail()
    await asyncio.gather(*(worker.stop() for worker in workers))

    final = await records(broker, ids)
    assert {r.state for r in final.values()} == {TaskState.SUCCEEDED}
    starts: dict[str, list[int]] = defaultdict(list)
    for task_id, attempt, _pid in run_log.runs("start"):
        starts[task_id].append(attempt)
    assert set(starts) == set(ids), "a task succeeded without its handler running"

    repeated = 0
    for task_id, record in final.items():
        attempts = sorted(starts[task_id])
        assert len(attempts) == len(set(attempts)), f"{task_id}: one attempt ran twice {attempts}"
        assert record.result is not None and record.result.status is ResultStatus.SUCCESS
        assert record.result.attempt == record.attempt == attempts[-1], record
        # every claim before the last one ended because its lease expired
        history = [(h.attempt, h.status, h.error) for h in record.history]
        expected = [(n, ResultStatus.FAILURE, LEASE_EXPIRED) for n in range(1, record.attempt)]
        assert history == [*expected, (record.attempt, ResultStatus.SUCCESS, None)], task_id
        if len(attempts) > 1:
            repeated += 1
    # the kills hit running tasks, and those ran again: the property was exercised
    assert kills >= min(KILLS, 3), f"only {kills} kills before the work was done"
    assert held_at_kill > 0 and repeated > 0, (kills, held_at_kill, repeated)
    claimed_again = sum(r.attempt > 1 for r in final.values())
    print(f"{TASKS} tasks, {kills} kills: {claimed_again} claimed again, {repeated} ran again")
