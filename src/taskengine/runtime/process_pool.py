"""The process executor: CPU-bound handlers in a pool of child processes (pebble, forkserver).

Only plain text crosses the process boundary: the child receives the handler's module name,
qualified name and the payload as JSON bytes, and answers with JSON bytes holding either the
result or an error (type name, message, traceback). Nothing the user supplies is ever
pickled. A run past its timeout, or whose awaiting asyncio task is cancelled, has its child
hard-killed by pebble, which starts a replacement, so one runaway task never breaks the pool.

The pool starts with the first task that needs it (or an explicit `start`), not with the
engine: an engine that runs no process task has no child processes, and pebble and
multiprocessing are imported only then.

Each child may also be capped (`child_limits`): its address space, so an allocation past the
cap is a MemoryError that fails that task alone, and the CPU time of each task, past which the
kernel ends the child and the task fails without retry (the same input would use as much).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import signal
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future
from functools import cache
from typing import TYPE_CHECKING, Any, get_type_hints

import msgspec

from taskengine.errors import (
    CpuTimeExceeded,
    MemoryCapExceeded,
    TaskEngineError,
    TaskFailed,
    TaskTimeout,
    ValidationError,
)
from taskengine.model.serializer import from_json, to_json
from taskengine.registry import TaskContext, TaskSpec
from taskengine.runtime.child_limits import memory_cap_mb, start_cpu_budget
from taskengine.runtime.child_progress import (
    ChildReporter,
    OnProgress,
    ProgressReader,
    RunKey,
    init_child,
    reporter,
)

if TYPE_CHECKING:
    import pebble

_TRACEBACK_LIMIT = 8192  # characters of the child's traceback kept (its tail) for the parent
_CLOSED_ERROR = "ExecutorClosed"
_MEMORY_CAP_ERROR = "MemoryCapExceeded"


class _Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the child sends back: a result, or an error described in plain text."""

    ok: bool
    result: Any = None
    error_type: str = ""
    message: str = ""
    traceback: str = ""
    progress: tuple[int, int, str | None] | None = None  # the run's last ctx.progress report


