"""Uniqueness seen from the App: a repeat answers the holder's id, by payload or by key."""

from __future__ import annotations

import pytest

from taskengine.clock import FakeClock
from taskengine.errors import ValidationError
from taskengine.request import TaskRequest
from tests.brokers.support import T0
from tests.runtime.apps import build_app


async def test_unique_for_answers_a_repeat_of_the_same_payload_with_the_holder() -> None:
    clock = FakeClock(T0)
    app = build_app(clock=clock)
    async with app:
        first = await app.submit("quick", 1, unique_for=60)
        again = await app.submit("quick", 1, unique_for=60)
        other = await app.submit("quick", 2, unique_for=60)
        clock.advance(61)
        later = await app.submit("quick", 1, unique_for=60)

    assert again == first
    assert other != first
    assert later not in (first, other)


async def test_a_unique_key_groups_different_payloads() -> None:
    app = build_app()
    async with app:
        ids = await app.submit_many(
            [
                TaskRequest(type="quick", payload=n, unique_while="queued", unique_key="user-7")
                for n in range(3)
            ]
        )
    assert len(set(ids)) == 1


async def test_conflicting_unique_options_are_refused() -> None:
    app = build_app()
    async with app:
        with pytest.raises(ValidationError):
            await app.submit("quick", 1, unique_for=5, unique_while="queued")
        with pytest.raises(ValidationError):
            await app.submit("quick", 1, unique_while="sometimes")
