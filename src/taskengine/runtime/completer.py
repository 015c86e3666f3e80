"""The completer: collects outcomes from the workers and settles them in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from taskengine.brokers.base import Broker
from taskengine.clock import Clock
from taskengine.errors import TaskEngineError
from taskengine.model import Outcome, OutcomeKind, ResultStatus, TaskResult
from taskengine.model.serializer import pack
from taskengine.runtime.progress import ProgressBoard
from taskengine.tracing import WorkerTracing, settled, settling

log = logging.getLogger("taskengine.runtime")
_RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


def storable(outcome: Outcome, now: float) -> Outcome:
    """`outcome` if a broker can store it, else a dead outcome saying why (its result holds
    a value MessagePack refuses): one bad result fails its own task, never its batch."""
    try:
        pack(outcome)
    except (TypeError, ValueError, OverflowError) as exc:
        log.error("the outcome of %s cannot be stored: %s", outcome.task_id, exc)
        old = outcome.result
        error = f"the outcome could not be stored: {exc}".encode("utf-8", "backslashreplace")
        result = TaskResult(
            task_id=outcome.task_id,
            status=ResultStatus.FAILURE,
            duration=old.duration if old is not None else 0.0,
            worker_id=old.worker_id if old is not None else None,
            completed_at=now,
            error=error.decode("utf-8"),
            attempt=old.attempt if old is not None else 0,
        )
        return Outcome(
            kind=OutcomeKind.DEAD, task_id=outcome.task_id, token=outcome.token, result=result
        )
    return outcome


class Completer:
    """Settles whatever has piled up in one `settle` call per round; never drops an outcome.

    While one batch is in flight the next piles up, so a fast broker settles small batches
    at once and a slow one gets larger batches: no timer, no per-task round trip.
    """

    def __init__(
        self,
        broker: Broker,
        clock: Clock,
        batch_size: int = 512,
        progress: ProgressBoard | None = None,
    ) -> None:
        self._broker = broker
        self._progress = progress
        self._clock = clock
        self._batch_size = batch_size
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.settled = 0
        self.refused = 0
        self.failing = 0  # settle calls failed in a row: while > 0, outcomes are not stored
        self.tracing: WorkerTracing | None = None  # set by the worker when it starts

    def add(self, outcome: Outcome) -> None:
        """Queue an outcome for the next batch (no await, no I/O)."""
        self._pending.append(outcome)
        self._wake.set()

    @property
    def pending(self) -> int:
        """Outcomes not settled yet."""
        return len(self._pending)

    def pending_ids(self) -> list[str]:
        """The task ids of the outcomes not settled yet."""
        return [outcome.task_id for outcome in self._pending]

    async def run_once(self) -> int:
        """Settle one batch of what is pending; return how many were applied."""
        if not self._pending:
            return 0
        batch = self._pending[: self._batch_size]
        del self._pending[: len(batch)]
        now = self._clock.now()
        try:
            if self._progress is not None and self._progress.pending:
                await self._last_progress(batch, now)
            applied = await self._settle(batch, now)
        except Exception:
            repaired = [storable(outcome, now) for outcome in batch]
            self._pending[:0] = repaired  # put back in order; retried by the caller
            if any(new is not old for new, old in zip(repaired, batch, strict=True)):
                return 0  # an outcome no broker could store spoilt the batch: retry at once
            self.failing += 1
            raise
        except BaseException:
            self._pending[:0] = batch
            raise
        self.failing = 0
        done = sum(applied)
        self.settled += done
        self.refused += len(batch) - done
        if done < len(batch):
            stale = [o.task_id for o, ok in zip(batch, applied, strict=True) if not ok]
            log.warning(
                "settle refused for %d tasks whose lease was lost (first: %s)",
                len(stale),
                stale[:10],
            )
        return done

    async def _last_progress(self, batch: list[Outcome], now: float) -> None:
        """Write the batch's unflushed progress reports before it settles (one call; best
        effort: a failure loses a report, never an outcome)."""
        assert self._progress is not None
        reports = self._progress.take_runs([outcome.token for outcome in batch])
        if reports:
            try:
                await self._broker.record_progress(reports, now)
            except Exception:
                log.warning("could not write the last progress of %d tasks", len(reports))

    async def _settle(self, batch: list[Outcome], now: float) -> list[bool]:
        tracing = self.tracing
        if tracing is None:
            return await self._broker.settle(batch, now)
        with settling(tracing, batch) as span:
            applied = await self._broker.settle(batch, now)
            settled(tracing, span, batch, sum(applied))
            return applied

    async def start(self) -> None:
        """Start settling in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="taskengine:completer")

    async def stop(self, timeout: float = 30.0) -> None:
        """Let the loop finish its batch in flight, then settle everything still pending.

        A settle is never cancelled midway: its outcome may already be applied, and settling
        it again would only be refused as stale.
        """
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with asyncio.timeout(timeout):  # a broker that hangs must not hang shutdown
            await self._drain()

    async def _drain(self, attempts: int = len(_RETRY_DELAYS)) -> None:
        failures = 0
        while self._pending:
            try:
                await self.run_once()
                failures = 0
            except TaskEngineError:
                if failures >= attempts:
                    log.error("gave up settling %d outcomes", len(self._pending))
                    raise
                await asyncio.sleep(_RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)])
                failures += 1

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                try:
                    await self.run_once()
                    failures = 0
                except Exception:
                    log.exception("settle failed; retrying")
                    if self._stopping:
                        return  # stop() drains with its own bounded retries
                    await asyncio.sleep(_RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)])
                    failures += 1
