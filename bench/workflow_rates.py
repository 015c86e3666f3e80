"""Workflows end to end: the wall time from `submit_workflow` to the last task finished.

Two shapes, on each broker (memory, SQLite with `synchronous=FULL`, Redis, PostgreSQL, NATS):

- a chord: a group of CHORD_SIZE no-op tasks, then one callback that receives every member's
  result (`ctx.parent_results`) and adds them up;
- a chain of groups: GROUPS groups of GROUP_SIZE no-op tasks one after another, each group
  joined to the next by one no-op step (a chord per stage: the join receives the group's
  results, every member of the next group the join's). Without the join, a chain of two groups
  of m and n tasks has m * n edges, and 10 x 1,000 would be 9,000,000 (over MAX_EDGES).

A worker pool (one `app.engine()`) runs in this process, as in runtime_rates. The clock starts
before the submission (one enqueue batch, also timed on its own) and stops when the pool has
run every task and the broker stores the last ones (those nothing waits on) as finished; then
every task's stored state is checked, and the chord callback's sum. Redis and NATS are servers
started for the suite (`private_redis`, `private_nats`); PostgreSQL the shared server, a schema
per run; each run's storage is dropped after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from bench import drop_storage, loop_runner, row
from bench.private_nats import private_nats
from bench.private_redis import private_redis
from taskengine.app import App
from taskengine.model import TaskState
from taskengine.model.state import TERMINAL_STATES
from taskengine.registry import TaskContext
from taskengine.settings import Settings
from taskengine.workflows import Canvas, chain, chord, group, nodes_of, signature

MEMBER = "bench.wf.member"
TOTAL = "bench.wf.total"
CHORD_SIZE = 1_000
GROUPS, GROUP_SIZE = 10, 1_000
BROKERS = {
    "memory": "memory://",
    "sqlite": "sqlite:///{tmp}/workflows.db?synchronous=FULL",
    "redis": "redis://127.0.0.1:{port}/0?namespace=benchwf{uid}",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test?schema=benchwf{uid}",
    "nats": "nats://127.0.0.1:{nats_port}?stream=benchwf{uid}",
}
FAILED_LABELS = {"failed", "timed_out", "dead", "cancelled"}
TIMEOUT = 600.0  # seconds one run may take before it is reported as stuck


class Shape(NamedTuple):
    """One workflow to time: its label, the canvas and how many tasks it has."""

    label: str
    flow: Canvas
    tasks: int
    total: int | None  # what the chord callback must return, or None

    @property
    def sinks(self) -> list[str]:
        """The names of the nodes nothing runs after: the workflow's last tasks."""
        nodes = nodes_of(self.flow)
        parents = {name for node in nodes for name in node.after}
        return [node.name for node in nodes if node.name not in parents]


def chord_shape(size: int) -> Shape:
    """A chord of `size` members (each returns its number) and a callback adding them up."""
    flow = chord([signature(MEMBER, n) for n in range(size)], signature(TOTAL))
    return Shape(f"chord of {size:,} + callback", flow, size + 1, sum(range(size)))


def chain_shape(groups: int, size: int) -> Shape:
    """A chain of `groups` groups of `size` members, one join step between two groups."""
    steps: list[Any] = []
    for index in range(groups):
        if index:
            steps.append(signature(TOTAL))
        steps.append(group(signature(MEMBER, n) for n in range(size)))
    label = f"chain of {groups} groups x {size:,} (+{groups - 1} joins)"
    return Shape(label, chain(*steps), groups * size + groups - 1, None)


def make_app(url: str) -> App:
    """An app with the member and callback types, tuned as runtime_rates tunes its pool."""
    app = App(settings=Settings(broker_url=url, max_depth=10**8, workers=100, prefetch=500))

    @app.task(MEMBER)
    async def member(payload: Any) -> Any:
        return payload

    @app.task(TOTAL)
    async def total(payload: Any, ctx: TaskContext) -> int:
        return sum(r for r in ctx.parent_results if isinstance(r, int))

    return app


