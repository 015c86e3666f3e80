"""The watchdog: a thread outside the event loop that ends the process when the loop stops.

An async handler that never yields (CPU-bound code, a blocking call) holds the loop: its own
timeout timer cannot fire, heartbeats stop, `/healthz` hangs and signal handlers never run. The
loop pets the watchdog every `tick`; once it has not for longer than `stall_limit` of the run
holding it, the watchdog logs which task that is (with the loop's stack), flushes the logs and
exits the process with EXIT_WATCHDOG, so its supervisor (`--processes`, a container) starts a
new one. The task's lease then expires and the reaper queues it again with the attempt spent:
a task that always blocks ends dead after max_attempts instead of stalling workers for ever.

It also reports, once each, thread runs still going `margin` after they were stopped (a thread
cannot be stopped, only abandoned), and ends the process when such runs hold every thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

log = logging.getLogger("taskengine.watchdog")

EXIT_WATCHDOG = 75  # EX_TEMPFAIL: the process was ended on purpose; start a new one
TICK = 0.5  # seconds between pets, and between the watchdog's looks
FROZEN = 5.0  # a look this late, with the CPU idle meanwhile: the process was stopped
EXIT_DEADLINE = 5.0  # a log handler stuck behind the blocked loop cannot delay the exit longer
_STACK_LINES = 12
ADVICE = "CPU-bound or blocking code belongs on the process executor (executor='process')"


@dataclass(frozen=True)
class Culprit:
    """What held the loop: a run of the pool (task id, type, worker, timeout) or something else."""

    what: str
    task_id: str | None = None
    task_type: str | None = None
    worker_id: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Overrun:
    """A thread run that was stopped (timed out, cancelled) and still occupies its thread."""

    task_id: str
    task_type: str
    worker_id: str
    stopped_for: float  # seconds since its run was stopped


@dataclass(frozen=True)
class Stall:
    """Why the watchdog ends the process."""

    reason: str
    instance: str
    culprit: Culprit | None = None
    stalled_for: float = 0.0
    limit: float = 0.0
    overruns: tuple[Overrun, ...] = field(default=())


def stall_limit(timeout: float | None, lease_for: float, margin: float) -> float:
    """How long the loop may go without running: the blocking run's timeout (its timer needs
    the loop), never more than a lease (by then every lease held here may have been handed
    to another worker), plus the margin."""
    base = lease_for if timeout is None else min(timeout, lease_for)
    return base + margin


class LoopWatchdog:
    """Watches one event loop from a daemon thread; `check` is one look (tests call it)."""

    def __init__(
        self,
        identify: Callable[[], Culprit],
        overruns: Callable[[], list[Overrun]],
        threads: int,
        *,
        instance: str,
        lease_for: float,
        margin: float,
        tick: float = TICK,
        on_stall: Callable[[Stall, str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self._identify = identify
        self._overruns = overruns
        self._threads = threads
        self.instance = instance
        self.lease_for = lease_for
        self.margin = margin
        self.tick = tick
        self.on_stall = on_stall or end_process  # what ends the process (tests record instead)
        self._monotonic = monotonic
        self._cpu = cpu
        self._petted = self._looked = monotonic()
        self._cpu_looked = cpu()
        self._reported: set[str] = set()  # overrunning runs already logged, by task id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._pet_handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Start petting from the running loop and watching from a daemon thread."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping.clear()
        self._looked, self._cpu_looked = self._monotonic(), self._cpu()
        self.pet()
        self._thread = threading.Thread(target=self._watch, name="taskengine-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the thread ends within a tick; nothing waits for it)."""
        self._stopping.set()
        self._thread = None
        if self._pet_handle is not None:
            self._pet_handle.cancel()
            self._pet_handle = None

    def alive(self) -> None:
        """Note that the loop ran just now."""
        self._petted = self._monotonic()

    def pet(self) -> None:
        """On the loop: say it runs, and come back in a tick."""
        self.alive()
        if not self._stopping.is_set():
            loop = asyncio.get_running_loop()
            self._pet_handle = loop.call_later(self.tick, self.pet)

    def check(self) -> Stall | None:
        """One look: the reason to end the process, or None. Logs new thread overruns."""
        now, cpu = self._monotonic(), self._cpu()
        late, busy = now - self._looked, cpu - self._cpu_looked
        self._looked, self._cpu_looked = now, cpu
        # Late with the CPU idle: the whole process was stopped (SIGSTOP, a suspended host), so
        # the loop gets a fresh chance. Late with the CPU busy: C code held the GIL, still stuck.
        if late > FROZEN and busy < late / 2:
            self._petted = now
            return None
        loop = self._loop
        if loop is not None and not loop.is_running():  # ended or between runs, not stuck
            if loop.is_closed():
                self._stopping.set()  # left running by a worker never stopped: nothing to watch
            self._petted = now
            return None
        stalled = now - self._petted
        if stalled > self.margin:
            culprit = self._identify()
            limit = stall_limit(culprit.timeout, self.lease_for, self.margin)
            if stalled > limit:
                return Stall("event loop blocked", self.instance, culprit, stalled, limit)
        overruns = [run for run in self._overruns() if run.stopped_for > self.margin]
        for run in overruns:
            if run.task_id not in self._reported:
                self._reported.add(run.task_id)
                log.error(
                    "a thread still runs %.0f s after its run was stopped; it cannot be killed: %s",
                    run.stopped_for,
                    ADVICE,
                    extra={
                        "task_id": run.task_id,
                        "type": run.task_type,
                        "worker_id": run.worker_id,
                        "instance": self.instance,
                    },
                )
        self._reported.intersection_update(run.task_id for run in overruns)
        if overruns and len(overruns) >= self._threads:
            reason = "every thread of the pool is held by a run that was stopped"
            return Stall(reason, self.instance, overruns=tuple(overruns))
        return None

    def loop_stack(self) -> str:
        """The last frames of the loop's thread: where it is stuck."""
        frame = sys._current_frames().get(self._loop_thread or -1)
        if frame is None:
            return ""
        return "".join(traceback.format_stack(frame)[-_STACK_LINES:])

    def _watch(self) -> None:
        while not self._stopping.wait(self.tick):
            stall = self.check()
            if stall is not None and not self._stopping.is_set():
                self.on_stall(stall, self.loop_stack())
                return


def end_process(stall: Stall, stack: str) -> None:
    """Log why (naming the task), end this process's descendants, flush the logs and exit with
    EXIT_WATCHDOG, at once."""
    backstop = threading.Timer(EXIT_DEADLINE, os._exit, (EXIT_WATCHDOG,))
    backstop.daemon = True
    backstop.start()
    culprit = stall.culprit
    fields: dict[str, object] = {
        "reason": stall.reason,
        "instance": stall.instance,
        "exit_code": EXIT_WATCHDOG,
    }
    if culprit is not None:
        fields.update(
            task_id=culprit.task_id,
            type=culprit.task_type,
            worker_id=culprit.worker_id,
            blocked_by=culprit.what,
            stalled_for=round(stall.stalled_for, 3),
            limit=stall.limit,
            stack=stack,
        )
    if stall.overruns:
        fields["task_ids"] = [run.task_id for run in stall.overruns]
    log.critical("watchdog: %s; ending the process: %s", stall.reason, ADVICE, extra=fields)
    kill_descendants()
    for handler in logging.getLogger().handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(EXIT_WATCHDOG)


def kill_descendants() -> None:
    """SIGKILL every process started under this one: a process-pool child would otherwise run
    its task to the end with nobody to take the result."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
