"""SyncClient: submit tasks and wait for results from synchronous code, over one connection."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from taskengine.errors import ConfigurationError
from taskengine.request import TaskRequest

if TYPE_CHECKING:
    from taskengine.brokers.base import BrokerBackend
    from taskengine.model import Task, TaskRecord, TaskResult
    from taskengine.settings import Settings

T = TypeVar("T")


class AsyncApp(Protocol):
    """What the sync client needs of an App (`taskengine.app.App` is one)."""

    @property
    def settings(self) -> Settings:
        """The app's settings."""

    @property
    def broker(self) -> BrokerBackend:
        """The app's broker."""

    def build(self, request: TaskRequest) -> Task:
        """Validate a request (raise on bad input)."""

    def twin(self) -> AsyncApp:
        """An app of the same settings and task types with a broker of its own."""

    async def start(self) -> None:
        """Connect."""

    async def submit_many(self, requests: Sequence[TaskRequest]) -> list[str]:
        """Submit a batch."""

    async def get(self, task_id: str) -> TaskRecord:
        """A task's record."""

    async def result(self, task_id: str, timeout: float | None = None) -> TaskResult:
        """Wait for a task's last result."""


class SyncClient:
    """A blocking face of an App for code without an event loop (a Django view, a script).

    One event loop on a background thread holds one broker connection, opened at the first
    call and shared by every calling thread until `close` (a later call opens it again). The
    App's task types validate every submission, as `App.submit` does.
    """

    def __init__(self, app: AsyncApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._twin: AsyncApp | None = None

    def submit(self, type: str, payload: Any = None, **options: Any) -> str:
        """Submit one task; return its id (see `App.submit`)."""
        return self.submit_many([TaskRequest(type=type, payload=payload, **options)])[0]

    def submit_many(self, requests: Sequence[TaskRequest]) -> list[str]:
        """Submit a batch in one broker round trip; all are validated before any is stored."""
        for request in requests:  # bad input fails here, in the caller's thread, before any I/O
            self._app.build(request)
        return self._call(lambda twin: twin.submit_many(requests))

    def get(self, task_id: str) -> TaskRecord:
        """The task's record; raise TaskNotFound."""
        return self._call(lambda twin: twin.get(task_id))

    def result(self, task_id: str, timeout: float | None = None) -> TaskResult:
        """Block until the task is finished and return its last result; TimeoutError past it."""
        return self._call(lambda twin: twin.result(task_id, timeout))

    def close(self) -> None:
        """Close the connection and stop the background thread (idempotent)."""
        with self._lock:
            loop, thread, twin = self._loop, self._thread, self._twin
            self._loop = self._thread = self._twin = None
        if loop is None or thread is None or twin is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(twin.broker.close(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, make: Callable[[AsyncApp], Coroutine[Any, Any, T]]) -> T:
        """Run `make(twin)`'s coroutine on the background loop and wait for its answer."""
        _refuse_a_running_loop()
        loop, twin = self._open()
        # The call runs in the caller's context (its current trace span, say), not the loop's.
        context = contextvars.copy_context()
        answer: concurrent.futures.Future[T] = concurrent.futures.Future()

        def begin() -> None:
            task = loop.create_task(make(twin), context=context)
            task.add_done_callback(lambda done: _settle(done, answer))

        loop.call_soon_threadsafe(begin)
        return answer.result()

    def _open(self) -> tuple[asyncio.AbstractEventLoop, AsyncApp]:
        """The background loop and its started App, made on first use (one, across threads)."""
        with self._lock:
            if self._loop is not None and self._twin is not None:
                return self._loop, self._twin
            # The twin's broker belongs to this loop (and it closes only that broker: the App's
            # own resources stay the App's).
            twin = self._app.twin()
            if not twin.broker.capabilities.shared:
                raise ConfigurationError(
                    f"the sync client opens its own connection, which cannot see a broker "
                    f"held in this App's memory ({self._app.settings.broker_url}); use "
                    "sqlite://, redis:// or postgresql://"
                )
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="taskengine-sync-client", daemon=True
            )
            thread.start()
            try:
                asyncio.run_coroutine_threadsafe(twin.start(), loop).result()
            except BaseException:
                asyncio.run_coroutine_threadsafe(twin.broker.close(), loop).result()
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
                raise
            self._loop, self._thread, self._twin = loop, thread, twin
            return loop, twin


def _refuse_a_running_loop() -> None:
    """Blocking inside an event loop would stall it: async code awaits the App instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "a SyncClient call blocks: in async code, use `await app.submit(...)` and "
        "`await app.result(...)` instead"
    )


def _settle(task: asyncio.Task[T], answer: concurrent.futures.Future[T]) -> None:
    """Hand a finished task's outcome to the waiting caller."""
    if task.cancelled():
        answer.cancel()
    elif (error := task.exception()) is not None:
        answer.set_exception(error)
    else:
        answer.set_result(task.result())
