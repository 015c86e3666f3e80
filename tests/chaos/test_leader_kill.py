"""Leader kill: the scheduler's standby takes over within the lease, and no slot is lost or
submitted twice.

Worker processes with one cron entry firing every second and TASKENGINE_SCHEDULER_EVERY=0.2
(leader lease TTL 1 s). The leader is the process that submitted the newest slot (only the
leader submits; its log says which slots it created). It is SIGKILLed; another process must
submit within TTL + 1 s. Over the whole run the stored slot keys `cron:beat:<t>` are
consecutive seconds, each once. Short form: two workers, one kill; long form: three workers,
five kills (the killed one is restarted as a standby each time).
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import pytest

from taskengine.brokers import BrokerBackend, TaskFilter
from taskengine.model import TaskRecord
from tests.chaos.app import TASK_TYPE
from tests.chaos.support import Child, Children, engine_env, pick, until, worker_command

pytestmark = pytest.mark.slow

WORKERS = pick(2, 3)
KILLS = pick(1, 5)
SCHEDULER_EVERY = 0.2
TTL = 5 * SCHEDULER_EVERY  # runtime.engine: the scheduler's leader lease
CRON = [{"name": "beat", "cron": "* * * * * *", "type": TASK_TYPE, "payload": {"seconds": 0}}]
SETTINGS = {
    "cron": json.dumps(CRON),
    "scheduler_every": SCHEDULER_EVERY,
    "reaper_every": 0.2,
    "lease_for": 3,
    "heartbeat_every": 1,
    "idle_wait": 0.5,
}
SUBMITTED = "submitted periodic tasks"  # the leader's log line, with the slot keys it created


def created_slots(child: Child) -> list[int]:
    """The slots (epoch seconds) this process created, from its log."""
    slots = []
    for event in child.log_events():
        if event.get("event") == SUBMITTED:
            slots += [int(key.rsplit(":", 1)[1]) for key in event.get("slots", [])]
    return slots


def newest_slot(child: Child) -> int:
    return max(created_slots(child), default=0)


async def test_a_standby_takes_over_the_schedule_when_the_leader_dies(
    broker_url: str, broker: BrokerBackend, children: Children, tmp_path: Path
) -> None:
    env = engine_env(tmp_path, SETTINGS)

    def start() -> Child:
        return children.start("worker", worker_command(broker_url, workers=2), env)

    workers = [start() for _ in range(WORKERS)]
    await children.started_workers(workers)
    takeovers: list[float] = []
    kill_times: list[float] = []
    for kill in range(1, KILLS + 1):
        leader, standbys = await current_leader(workers, children)
        marks = {w.pid: newest_slot(w) for w in standbys}
        kill_times.append(time.time())
        leader.kill()
        await until(
            partial(took_over, standbys, marks),
            10,
            f"a standby to submit after kill {kill}",
            every=0.02,
            diagnose=children.tails,
        )
        takeovers.append(time.time() - kill_times[-1])
        workers = [*standbys, start()]
        await children.started_workers(workers[-1:])
        assert all(w.alive for w in workers), children.tails()
    # two more slots under the last leader, then a clean stop
    await until(
        partial(submitting_since, workers, kill_times[-1]), 10, "slots after the last takeover"
    )
    for worker in workers:
        await worker.stop()

    print(f"takeovers after {', '.join(f'{t:.2f}' for t in takeovers)} s (lease TTL {TTL} s)")
    assert max(takeovers) <= TTL + 1, f"takeover times {takeovers} (lease TTL {TTL} s)"
    tasks = await slot_tasks(broker)
    keys = [t.idempotency_key or "" for t in tasks]
    assert len(keys) == len(set(keys)), "a slot key is stored twice"
    slots = sorted(int(key.removeprefix("cron:beat:")) for key in keys)
    missing = sorted(set(range(slots[0], slots[-1] + 1)) - set(slots))
    assert not missing, f"slots missing: {missing} of {slots[0]}..{slots[-1]}"
    assert slots[0] < kill_times[0] - 1 and slots[-1] >= kill_times[-1] + 2, slots


def submitting_since(workers: list[Child], since: float) -> bool:
    """Some process created a slot two seconds or more after `since`."""
    return max(newest_slot(w) for w in workers) >= since + 2


def took_over(standbys: list[Child], marks: dict[int, int]) -> bool:
    """A standby created a slot (only a leader does)."""
    return any(newest_slot(w) > marks[w.pid] for w in standbys)


async def current_leader(workers: list[Child], children: Children) -> tuple[Child, list[Child]]:
    """Wait until the leader has submitted for a while; return it and the others."""
    since = time.time()
    what = "a leader to submit slots"
    await until(partial(submitting_since, workers, since), 15, what, diagnose=children.tails)
    leader = max(workers, key=newest_slot)
    return leader, [w for w in workers if w is not leader]


async def slot_tasks(broker: BrokerBackend) -> list[TaskRecord]:
    """Every stored task of the cron entry (all pages)."""
    found: list[TaskRecord] = []
    cursor: str | None = None
    while True:
        page = await broker.list_tasks(TaskFilter(types=frozenset({TASK_TYPE})), 500, cursor)
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found
