"""Progress reports: handlers post them here (from the loop, a thread or a child process's
reader) and a service writes the latest of each run through the broker once a second.

Reporting costs a dict write under a lock, never I/O: however often a handler reports, its
task's record changes at most once a flush, and every run's report of a flush goes to the broker
in one `record_progress` call (ADR 0034). A report is fenced by its run's lease token, so a
stale run's progress is dropped by the broker. The completer writes a settling run's unflushed
report just before the settle, one call for the batch (`take_runs`), so a finished task keeps
the last report its run made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from taskengine.brokers.base import BrokerBackend
from taskengine.clock import Clock
from taskengine.model import Lease, Progress, ProgressReport
from taskengine.runtime.service import PeriodicService

PROGRESS = "progress"
FLUSH_EVERY = 1.0  # seconds: the most often a task's progress is written


# A report as posted: (task_id, attempt, done, total, note, at); made a struct only when taken,
# so a handler reporting in a tight loop pays for a tuple, not two structs, per call.
_Posted = tuple[str, int, int, int, str | None, float]


class ProgressBoard:
    """The latest unflushed report of each run, by lease token; safe from any thread."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pending: dict[str, _Posted] = {}
        self._lock = threading.Lock()  # held for a dict operation, never across an await

    def reporter(self, lease: Lease) -> Callable[[int, int, str | None], None]:
        """The callback a run's TaskContext calls with (done, total, note)."""
        task_id, token, attempt = lease.task_id, lease.token, lease.record.attempt

        def report(done: int, total: int, note: str | None) -> None:
            self.post_run(task_id, token, attempt, done, total, note)

        return report

    def post_run(
        self, task_id: str, token: str, attempt: int, done: int, total: int, note: str | None
    ) -> None:
        """Keep this report of the run under lease `token`, replacing its unflushed one."""
        posted = (task_id, attempt, done, total, note, self._clock.now())
        with self._lock:
            self._pending[token] = posted

    def take(self) -> list[ProgressReport]:
        """Every unflushed report, oldest run first; the board is empty after."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [_report(token, posted) for token, posted in pending.items()]

    def take_runs(self, tokens: Sequence[str]) -> list[ProgressReport]:
        """The unflushed reports of these runs (by lease token), taken off the board."""
        with self._lock:
            pending = self._pending
            taken = [(token, pending.pop(token)) for token in tokens if token in pending]
        return [_report(token, posted) for token, posted in taken]

    def give_back(self, reports: list[ProgressReport]) -> None:
        """Keep reports a failed flush could not write, unless a newer one came meanwhile."""
        with self._lock:
            for r in reports:
                p = r.progress
                self._pending.setdefault(
                    r.token, (r.task_id, p.attempt, p.done, p.total, p.note, p.at)
                )

    @property
    def pending(self) -> int:
        """How many runs have a report waiting for the next flush."""
        return len(self._pending)


def _report(token: str, posted: _Posted) -> ProgressReport:
    task_id, attempt, done, total, note, at = posted
    progress = Progress(done=done, total=total, note=note, at=at, attempt=attempt)
    return ProgressReport(task_id=task_id, token=token, progress=progress)


class ProgressFlusher(PeriodicService):
    """Every second: write the board's reports through the broker in one call (none if empty)."""

    def __init__(
        self,
        broker: BrokerBackend,
        clock: Clock,
        board: ProgressBoard,
        *,
        every: float = FLUSH_EVERY,
    ) -> None:
        super().__init__(PROGRESS, every, self.run_once, deadline=max(every, 5.0))
        self.broker = broker
        self.clock = clock
        self.board = board

    async def run_once(self) -> int:
        """Flush the pending reports; return how many the broker stored (fenced ones are not)."""
        reports = self.board.take()
        if not reports:
            return 0
        try:
            stored = await self.broker.record_progress(reports, self.clock.now())
        except BaseException:
            self.board.give_back(reports)
            raise
        return sum(stored)
