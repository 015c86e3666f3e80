"""Retry policy: full-jitter backoff bounds, the cap, overflow safety, and failure decisions."""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskengine.errors import ValidationError
from taskengine.policy.retry import (
    DEFAULT_RETRY_POLICY,
    MAX_REQUESTED_DELAY,
    FailureDecision,
    NoRetry,
    Retry,
    RetryPolicy,
    backoff_ceiling,
    backoff_delay,
    decide_failure,
)

NOW = 1_700_000_000.0

policies = st.builds(
    lambda base, factor, extra: RetryPolicy(base=base, factor=factor, cap=base + extra),
    base=st.floats(min_value=1e-3, max_value=1e4),
    factor=st.floats(min_value=1.0, max_value=10.0),
    extra=st.floats(min_value=0.0, max_value=1e6),
)


def test_defaults_match_design() -> None:
    assert RetryPolicy(base=1.0, factor=2.0, cap=3600.0) == DEFAULT_RETRY_POLICY


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": 0.0},
        {"base": -1.0},
        {"factor": 0.5},
        {"cap": 0.5},
        {"base": math.nan},
        {"cap": math.inf},
        {"factor": math.inf},
        {"base": True},
    ],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(**kwargs)


def test_policy_validated_when_decoded() -> None:
    with pytest.raises(ValidationError):
        msgspec.json.decode(b'{"base": 5, "cap": 1}', type=RetryPolicy)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    policy=policies,
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_within_full_jitter_bounds(attempt: int, policy: RetryPolicy, seed: int) -> None:
    delay = backoff_delay(attempt, policy, random.Random(seed))
    assert 0.0 <= delay <= backoff_ceiling(attempt, policy) <= policy.cap
    assert backoff_ceiling(attempt, policy) == pytest.approx(_naive_ceiling(attempt, policy))


def _naive_ceiling(attempt: int, policy: RetryPolicy) -> float:
    try:
        raw = policy.base * policy.factor ** (attempt - 1)
    except OverflowError:
        raw = math.inf
    return min(policy.cap, raw)


@given(attempt=st.integers(min_value=1, max_value=200), policy=policies)
def test_ceiling_never_shrinks(attempt: int, policy: RetryPolicy) -> None:
    assert backoff_ceiling(attempt + 1, policy) >= backoff_ceiling(attempt, policy)