async def _until_done(app: App, count: int, sinks: list[str], url: str) -> None:
    """Until the pool has run `count` tasks and the broker stores the `sinks` (the tasks
    nothing waits on, the last to run) as finished: the runner counts a success before the
    completer has stored it."""
    deadline = time.perf_counter() + TIMEOUT
    while (totals := app.metrics.totals()).get("succeeded", 0) < count:
        if time.perf_counter() > deadline or totals.keys() & FAILED_LABELS:
            raise RuntimeError(f"{url}: {count} tasks not all succeeded; the runs: {totals}")
        await asyncio.sleep(0.001)
    while not all(
        r is not None and r.state in TERMINAL_STATES for r in await app.broker.get(sinks)
    ):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{url}: the last tasks were never stored as finished")
        await asyncio.sleep(0.001)


class Timing(NamedTuple):
    """One run: seconds from the submission to the last task finished, and of those, the
    seconds `submit_workflow` took (one enqueue batch of every task and edge)."""

    total: float
    submit: float


async def one_run(url: str, shape: Shape) -> Timing:
    """Time submitting `shape` and running it to its last task; RuntimeError if a task of it
    did not succeed or the callback got a wrong sum."""
    app = make_app(url)
    await app.start()
    engine = app.engine()
    await engine.start()
    try:
        started = time.perf_counter()
        flow = await app.submit_workflow(shape.flow)
        submitted = time.perf_counter() - started
        await _until_done(app, shape.tasks, [flow.tasks[name] for name in shape.sinks], url)
        elapsed = time.perf_counter() - started
        records = await app.workflow(flow.id)
        states = {r.state for r in records}
        if len(records) != shape.tasks or states != {TaskState.SUCCEEDED}:
            raise RuntimeError(f"{url}: {len(records)} tasks in states {states}")
        if shape.total is not None:
            result = await app.result(records[-1].id, timeout=60)
            if result.data != shape.total:
                raise RuntimeError(f"{url}: the callback returned {result.data!r}")
    finally:
        await engine.stop()
        await drop_storage(app.broker)
        await app.close()
    return Timing(elapsed, submitted)


@contextlib.contextmanager
def _servers(brokers: Sequence[str]) -> Iterator[dict[str, int]]:
    """The ports of a private Redis and NATS, started only if a broker in `brokers` needs one."""
    with contextlib.ExitStack() as stack:
        ports = {"port": 0, "nats_port": 0}
        if "redis" in brokers:
            ports["port"] = stack.enter_context(private_redis()).port
        if "nats" in brokers:
            ports["nats_port"] = stack.enter_context(private_nats()).port
        yield ports


def run(
    runs: int = 3,
    progress: Any = print,
    *,
    brokers: Sequence[str] = tuple(BROKERS),
    chord_size: int = CHORD_SIZE,
    groups: int = GROUPS,
    group_size: int = GROUP_SIZE,
) -> list[dict[str, Any]]:
    """Median of `runs` of each shape on each broker: seconds, tasks/s and the submission's
    seconds, three rows each."""
    shapes = [chord_shape(chord_size), chain_shape(groups, group_size)]
    rows: list[dict[str, Any]] = []
    with _servers(brokers) as ports:
        for name in brokers:
            for shape in shapes:
                timings: list[Timing] = []
                for _ in range(runs):
                    url = BROKERS[name].format(
                        uid=uuid.uuid4().hex[:8], tmp=tempfile.mkdtemp(), **ports
                    )
                    timings.append(loop_runner(one_run(url, shape)))
                    progress(
                        f"workflows {name}, {shape.label}: {timings[-1].total:.2f} s "
                        f"(submit {timings[-1].submit:.2f} s), "
                        f"{shape.tasks / timings[-1].total:,.0f} tasks/s"
                    )
                label = f"{name}, {shape.label}"
                seconds = [t.total for t in timings]
                rows.append(row(f"{label} (s)", seconds))
                rows.append(row(f"{label} (tasks/s)", [shape.tasks / s for s in seconds]))
                rows.append(row(f"{label}: submit (s)", [t.submit for t in timings]))
    return rows
