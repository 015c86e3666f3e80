"""Finding what a command drives, and running async code.

Client commands talk to a `Client`: `DirectClient` opens the broker through an App (`--app
module:attr` or a plain App); `remote.HttpClient` drives a `taskengine serve` over its REST API
(`--api URL`). Each command is written once against the `Client` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from taskengine.cli.errors import EXIT_USAGE, fail
from taskengine.errors import BrokerUnavailable, TaskEngineError

if TYPE_CHECKING:
    from taskengine.app import App, TaskRequest
    from taskengine.brokers import CancelResult, Page, ReplayResult, TaskFilter
    from taskengine.model import TaskRecord
    from taskengine.views import QueueView, Submitted, WorkerView

T = TypeVar("T")


@dataclass(frozen=True)
class CliState:
    """The global options, as every subcommand sees them."""

    broker: str | None = None
    app_path: str | None = None
    json: bool = False
    traceback: bool = False
    api: str | None = None  # drive a remote `taskengine serve` instead of the broker
    token: str | None = None

    def global_args(self) -> list[str]:
        """The global options again, as arguments for a child `taskengine` process."""
        args: list[str] = []
        if self.broker is not None:
            args += ["--broker", self.broker]
        if self.app_path is not None:
            args += ["--app", self.app_path]
        return args


def state_of(ctx: click.Context) -> CliState:
    """The CliState stored by the root group (a default one when a command runs alone)."""
    state = ctx.find_object(CliState)
    return state if state is not None else CliState()


def wants_json(ctx: click.Context, local: bool) -> bool:
    """True if `--json` was given before or after the subcommand."""
    return local or state_of(ctx).json


def load_app(state: CliState) -> App:
    """Build the App for this invocation: the user's (`--app`), or a plain one with built-ins."""
    from taskengine.app import App

    if state.app_path is None:
        return App(state.broker, builtins=True)
    found = _import_attr(state.app_path)
    if callable(found) and not isinstance(found, App):
        found = found()  # a factory
    if not isinstance(found, App):
        fail(
            f"--app {state.app_path}: expected a taskengine App, got {type(found).__name__}",
            EXIT_USAGE,
        )
    if state.broker is None or state.broker == found.settings.broker_url:
        return found
    # Another broker for this invocation: a fresh App sharing the user's task types, so the
    # user's module-level App is never changed.
    app = App(
        settings=found.settings.with_changes(broker_url=state.broker),
        clock=found.clock,
        builtins=False,
    )
    app.registry = found.registry
    app.periodic_tasks = list(found.periodic_tasks)
    return app


def _import_attr(path: str) -> object:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        fail(f"--app {path!r}: use module:attribute, e.g. myproject.tasks:app", EXIT_USAGE)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current project is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"--app {path}: cannot import {module_name!r}: {exc}", EXIT_USAGE)
    try:
        found: object = module
        for part in attr.split("."):
            found = getattr(found, part)
    except AttributeError:
        fail(f"--app {path}: {module_name!r} has no attribute {attr!r}", EXIT_USAGE)
    return found


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a new event loop (uvloop when it is installed)."""
    factory = _uvloop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@contextlib.asynccontextmanager
async def connected(app: App) -> AsyncIterator[App]:
    """Start the app's broker for the body and close it after; unreachable -> BrokerUnavailable."""
    await _start(app)
    try:
        yield app
    finally:
        await app.close()


async def _start(app: App) -> None:
    """Start the app's broker; unreachable -> BrokerUnavailable naming the broker."""
    try:
        await app.start()
    except TaskEngineError:
        await _close_quietly(app)
        raise
    except Exception as exc:  # the driver's own error: say which broker and why, in one line
        from taskengine.cli.worker_cmd import redact  # worker_cmd imports this module

        await _close_quietly(app)
        raise BrokerUnavailable(
            f"cannot reach broker {redact(app.settings.broker_url)}: {type(exc).__name__}: {exc}"
        ) from exc


async def _close_quietly(app: App) -> None:
    with contextlib.suppress(Exception):
        await app.close()


