"""Module-level handlers and app builders for the runtime tests.

Process handlers must be importable by the pool's children, so every handler lives here.
Async and thread handlers coordinate with the test through `BOARD`: a handler started on key
`k` sets `BOARD.started(k)`, waits for `BOARD.release(k)` (or its thread twin) and records what
happened in `BOARD.log`. Call `BOARD.reset()` at the start of each test (the events bind to the
test's event loop).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from taskengine.app import App
from taskengine.brokers.base import BrokerBackend
from taskengine.clock import SYSTEM_CLOCK, Clock
from taskengine.errors import BrokerUnavailable
from taskengine.model import Outcome, TaskRecord
from taskengine.model.state import TERMINAL_STATES
from taskengine.policy.retry import NoRetry, Retry, Snooze
from taskengine.registry import TaskContext
from taskengine.settings import Settings


class Board:
    """What the handlers saw, and the events the tests use to hold and release them."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, int]] = []  # (event, key, attempt)
        self._started: dict[str, asyncio.Event] = {}
        self._release: dict[str, asyncio.Event] = {}
        self._thread_release: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget everything (call at the start of each test)."""
        self.__init__()  # type: ignore[misc]

    def record(self, event: str, key: str, attempt: int = 0) -> None:
        with self._lock:
            self.log.append((event, key, attempt))

    def events(self, event: str) -> list[tuple[str, int]]:
        """(key, attempt) of every logged `event`, in order."""
        with self._lock:
            return [(k, a) for e, k, a in self.log if e == event]

    def started(self, key: str) -> asyncio.Event:
        return self._started.setdefault(key, asyncio.Event())

    def release(self, key: str) -> asyncio.Event:
        return self._release.setdefault(key, asyncio.Event())

    def thread_release(self, key: str) -> threading.Event:
        with self._lock:
            return self._thread_release.setdefault(key, threading.Event())


BOARD = Board()


# -- payload types ------------------------------------------------------------------------------


class Numbers(msgspec.Struct, forbid_unknown_fields=True):
    """A typed payload: submit refuses anything else."""

    a: int
    b: int


class Key(msgspec.Struct, kw_only=True):
    """Names the gate a held handler waits on."""

    key: str
    result: Any = None


# -- handlers -----------------------------------------------------------------------------------


async def add_async(payload: Numbers) -> dict[str, Any]:
    return {"sum": payload.a + payload.b, "kind": "async"}


def add_thread(payload: Numbers) -> dict[str, Any]:
    return {
        "sum": payload.a + payload.b,
        "kind": "thread",
        "off_loop": threading.current_thread() is not threading.main_thread(),
    }


def add_process(payload: Numbers) -> dict[str, Any]:
    return {"sum": payload.a + payload.b, "kind": "process", "pid": os.getpid()}


def spin(payload: Any) -> None:
    """Never ends on its own: only a hard kill stops it."""
    while True:
        pass


async def fail_always(payload: Any, ctx: TaskContext) -> None:
    BOARD.record("run", ctx.task_id, ctx.attempt)
    raise ValueError(f"boom on attempt {ctx.attempt}")


async def fail_until(payload: dict[str, int], ctx: TaskContext) -> dict[str, int]:
    """Fails until attempt payload["succeed_on"]."""
    BOARD.record("run", ctx.task_id, ctx.attempt)
    if ctx.attempt < payload["succeed_on"]:
        raise RuntimeError(f"not yet ({ctx.attempt})")
    return {"attempt": ctx.attempt}


async def ask_retry(payload: dict[str, float], ctx: TaskContext) -> str:
    """Asks for a retry after payload["delay"] seconds on the first attempt, then succeeds."""
    BOARD.record("run", ctx.task_id, ctx.attempt)
    if ctx.attempt == 1:
        raise Retry(payload["delay"], reason="come back later")
    return "ok"


async def no_retry(payload: Any, ctx: TaskContext) -> None:
    BOARD.record("run", ctx.task_id, ctx.attempt)
    raise NoRetry("this will never work")


async def snooze_once(payload: Any, ctx: TaskContext) -> str:
    """Snoozes on its first run (a dependency is down), then succeeds."""
    BOARD.record("run", ctx.task_id, ctx.attempt)
    if len(BOARD.events("run")) == 1:
        raise Snooze(60, "dependency down")
    return "ok"


async def sleep_async(payload: float, ctx: TaskContext) -> str:
    BOARD.record("run", ctx.task_id, ctx.attempt)
    await asyncio.sleep(payload)
    return "slept"


async def gate(payload: Key, ctx: TaskContext) -> Any:
    """Runs until the test releases `payload.key`; logs start, cancelled and finish."""
    BOARD.record("start", payload.key, ctx.attempt)
    BOARD.started(payload.key).set()
    try:
        await BOARD.release(payload.key).wait()
    except asyncio.CancelledError:
        BOARD.record("cancelled", payload.key, ctx.attempt)
        raise
    BOARD.record("finish", payload.key, ctx.attempt)
    return payload.result


async def retry_then_gate(payload: Key, ctx: TaskContext) -> Any:
    """Attempt 1 waits for `key#1` and asks for an immediate retry; attempt 2 is `gate` on
    `key#2`."""
    if ctx.attempt == 1:
        await BOARD.release(f"{payload.key}#1").wait()
        raise Retry(0)
    return await gate(Key(key=f"{payload.key}#2", result=payload.result), ctx)


def thread_gate(payload: Key) -> str:
    """A blocking handler that ignores cancellation: it ends when the test releases it."""
    BOARD.record("start", payload.key)
    BOARD.thread_release(payload.key).wait(30)
    BOARD.record("finish", payload.key)
    return "late"


async def not_json(payload: Any) -> object:
    return object()


async def huge_int(payload: Any) -> int:
    """A JSON-valid result MessagePack cannot store."""
    return 10**30


async def lone_surrogate(payload: Any) -> str:
    return "half a pair: \ud800"


async def surrogate_error(payload: Any) -> None:
    raise ValueError("half a pair: \ud800")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot even say what went wrong")


async def unprintable_error(payload: Any, ctx: TaskContext) -> None:
    BOARD.record("run", ctx.task_id, ctx.attempt)
    raise Unprintable()


async def raise_cancelled(payload: Any, ctx: TaskContext) -> None:
    """Raises CancelledError of its own accord (nobody cancelled it)."""
    BOARD.record("run", ctx.task_id, ctx.attempt)
    raise asyncio.CancelledError()


async def raise_keyboard_interrupt(payload: Any, ctx: TaskContext) -> None:
    BOARD.record("run", ctx.task_id, ctx.attempt)
    raise KeyboardInterrupt()


def exit_thread(payload: Any) -> None:
    raise SystemExit(3)


async def swallow_cancel(payload: Key, ctx: TaskContext) -> Any:
    """Swallows the first cancellation, then ends as `payload.result` says: "return", "retry"
    or "snooze"."""
    BOARD.record("start", payload.key, ctx.attempt)
    BOARD.started(payload.key).set()
    try:
        await BOARD.release(payload.key).wait()
    except asyncio.CancelledError:
        BOARD.record("swallowed", payload.key, ctx.attempt)
    if payload.result == "retry":
        raise Retry(0)
    if payload.result == "snooze":
        raise Snooze(0)
    return "ignored the cancel"


async def swallow_every_cancel(payload: Key, ctx: TaskContext) -> None:
    """Never lets a cancellation end it: only its release does (or the process exiting)."""
    BOARD.record("start", payload.key, ctx.attempt)
    BOARD.started(payload.key).set()
    while not BOARD.release(payload.key).is_set():
        try:
            await BOARD.release(payload.key).wait()
        except asyncio.CancelledError:
            BOARD.record("swallowed", payload.key, ctx.attempt)


async def quick(payload: Any) -> Any:
    return payload


async def big_result(payload: int) -> str:
    """A result of `payload` characters."""
    return "x" * payload


async def big_error(payload: int) -> None:
    """An error whose text is `payload` characters long (and not ASCII, to cut in UTF-8)."""
    raise ValueError("é" * payload)


SECRET_ERROR = "could not reach postgresql://app:hunter2@db/x (Authorization: Bearer abc.def)"


def _parse_pages(document: dict[str, Any]) -> Any:
    return document["pages"]


async def fail_nested(payload: Any) -> None:
    """Fails two frames deep, with secrets in its message."""
    try:
        _parse_pages({})
    except KeyError as exc:
        raise RuntimeError(SECRET_ERROR) from exc


def fail_nested_sync(payload: Any) -> None:
    """The same failure from a thread or a child process."""
    _parse_pages({})


async def fail_long(payload: int) -> None:
    """An error whose traceback is past the 8 KiB cap: `payload` characters, then END."""
    raise ValueError("x" * payload + "END")


async def progress_async(payload: Key, ctx: TaskContext) -> str:
    """Reports three steps (the last one stays), then waits for the test."""
    for step in range(1, 4):
        ctx.progress(step, 3, f"step {step}")
    BOARD.started(payload.key).set()
    await BOARD.release(payload.key).wait()
    return "done"


async def progress_quick(payload: int, ctx: TaskContext) -> int:
    """Reports `payload` steps and ends at once, long before the next flush."""
    for step in range(1, payload + 1):
        ctx.progress(step, payload)
    return payload


def progress_process(payload: dict[str, Any], ctx: TaskContext) -> int:
    """In a child process: reports `steps` steps, the first then waiting until the file named
    `gate` exists (the test reads the first report meanwhile), then ends."""
    import pathlib
    import time

    steps, gate = payload["steps"], pathlib.Path(payload["gate"])
    ctx.progress(1, steps, "first")
    deadline = time.monotonic() + 30
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    for step in range(2, steps + 1):
        ctx.progress(step, steps, f"step {step}")
    return steps


def progress_thread(payload: Key, ctx: TaskContext) -> str:
    """Reports from its thread, then waits for the test."""
    ctx.progress(2, 5, "from a thread")
    BOARD.record("progressed", payload.key)
    BOARD.thread_release(payload.key).wait(30)
    return "done"


# -- apps ---------------------------------------------------------------------------------------

HANDLERS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "add.async": (add_async, {}),
    "add.thread": (add_thread, {}),
    "add.process": (add_process, {"executor": "process"}),
    "spin": (spin, {"executor": "process", "timeout": 1.0, "max_attempts": 1}),
    "fail.always": (fail_always, {}),
    "fail.until": (fail_until, {}),
    "ask.retry": (ask_retry, {}),
    "no.retry": (no_retry, {}),
    "snooze.once": (snooze_once, {}),
    "sleep.async": (sleep_async, {}),
    "gate": (gate, {}),
    "retry.then.gate": (retry_then_gate, {}),
    "thread.gate": (thread_gate, {}),
    "not.json": (not_json, {}),
    "quick": (quick, {}),
    "big.result": (big_result, {}),
    "big.error": (big_error, {}),
    "huge.int": (huge_int, {}),
    "lone.surrogate": (lone_surrogate, {}),
    "surrogate.error": (surrogate_error, {}),
    "unprintable.error": (unprintable_error, {}),
    "raise.cancelled": (raise_cancelled, {}),
    "raise.keyboard.interrupt": (raise_keyboard_interrupt, {}),
    "exit.thread": (exit_thread, {"executor": "thread"}),
    "swallow.cancel": (swallow_cancel, {}),
    "swallow.every.cancel": (swallow_every_cancel, {}),
    "fail.nested": (fail_nested, {}),
    "fail.nested.thread": (fail_nested_sync, {"executor": "thread"}),
    "fail.nested.process": (fail_nested_sync, {"executor": "process"}),
    "fail.long": (fail_long, {}),
    "progress.async": (progress_async, {}),
    "progress.thread": (progress_thread, {"executor": "thread"}),
    "progress.quick": (progress_quick, {}),
    "progress.process": (progress_process, {"executor": "process"}),
}
PROCESS_TYPES = frozenset(n for n, (_, o) in HANDLERS.items() if o.get("executor") == "process")


def build_app(
    *,
    clock: Clock = SYSTEM_CLOCK,
    processes: bool = False,
    url: str | None = None,
    tracer_provider: Any = None,
    **settings: Any,
) -> App:
    """An app with the handlers above (process ones only if `processes`), on the memory
    broker unless `url` names another."""
    settings.setdefault("retry_base", 0.01)
    settings.setdefault("idle_wait", 0.05)
    app = App(
        settings=Settings(broker_url=url or "memory://", **settings),
        clock=clock,
        builtins=False,
        tracer_provider=tracer_provider,
    )
    for name, (fn, options) in HANDLERS.items():
        if name in PROCESS_TYPES and not processes:
            continue
        app.task(name, **options)(fn)
    return app


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = ""
) -> None:
    """Poll `predicate` (every 5 ms) until it is true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


async def finished(app: App, ids: Sequence[str], timeout: float = 10.0) -> list[TaskRecord]:
    """Wait until every task is in a terminal state; return their records."""
    records: list[TaskRecord] = []

    async def all_done() -> bool:
        nonlocal records
        records = [await app.get(i) for i in ids]
        return all(r.state in TERMINAL_STATES for r in records)

    await wait_for(all_done, timeout, "tasks to finish")
    return records


class FlakyBroker:
    """Wraps a broker: counts calls per method and can be told to fail the next settles."""

    def __init__(self, inner: BrokerBackend) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}
        self.settle_sizes: list[int] = []
        self.fail_settles = 0
        self.before_extend: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        self.calls["settle"] = self.calls.get("settle", 0) + 1
        if self.fail_settles > 0:
            self.fail_settles -= 1
            raise BrokerUnavailable("settle failed on purpose")
        self.settle_sizes.append(len(outcomes))
        return await self._inner.settle(outcomes, now)

    async def extend(self, leases: Any, lease_for: float, now: float) -> Any:
        self.calls["extend"] = self.calls.get("extend", 0) + 1
        if self.before_extend is not None:
            await self.before_extend()
        return await self._inner.extend(leases, lease_for, now)
