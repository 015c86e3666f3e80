"""Circuit breaker: opening rules, the sliding window, half-open probes, and the registry bound."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from taskengine.errors import ValidationError
from taskengine.policy.breaker import (
    WINDOW_BUCKETS,
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
)

T0 = 1_700_000_000.0
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def make(**kwargs: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig(**kwargs))  # type: ignore[arg-type]


COUNTS = ("consecutive_failures", "min_calls", "half_open_probes")
SPANS = ("failure_rate", "window", "open_for")
BAD_COUNTS = [(name, value) for name in COUNTS for value in (0, -1, 2.5, True)]
BAD_SPANS = [(name, value) for name in SPANS for value in (0.0, -1, math.nan, math.inf, "1")]


@pytest.mark.parametrize(("name", "value"), [*BAD_COUNTS, *BAD_SPANS, ("failure_rate", 1.5)])
def test_config_validated(name: str, value: object) -> None:
    with pytest.raises(ValidationError):
        BreakerConfig(**{name: value})  # type: ignore[arg-type]


def test_opens_after_consecutive_failures() -> None:
    breaker = make(consecutive_failures=3)
    breaker.record_failure(T0)
    breaker.record_failure(T0 + 1)
    assert breaker.state(T0 + 1) is CLOSED
    breaker.record_failure(T0 + 2)
    assert breaker.state(T0 + 2) is OPEN
    assert not breaker.allow(T0 + 2)


def test_success_resets_the_run_of_failures() -> None:
    breaker = make(consecutive_failures=3)
    for record in ("failure", "failure", "success", "failure", "failure"):
        getattr(breaker, f"record_{record}")(T0)
    assert breaker.state(T0) is CLOSED
    assert breaker.snapshot(T0).consecutive_failures == 2


def test_rate_opens_only_after_min_calls() -> None:
    breaker = make(consecutive_failures=100, failure_rate=0.5, min_calls=10)
    for i in range(4):  # fail, ok, fail, ok ... 50 % failures
        breaker.record_failure(T0 + i)
        breaker.record_success(T0 + i)
    breaker.record_failure(T0 + 5)  # 9 calls, 5 failures: under min_calls
    assert breaker.state(T0 + 5) is CLOSED
    breaker.record_failure(T0 + 6)  # 10 calls, 6 failures
    assert breaker.state(T0 + 6) is OPEN
    breaker = make(consecutive_failures=100, failure_rate=0.5, min_calls=10)
    for i in range(100):  # one failure in three
        (breaker.record_failure if i % 3 == 0 else breaker.record_success)(T0 + i * 0.1)
    assert breaker.state(T0 + 10) is CLOSED


def test_window_forgets_old_calls() -> None:
    breaker = make(consecutive_failures=100, failure_rate=0.5, min_calls=10, window=60.0)
    for i in range(9):
        breaker.record_failure(T0 + i)
    assert breaker.snapshot(T0 + 9).window_calls == 9
    later = T0 + 200.0
    assert breaker.snapshot(later).window_calls == 0
    breaker.record_failure(later)  # the nine old failures are gone: 1 call, not 10
    assert breaker.state(later) is CLOSED
    snap = breaker.snapshot(later)
    assert (snap.window_calls, snap.window_failures) == (1, 1)


def test_window_slides_by_slices() -> None:
    breaker = make(min_calls=1000, window=60.0)
    breaker.record_failure(T0)
    breaker.record_success(T0 + 30)
    assert breaker.snapshot(T0 + 59).window_calls == 2
    assert breaker.snapshot(T0 + 61).window_calls == 1  # the call at T0 fell out
    assert breaker.snapshot(T0 + 91).window_calls == 0


def test_window_memory_is_bounded() -> None:
    breaker = make(consecutive_failures=10**9, min_calls=10**9, window=10.0)
    for i in range(20_000):
        breaker.record_success(T0 + i * 0.01)
        breaker.record_failure(T0 + i * 0.01)
    assert len(breaker._buckets) <= WINDOW_BUCKETS
    snap = breaker.snapshot(T0 + 200)
    assert snap.window_calls == 2 * snap.window_failures
    assert 1900 <= snap.window_calls <= 2000  # about the last 10 s of 100 calls/s x 2


def test_half_open_allows_only_the_probe_count() -> None:
    breaker = make(consecutive_failures=1, open_for=10.0, half_open_probes=2)
    breaker.record_failure(T0)
    now = T0 + 10
    assert [breaker.allow(now) for _ in range(4)] == [True, True, False, False]
    assert breaker.snapshot(now).probes_in_flight == 2


def test_probe_success_closes_and_resets() -> None:
    breaker = make(consecutive_failures=2, open_for=10.0)
    breaker.record_failure(T0)
    breaker.record_failure(T0)
    assert breaker.allow(T0 + 10)
    breaker.record_success(T0 + 11)
    assert breaker.snapshot(T0 + 11) == CircuitBreaker(breaker.config).snapshot(T0 + 11)
    assert breaker.allow(T0 + 11)
    breaker.record_failure(T0 + 12)  # one failure after closing: not yet two in a row
    assert breaker.state(T0 + 12) is CLOSED


def test_probe_failure_reopens_for_open_for() -> None:
    breaker = make(consecutive_failures=1, open_for=10.0)
    breaker.record_failure(T0)
    assert breaker.allow(T0 + 10)
    breaker.record_failure(T0 + 12)
    assert breaker.state(T0 + 12) is OPEN
    assert breaker.snapshot(T0 + 12).opened_at == T0 + 12
    assert not breaker.allow(T0 + 21.9)
    assert breaker.state(T0 + 22) is HALF_OPEN


def test_late_results_while_open_change_nothing() -> None:
    breaker = make(consecutive_failures=1, open_for=10.0)
    breaker.record_failure(T0)
    breaker.record_success(T0 + 1)  # a call started before the breaker opened
    breaker.record_failure(T0 + 5)  # does not push the open period out
    assert breaker.state(T0 + 5) is OPEN
    data = msgspec.json.decode(msgspec.json.encode(breaker.snapshot(T0 + 5)))  # dashboard
    assert (data["state"], data["opened_at"], data["retry_after"]) == ("open", T0, 5.0)
    assert breaker.state(T0 + 10) is HALF_OPEN


def test_open_for_then_half_open_and_retry_after() -> None:
    breaker = make(consecutive_failures=1, open_for=30.0)
    assert breaker.allow(T0)
    assert breaker.retry_after(T0) == 0.0
    breaker.record_failure(T0)
    assert breaker.retry_after(T0) == 30.0
    assert breaker.retry_after(T0 + 12) == pytest.approx(18.0)
    assert breaker.state(T0 + 29.999) is OPEN
    assert not breaker.allow(T0 + 29.999)
    assert breaker.state(T0 + 30.0) is HALF_OPEN
    assert breaker.retry_after(T0 + 30) == 0.0  # half-open with a free probe slot
    assert breaker.allow(T0 + 30)
    assert breaker.retry_after(T0 + 31) == pytest.approx(29.0)  # slot taken: wait for it


def test_lost_or_released_probe_frees_its_slot() -> None:
    breaker = make(consecutive_failures=1, open_for=10.0)
    breaker.record_failure(T0)
    assert breaker.allow(T0 + 10)  # this probe never reports back
    assert not breaker.allow(T0 + 19)
    assert breaker.allow(T0 + 20)
    assert not breaker.allow(T0 + 20)
    breaker.release(T0 + 21)  # the run was cancelled before it called out: slot handed back
    assert breaker.allow(T0 + 21)
    breaker.release(T0 + 21)
    breaker.release(T0 + 21)  # extra releases never make room for more probes than allowed
    assert breaker.snapshot(T0 + 21).probes_in_flight == 0


def test_registry_gets_or_creates_one_breaker_per_key() -> None:
    registry = BreakerRegistry(BreakerConfig(consecutive_failures=1))
    a = registry.get("api.example.com")
    assert registry.get("api.example.com") is a
    assert registry.get("other.example.com") is not a
    assert a.config.consecutive_failures == 1
    assert registry.peek("missing") is None
    assert "missing" not in registry
    a.record_failure(T0)
    snaps = registry.snapshots(T0)
    assert snaps["api.example.com"].state is OPEN
    assert snaps["other.example.com"].state is CLOSED


def test_registry_is_bounded_and_evicts_closed_first() -> None:
    registry = BreakerRegistry(BreakerConfig(consecutive_failures=1), max_keys=3)
    registry.get("a").record_failure(T0)  # open: kept in preference to closed ones
    for key in ("b", "c", "d"):
        registry.get(key)
    assert set(registry.snapshots(T0)) == {"a", "c", "d"}  # "b" went: the oldest closed one
    registry.get("c")  # touch: now the most recently used
    registry.get("e")
    assert set(registry.snapshots(T0)) == {"a", "c", "e"}


def test_registry_bound_holds_when_every_key_is_failing() -> None:
    registry = BreakerRegistry(BreakerConfig(consecutive_failures=1), max_keys=100)
    for i in range(1000):
        registry.get(f"host-{i}").record_failure(T0)
    assert len(registry) == 100
    assert "host-999" in registry
    default = BreakerRegistry()
    for i in range(10_050):
        default.get(f"h{i}")
    assert len(default) == 10_000
    for bad in (0, -1, True):
        with pytest.raises(ValidationError):
            BreakerRegistry(max_keys=bad)


class BreakerMachine(RuleBasedStateMachine):
    """Random calls, results and clock steps: an opened breaker refuses calls for open_for."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.opened_at: float | None = None  # when a failure last opened the breaker
        self.breaker = CircuitBreaker()

    @initialize(
        config=st.builds(
            BreakerConfig,
            consecutive_failures=st.integers(1, 4),
            failure_rate=st.sampled_from([0.25, 0.5, 1.0]),
            min_calls=st.integers(1, 6),
            window=st.sampled_from([1.0, 10.0, 60.0]),
            open_for=st.sampled_from([0.5, 5.0, 30.0]),
            half_open_probes=st.integers(1, 3),
        )
    )
    def configure(self, config: BreakerConfig) -> None:
        self.breaker = CircuitBreaker(config)

    def _observe(self, *, may_open: bool = False) -> None:
        snap = self.breaker.snapshot(self.now)
        if may_open and snap.opened_at == self.now != self.opened_at:
            self.opened_at = self.now  # this failure (re)opened the breaker
        if self._within_open_period():
            assert snap.state is OPEN  # nothing ends the open period early
        else:
            assert snap.state is not OPEN, "opened without a failure, or open past open_for"

    def _within_open_period(self) -> bool:
        return (
            self.opened_at is not None and self.now < self.opened_at + self.breaker.config.open_for
        )

    @rule(dt=st.sampled_from([0.0, 0.01, 0.3, 1.0, 4.9, 5.0, 29.99, 30.0, 100.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._observe()

    @rule()
    def call(self) -> None:
        allowed = self.breaker.allow(self.now)
        if self._within_open_period():
            assert not allowed
        self._observe()

    @rule(ok=st.booleans())
    def report(self, ok: bool) -> None:
        (self.breaker.record_success if ok else self.breaker.record_failure)(self.now)
        self._observe(may_open=not ok)

    @rule()
    def give_back_probe(self) -> None:  # a no-op unless half-open
        self.breaker.release(self.now)
        self._observe()

    @invariant()
    def never_allows_while_open(self) -> None:
        if self._within_open_period():
            assert self.breaker.state(self.now) is OPEN
            assert self.breaker.retry_after(self.now) > 0
            assert not self.breaker.allow(self.now)

    @invariant()
    def counters_are_consistent(self) -> None:
        snap = self.breaker.snapshot(self.now)
        assert 0 <= snap.window_failures <= snap.window_calls
        assert 0 <= snap.probes_in_flight <= self.breaker.config.half_open_probes
        assert snap.retry_after >= 0
        assert (snap.opened_at is None) == (snap.state is CLOSED)
        if snap.state is not OPEN:
            assert snap.retry_after <= self.breaker.config.open_for


BreakerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestBreakerMachine = BreakerMachine.TestCase
