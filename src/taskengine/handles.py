"""Typed task handles: what `@app.task` returns, to submit a type by its handler, not its name.

A handle is still the handler (calling it runs the function), and adds `submit`,
`submit_many`, `signature` and `sync` whose payload is typed as the handler's first parameter,
so mypy checks a submission and msgspec validates it at submit as it does by name (ADR 0035).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypedDict, TypeVar

import msgspec
from typing_extensions import Unpack

from taskengine.model import Priority
from taskengine.request import TaskRequest

if TYPE_CHECKING:
    from taskengine.sync import SyncClient

P = TypeVar("P")  # the payload: the handler's first parameter
R = TypeVar("R")  # what the handler returns
Rest = ParamSpec("Rest")  # the handler's other parameters (its TaskContext, if it asks for one)


class SubmitOptions(TypedDict, total=False):
    """The options of one submission; unset ones take the task type's registered defaults."""

    priority: Priority | int | str
    queue: str
    delay: float
    run_at: float
    timeout: float
    max_attempts: int
    idempotency_key: str
    keep_result: float
    unique_for: float
    unique_while: str
    unique_key: str


class Signature(msgspec.Struct, Generic[P], frozen=True, kw_only=True):
    """One submission as a value, not yet submitted: a task type, its payload and options.

    Immutable, so it can be kept, compared and handed to a later workflow call."""

    type: str
    payload: P
    options: dict[str, Any] = msgspec.field(default_factory=dict)

    def request(self) -> TaskRequest:
        """The TaskRequest this signature stands for."""
        return TaskRequest(type=self.type, payload=self.payload, **self.options)


class Submitter(msgspec.Struct, frozen=True):
    """What a handle submits through: an App's async and blocking submit (see App.task)."""

    submit_many: Callable[[Sequence[TaskRequest]], Any]
    sync: Callable[[], SyncClient]


class TaskHandle(Generic[P, Rest, R]):
    """A registered task type's handler, typed by its payload, with ways to submit it.

    >>> @app.task("email.send")
    ... async def send(email: Email) -> None: ...
    >>> task_id = await send.submit(Email(to="a@example.com"), priority="high")
    """

    def __init__(self, fn: Callable[..., R], name: str, submitter: Submitter) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name
        self._submitter = submitter

    def __call__(self, payload: P, /, *args: Rest.args, **kwargs: Rest.kwargs) -> R:
        """Run the handler itself, here and now (as calling the undecorated function would)."""
        return self.fn(payload, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name!r} of {self.fn!r}>"

    def signature(self, payload: P, **options: Unpack[SubmitOptions]) -> Signature[P]:
        """This type with `payload` and `options` as an immutable value, submitted later."""
        return Signature(type=self.name, payload=payload, options=dict(options))

    def request(self, payload: P, **options: Unpack[SubmitOptions]) -> TaskRequest:
        """The TaskRequest of this type with `payload` and `options`."""
        return TaskRequest(type=self.name, payload=payload, **options)

    async def submit(self, payload: P, **options: Unpack[SubmitOptions]) -> str:
        """Submit one task of this type; return its id (see App.submit)."""
        ids: list[str] = await self._submitter.submit_many([self.request(payload, **options)])
        return ids[0]

    async def submit_many(
        self, payloads: Sequence[P], **options: Unpack[SubmitOptions]
    ) -> list[str]:
        """Submit one task per payload, with the same options, in one broker round trip."""
        requests = [self.request(payload, **options) for payload in payloads]
        ids: list[str] = await self._submitter.submit_many(requests)
        return ids

    @property
    def sync(self) -> SyncTaskHandle[P]:
        """The same submissions from synchronous code, over the App's `sync()` client."""
        return SyncTaskHandle(self.name, self._submitter.sync())


class SyncTaskHandle(Generic[P]):
    """The blocking face of a TaskHandle (code without an event loop)."""

    def __init__(self, name: str, client: SyncClient) -> None:
        self.name = name
        self._client = client

    def submit(self, payload: P, **options: Unpack[SubmitOptions]) -> str:
        """Submit one task of this type; return its id (see SyncClient.submit)."""
        return self._client.submit(self.name, payload, **options)

    def submit_many(self, payloads: Sequence[P], **options: Unpack[SubmitOptions]) -> list[str]:
        """Submit one task per payload, with the same options, in one broker round trip."""
        requests = [TaskRequest(type=self.name, payload=p, **options) for p in payloads]
        return self._client.submit_many(requests)


def as_handle(fn: Callable[..., Any], name: str, submitter: Submitter) -> TaskHandle[Any, ..., Any]:
    """Wrap a registered handler in its handle (App.task's decorator)."""
    return TaskHandle(fn, name, submitter)