class ProcessExecutor:
    """Runs `executor="process"` handlers in child processes, one task per child at a time."""

    def __init__(
        self,
        processes: int | None = None,
        *,
        memory_mb: int = 0,
        cpu_seconds: int = 0,
        on_progress: OnProgress | None = None,
    ) -> None:
        count = processes if processes is not None else (os.cpu_count() or 1)
        if count < 1:
            raise ValidationError(f"processes must be >= 1, got {count}")
        if memory_mb < 0 or cpu_seconds < 0:
            raise ValidationError("memory_mb and cpu_seconds must be >= 0 (0: no cap)")
        self.processes = count
        self.memory_mb = memory_mb  # address space per child; 0: no cap
        self.cpu_seconds = cpu_seconds  # CPU time per task; 0: no cap
        self._pool: pebble.ProcessPool | None = None
        self._starting: asyncio.Future[None] | None = None  # shared by every first caller
        self._ready = False
        self._closed = False
        self._running: set[Future[bytes]] = set()  # ProcessFuture.cancel kills a running child
        self._on_progress = on_progress  # where the children's ctx.progress reports go
        self._reader: ProgressReader | None = None

    @property
    def started(self) -> bool:
        """Whether the children were started and `close` did not run."""
        return self._ready and not self._closed

    async def start(self) -> None:
        """Start the children, once, however many callers ask at the same time (blocking work
        runs in a thread, the loop stays free). `run` calls it: starting early is optional."""
        if self._closed:
            raise TaskEngineError("the process executor is closed")
        if self._ready:
            return
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        # shielded: a first caller cancelled (its task's lease lost) must not stop the start
        # the other callers wait for
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        import pebble  # here, not at import: an engine without process tasks never needs it

        if self._closed:
            return
        try:
            if self._on_progress is not None and self._reader is None:
                self._reader = ProgressReader(self._on_progress)
            address = self._reader.address if self._reader is not None else ""
            pool = pebble.ProcessPool(
                max_workers=self.processes,
                context=_mp_context(),
                initializer=init_child,
                initargs=(self.memory_mb, self.cpu_seconds, address),
            )
            self._pool = pool
            # Reading `active` starts the pool: its threads and the first children.
            await asyncio.to_thread(lambda: pool.active)
        except BaseException:
            self._starting = None  # the next task tries again
            raise
        self._ready = True

    async def close(self) -> None:
        """Stop the pool, killing children that still run a task; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._starting is not None and not self._starting.done():
            await asyncio.wait([self._starting])  # a start in flight ends first: its pool is ours
        pool, self._pool = self._pool, None
        for future in list(self._running):
            future.cancel()
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]
            await asyncio.to_thread(pool.join)
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.to_thread(reader.close)

    async def run(
        self, spec: TaskSpec, payload: Any, timeout: float, run: RunKey | None = None
    ) -> Any:
        """Run `spec`'s handler on `payload` in a child; return its JSON-decoded result. A
        handler that takes a context reports progress as the run `run` (its last report is
        handed to `on_progress` before this returns or raises).

        Raises TaskFailed when the handler raised (or returned something that is not JSON),
        TaskTimeout when it ran past `timeout` seconds (its child is killed), MemoryCapExceeded
        or CpuTimeExceeded past the child's caps. Cancelling the awaiting task cancels the run
        and kills its child.
        """
        if self._closed:
            raise TaskEngineError("the process executor is not running")
        if not timeout > 0:
            raise ValidationError(f"timeout must be > 0, got {timeout}")
        module, qualname = handler_path(spec.fn)
        body = to_json(payload)
        if not self._ready:
            await self.start()
        import pebble  # imported by the start above: a dictionary lookup

        if self._pool is None or self._closed:
            raise TaskFailed(_CLOSED_ERROR, "the process executor closed")
        try:
            context = tuple(run) if run is not None and spec.wants_context else None
            future: Future[bytes] = self._pool.schedule(
                run_in_child, args=(module, qualname, body, context), timeout=timeout
            )
        except RuntimeError as exc:  # the pool is stopped or broken
            raise TaskFailed("ExecutorUnavailable", str(exc)) from exc
        self._running.add(future)
        try:
            reply = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # also when the wrapper was cancelled before it could chain
            task = asyncio.current_task()
            if self._closed and task is not None and not task.cancelling():
                raise TaskFailed(_CLOSED_ERROR, "the process executor closed") from None
            raise
        except TimeoutError:
            raise TaskTimeout(f"{spec.name} ran longer than {timeout:g} s") from None
        except FutureCancelled:
            raise TaskFailed(_CLOSED_ERROR, "the process executor closed") from None
        except pebble.ProcessExpired as exc:
            if exc.exitcode == -signal.SIGXCPU:
                raise CpuTimeExceeded(
                    f"{spec.name} used more than {self.cpu_seconds} s of CPU time "
                    "(TASKENGINE_PROCESS_CPU_SECONDS); its child was killed"
                ) from None
            raise TaskFailed(
                "ProcessExpired", f"the child process died (exit code {exc.exitcode})"
            ) from None
        except Exception as exc:  # pebble's own failures (broken pool, pipe errors)
            raise TaskFailed(type(exc).__name__, str(exc)) from None
        finally:
            self._running.discard(future)
        decoded = msgspec.convert(from_json(reply), _Reply)
        if decoded.progress is not None and run is not None and self._on_progress is not None:
            self._on_progress(*run, *decoded.progress)
        return _decode_reply(decoded)


def handler_path(fn: Callable[..., Any]) -> tuple[str, str]:
    """Return the (module, qualname) a child imports to find `fn`; refuse local functions."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or module == "__main__":
        raise ValidationError(f"{fn!r} is not an importable module-level function")
    return module, qualname


