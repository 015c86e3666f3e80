"""model.priority: the head-start order key and its starvation bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from taskengine.model import Priority
from taskengine.model.priority import HEAD_START, STARVATION_BOUND, order_key

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


def test_head_starts() -> None:
    assert HEAD_START[Priority.HIGH] > HEAD_START[Priority.NORMAL] > HEAD_START[Priority.LOW]
    assert STARVATION_BOUND == HEAD_START[Priority.HIGH] - HEAD_START[Priority.LOW] == 120.0


def test_same_time_higher_first() -> None:
    keys = [order_key(p, 100.0) for p in (Priority.HIGH, Priority.NORMAL, Priority.LOW)]
    assert keys == sorted(keys)
    assert len(set(keys)) == 3


def test_accepts_int_priority() -> None:
    assert order_key(2, 100.0) == order_key(Priority.HIGH, 100.0)


@given(t=times, later=st.floats(min_value=0.001, max_value=1e6))
def test_low_never_waits_behind_high_due_after_the_bound(t: float, later: float) -> None:
    high_due = t + STARVATION_BOUND + later
    assert order_key(Priority.LOW, t) < order_key(Priority.HIGH, high_due) or (
        # float rounding at huge t can collapse a tiny `later`
        high_due - t <= STARVATION_BOUND
    )


@given(t=times, gap=st.floats(min_value=0.001, max_value=STARVATION_BOUND))
def test_high_within_the_bound_goes_first(t: float, gap: float) -> None:
    high_due = t + STARVATION_BOUND - gap
    if high_due - t < STARVATION_BOUND:  # float rounding may erase a tiny gap
        assert order_key(Priority.HIGH, high_due) < order_key(Priority.LOW, t)


@given(p=st.sampled_from(list(Priority)), a=times, b=times)
def test_same_tier_earlier_first(p: Priority, a: float, b: float) -> None:
    if a < b:
        assert order_key(p, a) <= order_key(p, b)