class Client(Protocol):
    """What the client commands need: one interface, direct (App) or remote (HTTP API)."""

    def check(self, request: TaskRequest) -> None:
        """Validate a submission before connecting (raise on bad input)."""

    async def start(self) -> None:
        """Connect (raise BrokerUnavailable or a CliError when the target cannot be reached)."""

    async def close(self) -> None:
        """Disconnect."""

    def now(self) -> float:
        """The current time in epoch seconds, as the target sees it."""

    async def submit(self, request: TaskRequest) -> Submitted:
        """Submit one task: its id (the first task's for a repeated idempotency key), as the API
        answers."""

    async def get(self, task_id: str) -> TaskRecord:
        """A task's record; raise TaskNotFound."""

    async def list_tasks(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """A page of tasks, newest first."""

    async def cancel(self, task_id: str) -> CancelResult:
        """Cancel a queued task, or ask a running one's worker to stop it."""

    async def replay(self, task_ids: Sequence[str]) -> list[ReplayResult]:
        """Queue dead or cancelled tasks again; one answer per id, in order."""

    async def workers(self, since: float) -> list[WorkerView]:
        """Workers seen within the last `since` seconds, as the API shows them."""

    async def queues(self) -> list[QueueView]:
        """Every queue with its counts, as the API shows them (GET /api/queues)."""

    async def metrics(self) -> dict[str, Any]:
        """Figures of the system: the server's snapshot, or what the broker alone can tell."""

    async def pause(self, names: Sequence[str]) -> None:
        """Pause these queues."""

    async def resume(self, names: Sequence[str]) -> None:
        """Resume these queues."""


class DirectClient:
    """The Client over an App: opens the broker in this process."""

    def __init__(self, app: App) -> None:
        self.app = app

    def check(self, request: TaskRequest) -> None:
        """Refuse unknown types (naming the known ones) and invalid fields, before any I/O."""
        from taskengine.registry import UnknownTaskType

        if request.type not in self.app.registry:
            known = ", ".join(self.app.registry.names()) or "none"
            raise UnknownTaskType(f"unknown task type {request.type!r}; known types: {known}")
        self.app.build(request)

    async def start(self) -> None:
        """Start the app's broker; unreachable -> BrokerUnavailable."""
        await _start(self.app)

    async def close(self) -> None:
        """Close the app's broker."""
        await self.app.close()

    def now(self) -> float:
        """The app's clock."""
        return self.app.clock.now()

    async def submit(self, request: TaskRequest) -> Submitted:
        """Submit through the app."""
        from taskengine.views import submitted

        result = (await self.app.enqueue_tasks([self.app.build(request)]))[0]
        return submitted(result.id, result.created)

    async def get(self, task_id: str) -> TaskRecord:
        """The record from the broker."""
        return await self.app.get(task_id)

    async def list_tasks(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """A page through the app's inspector."""
        return await self.app.inspector.list_tasks(task_filter, limit, cursor)

    async def cancel(self, task_id: str) -> CancelResult:
        """Cancel through the app."""
        return await self.app.cancel(task_id)

    async def replay(self, task_ids: Sequence[str]) -> list[ReplayResult]:
        """Replay through the app's inspector (in broker batches)."""
        return await self.app.inspector.replay(task_ids)

    async def workers(self, since: float) -> list[WorkerView]:
        """The worker registry."""
        from taskengine.views import worker_view

        return [worker_view(info) for info in await self.app.inspector.workers(since)]

    async def queues(self) -> list[QueueView]:
        """Counts and paused queues folded into the API's views."""
        from taskengine.views import queue_views

        rows = await self.app.inspector.counts()
        paused = await self.app.inspector.paused()
        return queue_views(rows, paused)

    async def metrics(self) -> dict[str, Any]:
        """The figures of /api/metrics that the broker alone holds, by the same names."""
        return {"source": "broker", **await self.app.inspector.figures()}

    async def pause(self, names: Sequence[str]) -> None:
        """Pause through the app's inspector."""
        await self.app.inspector.pause(names)

    async def resume(self, names: Sequence[str]) -> None:
        """Resume through the app's inspector."""
        await self.app.inspector.resume(names)


def open_client(state: CliState) -> Client:
    """The Client for this invocation: HTTP with `--api`, the broker otherwise (unconnected)."""
    if state.api is not None:
        from taskengine.cli.remote import HttpClient

        return HttpClient(state.api, state.token)
    return DirectClient(load_app(state))


def with_client(
    state: CliState,
    body: Callable[[Client], Coroutine[Any, Any, T]],
    *,
    client: Client | None = None,
) -> T:
    """Open the client (unless given), connect it, run `body(client)` and close it again."""
    found = open_client(state) if client is None else client

    async def main() -> T:
        await found.start()
        try:
            return await body(found)
        finally:
            await found.close()

    return run(main())


def check_queue_names(names: Sequence[str]) -> None:
    """Refuse queue names the API refuses (ValidationError: one line, exit 2), before any I/O."""
    from taskengine.model.task import validate_name

    for name in names:
        validate_name("queue", name)


def check_cursor(cursor: str | None) -> None:
    """Refuse a --cursor the API refuses (ValidationError: one line, exit 2), before any I/O."""
    from taskengine.model.ids import check_cursor as check

    if cursor:  # like the API, an empty cursor means the first page
        check(cursor)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--json` to a client command (it may also be given before the subcommand)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)