def run_in_child(
    module: str, qualname: str, body: bytes, run: tuple[str, str, int] | None = None
) -> bytes:
    """Child side: import the handler, decode the payload, run it (with a context reporting
    progress as `run`, if it takes one); return a JSON reply."""
    report = reporter(run)
    try:
        fn, payload_type = _resolve(module, qualname)
        payload = from_json(body)
        if payload_type is not None:
            payload = msgspec.convert(payload, payload_type)
        start_cpu_budget()
        if report is None:
            result = fn(payload)
        else:
            task_id, _, attempt = report.run
            result = fn(payload, TaskContext(task_id, attempt, "process", report))
    except MemoryError as exc:
        if memory_cap_mb() > 0:
            return _memory_cap_reply(exc)
        return _error_reply(exc, report)
    except BaseException as exc:  # SIGTERM exits via os._exit, so nothing needed escapes here
        return _error_reply(exc, report)
    try:
        return to_json(_Reply(ok=True, result=result, progress=_latest(report)))
    except ValidationError as exc:
        return to_json(
            _Reply(
                ok=False,
                error_type="ValidationError",
                message=f"the result of {module}.{qualname} is not JSON-serialisable: {exc}",
            )
        )


@cache
def _resolve(module: str, qualname: str) -> tuple[Callable[..., Any], Any]:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{module}.{qualname} is not callable")
    fn: Callable[..., Any] = target
    return fn, _payload_type(fn)


def _payload_type(fn: Callable[..., Any]) -> Any:
    """The annotation of the first parameter (as registry.build_spec reads it), or None."""
    names = list(inspect.signature(fn).parameters)
    if not names:
        raise TypeError(f"{fn.__qualname__} takes no payload parameter")
    try:
        hint = get_type_hints(fn).get(names[0])
    except Exception:  # unresolvable annotations: pass the JSON through
        return None
    return None if hint in (None, Any, object) else hint


def _latest(report: ChildReporter | None) -> tuple[int, int, str | None] | None:
    return None if report is None else report.latest


def _error_reply(exc: BaseException, report: ChildReporter | None = None) -> bytes:
    """Describe `exc` in JSON; never raises, so pebble never has an exception to pickle."""
    try:
        text = "".join(traceback.format_exception(exc))
        return to_json(
            _Reply(
                ok=False,
                error_type=type(exc).__name__,
                message=str(exc),
                traceback=text[-_TRACEBACK_LIMIT:],
                progress=_latest(report),
            )
        )
    except Exception:  # an exception whose str() or traceback itself fails
        return to_json(_Reply(ok=False, error_type=type(exc).__name__, message="(unprintable)"))


def _memory_cap_reply(exc: MemoryError) -> bytes:
    """The reply of a handler that allocated past the child's cap (freed by now)."""
    detail = f" ({exc})" if str(exc) else ""
    message = (
        f"memory cap exceeded: the task allocated past its child's {memory_cap_mb()} MB "
        f"(TASKENGINE_PROCESS_MEMORY_MB){detail}"
    )
    return to_json(_Reply(ok=False, error_type=_MEMORY_CAP_ERROR, message=message))


def _decode_reply(reply: _Reply) -> Any:
    if reply.ok:
        return reply.result
    if reply.error_type == _MEMORY_CAP_ERROR:
        raise MemoryCapExceeded(reply.message)
    error = TaskFailed(reply.error_type, reply.message, reply.traceback)
    if reply.traceback:
        error.add_note(f"traceback in the child process:\n{reply.traceback}")
    raise error


def _mp_context() -> Any:
    """forkserver where the platform has it (children start clean, no inherited threads)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The forkserver imports the child side once; each child forked from it starts with it
    # loaded, instead of importing the engine again (about 0.1 s of CPU per child).
    context.set_forkserver_preload([__name__])
    return context