def test_ceiling_doubles_then_caps() -> None:
    ceilings = [backoff_ceiling(n, DEFAULT_RETRY_POLICY) for n in range(1, 15)]
    assert ceilings[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert ceilings[-1] == 3600.0
    assert backoff_ceiling(13, DEFAULT_RETRY_POLICY) == 3600.0  # 2**12 = 4096 > cap


def test_backoff_grows_with_attempts_in_expectation() -> None:
    rng = random.Random(7)
    means = [
        sum(backoff_delay(n, DEFAULT_RETRY_POLICY, rng) for _ in range(2000)) / 2000
        for n in range(1, 10)
    ]
    assert means == sorted(means)
    for n, mean in enumerate(means, start=1):  # full jitter: the mean is half the ceiling
        assert mean == pytest.approx(backoff_ceiling(n, DEFAULT_RETRY_POLICY) / 2, rel=0.1)


def test_backoff_honours_cap() -> None:
    policy = RetryPolicy(base=10.0, factor=3.0, cap=60.0)
    rng = random.Random(1)
    delays = [backoff_delay(n, policy, rng) for n in range(1, 50) for _ in range(50)]
    assert max(delays) <= 60.0
    assert max(delays) > 50.0  # jitter reaches near the cap once capped


@pytest.mark.parametrize("attempt", [1025, 10**6, 10**18, 10**400])
def test_huge_attempts_do_not_overflow(attempt: int) -> None:
    policy = RetryPolicy(base=1e-3, factor=1.0000001, cap=1e300)
    for p in (DEFAULT_RETRY_POLICY, policy, RetryPolicy(factor=1e300, cap=1e308)):
        delay = backoff_delay(attempt, p, random.Random(0))
        assert math.isfinite(delay)
        assert 0.0 <= delay <= p.cap


def test_factor_one_is_constant() -> None:
    policy = RetryPolicy(base=5.0, factor=1.0, cap=100.0)
    assert {backoff_ceiling(n, policy) for n in (1, 2, 50, 10**9)} == {5.0}


@pytest.mark.parametrize("attempt", [0, -1, True])
def test_backoff_rejects_bad_attempt(attempt: int) -> None:
    with pytest.raises(ValidationError):
        backoff_delay(attempt, DEFAULT_RETRY_POLICY, random.Random(0))


def test_backoff_is_deterministic_for_a_seed() -> None:
    first = [backoff_delay(n, DEFAULT_RETRY_POLICY, random.Random(42)) for n in range(1, 20)]
    again = [backoff_delay(n, DEFAULT_RETRY_POLICY, random.Random(42)) for n in range(1, 20)]
    assert first == again


def test_decide_retry_uses_backoff() -> None:
    decision = decide_failure(3, 25, NOW, DEFAULT_RETRY_POLICY, random.Random(3))
    expected = backoff_delay(3, DEFAULT_RETRY_POLICY, random.Random(3))
    assert decision.kind == "retry"
    assert decision.run_at == NOW + expected
    assert "attempt 3 of 25" in decision.reason


def test_decide_dead_at_max_attempts() -> None:
    decision = decide_failure(25, 25, NOW, DEFAULT_RETRY_POLICY, random.Random(0))
    assert decision == FailureDecision("dead", None, "attempts exhausted (25 of 25)")
    beyond = decide_failure(30, 25, NOW, DEFAULT_RETRY_POLICY, random.Random(0))
    assert beyond.kind == "dead"


def test_decide_single_attempt_task_dies_at_once() -> None:
    decision = decide_failure(1, 1, NOW, DEFAULT_RETRY_POLICY, random.Random(0))
    assert decision.kind == "dead"


def test_decide_dead_when_not_retryable() -> None:
    decision = decide_failure(
        1, 25, NOW, DEFAULT_RETRY_POLICY, random.Random(0), retryable=False, requested_delay=5
    )
    assert decision == FailureDecision("dead", None, "not retryable")


def test_requested_delay_overrides_backoff() -> None:
    decision = decide_failure(
        2, 25, NOW, DEFAULT_RETRY_POLICY, random.Random(0), requested_delay=7200.0
    )
    assert decision.kind == "retry"
    assert decision.run_at == NOW + 7200.0  # beyond the backoff cap: the handler asked for it
    assert "requested" in decision.reason
    zero = decide_failure(2, 25, NOW, DEFAULT_RETRY_POLICY, random.Random(0), requested_delay=0)
    assert zero.run_at == NOW


def test_requested_delay_still_bounded_by_max_attempts() -> None:
    decision = decide_failure(
        5, 5, NOW, DEFAULT_RETRY_POLICY, random.Random(0), requested_delay=1.0
    )
    assert decision.kind == "dead"


@pytest.mark.parametrize("delay", [-1.0, math.nan, math.inf, MAX_REQUESTED_DELAY + 1])
def test_requested_delay_validated(delay: float) -> None:
    with pytest.raises(ValidationError):
        decide_failure(1, 5, NOW, DEFAULT_RETRY_POLICY, random.Random(0), requested_delay=delay)
    with pytest.raises(ValidationError):
        Retry(delay)


@pytest.mark.parametrize(("attempt", "max_attempts"), [(0, 5), (1, 0), (1, True)])
def test_decide_rejects_bad_counts(attempt: int, max_attempts: int) -> None:
    with pytest.raises(ValidationError):
        decide_failure(attempt, max_attempts, NOW, DEFAULT_RETRY_POLICY, random.Random(0))


def test_retry_exception_carries_delay() -> None:
    with pytest.raises(Retry) as caught:
        raise Retry(30, "rate limited upstream")
    assert caught.value.delay == 30.0
    assert caught.value.reason == "rate limited upstream"
    assert str(caught.value) == "rate limited upstream"
    assert Retry().delay is None
    assert str(Retry(2.5)) == "retry requested in 2.5 s"


def test_no_retry_is_not_a_retry() -> None:
    with pytest.raises(NoRetry, match="bad input"):
        raise NoRetry("bad input")
    assert not issubclass(NoRetry, Retry)
    assert not issubclass(Retry, NoRetry)


def test_decisions_serialise() -> None:
    decision = decide_failure(1, 3, NOW, DEFAULT_RETRY_POLICY, random.Random(0))
    assert msgspec.json.decode(msgspec.json.encode(decision), type=FailureDecision) == decision
