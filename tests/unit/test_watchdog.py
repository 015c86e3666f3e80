"""The watchdog's decisions, one look at a time, on a fake monotonic clock (nothing running)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from taskengine.runtime.watchdog import (
    FROZEN,
    Culprit,
    LoopWatchdog,
    Overrun,
    Stall,
    stall_limit,
)

RUN = Culprit("worker i/w1", "T1", "stuck.loop", "i/w1", timeout=5.0)


class Time:
    """A monotonic clock the test moves, and the process's CPU time (moved with `burn`)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.used = 0.0

    def __call__(self) -> float:
        return self.now

    def cpu(self) -> float:
        return self.used

    def burn(self, seconds: float) -> None:
        """Time passes with one core busy (C code holding the GIL)."""
        self.now += seconds
        self.used += seconds


def watchdog(
    time: Time,
    culprit: Culprit = RUN,
    overruns: list[Overrun] | None = None,
    threads: int = 4,
) -> LoopWatchdog:
    return LoopWatchdog(
        lambda: culprit,
        lambda: list(overruns or []),
        threads,
        instance="i",
        lease_for=30.0,
        margin=2.0,
        monotonic=time,
        cpu=time.cpu,
    )


def advance(dog: LoopWatchdog, time: Time, seconds: float, step: float = 0.5) -> Stall | None:
    """Look every `step` seconds (as the thread does) without a pet; the last look's answer."""
    stall = None
    end = time.now + seconds
    while time.now < end:
        time.now = min(time.now + step, end)
        stall = dog.check()
        if stall is not None:
            return stall
    return stall


def test_the_limit_is_the_runs_timeout_capped_by_the_lease_plus_the_margin() -> None:
    assert stall_limit(5.0, lease_for=30.0, margin=2.0) == 7.0
    assert stall_limit(1800.0, lease_for=30.0, margin=2.0) == 32.0
    assert stall_limit(None, lease_for=30.0, margin=2.0) == 32.0


def test_a_loop_blocked_past_the_limit_is_a_stall_naming_the_run() -> None:
    time = Time()
    dog = watchdog(time)
    assert advance(dog, time, 6.5) is None  # within timeout + margin
    stall = advance(dog, time, 1.0)
    assert stall is not None
    assert stall.reason == "event loop blocked"
    assert stall.culprit == RUN
    assert stall.limit == 7.0
    assert stall.stalled_for > 7.0
    assert stall.instance == "i"


def test_a_loop_that_pets_is_never_a_stall() -> None:
    time = Time()
    dog = watchdog(time)
    for _ in range(200):
        time.now += 0.5
        dog.alive()  # what the loop's callback does
        assert dog.check() is None


def test_a_block_by_something_else_gets_a_lease_and_the_margin() -> None:
    time = Time()
    dog = watchdog(time, Culprit("api request"))
    assert advance(dog, time, 31.5) is None
    stall = advance(dog, time, 1.0)
    assert stall is not None and stall.culprit == Culprit("api request")


def test_a_frozen_process_gives_the_loop_a_fresh_chance() -> None:
    time = Time()
    dog = watchdog(time)
    time.now += FROZEN + 60  # SIGSTOP: neither the loop nor the watchdog ran
    assert dog.check() is None
    assert advance(dog, time, 6.5) is None
    assert advance(dog, time, 1.0) is not None  # still stuck after it resumed


def test_a_late_look_with_the_cpu_busy_is_still_a_stall() -> None:
    time = Time()
    dog = watchdog(time)
    time.burn(FROZEN + 60)  # one C call held the GIL: the watchdog could not look
    stall = dog.check()
    assert stall is not None and stall.culprit == RUN


def test_thread_overruns_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    time = Time()
    overruns = [Overrun("T2", "stuck.thread", "i/w2", stopped_for=1.0)]
    dog = watchdog(time, overruns=overruns)

    def look() -> None:
        time.now += 0.5
        dog.alive()
        assert dog.check() is None

    with caplog.at_level(logging.ERROR, "taskengine.watchdog"):
        look()  # within the margin: not yet
        assert not caplog.records
        overruns[0] = Overrun("T2", "stuck.thread", "i/w2", stopped_for=3.0)
        look()
        look()
    assert len(caplog.records) == 1
    assert caplog.records[0].__dict__["task_id"] == "T2"
    assert "process executor" in caplog.records[0].getMessage()


def test_stopped_runs_holding_every_thread_are_a_stall() -> None:
    time = Time()
    overruns = [Overrun(f"T{n}", "stuck.thread", f"i/w{n}", stopped_for=3.0) for n in range(2)]
    dog = watchdog(time, overruns=overruns[:1], threads=2)
    dog.alive()
    assert dog.check() is None
    dog = watchdog(time, overruns=overruns, threads=2)
    stall = dog.check()
    assert stall is not None
    assert [run.task_id for run in stall.overruns] == ["T0", "T1"]


def test_a_loop_that_ended_is_not_a_stall() -> None:
    time = Time()
    dog = watchdog(time)
    dog.tick = 3600.0  # the thread never looks by itself; the test does

    async def started() -> None:
        dog.start()

    asyncio.run(started())  # a worker left running when its loop ended
    try:
        assert advance(dog, time, 60.0) is None
    finally:
        dog.stop()
