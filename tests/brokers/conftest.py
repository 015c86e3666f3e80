"""Fixtures of the conformance suite: `broker` is a started backend for every broker URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from taskengine.brokers import BrokerBackend
from taskengine.clock import FakeClock
from tests.brokers.support import (
    T0,
    MakeBroker,
    Tasks,
    broker_urls,
    drop_storage,
    fill_url,
    started,
    url_id,
)


@pytest.fixture(params=broker_urls(), ids=url_id)
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One filled-in broker URL per backend under test."""
    return fill_url(request.param, tmp_path)


@pytest.fixture
async def make_broker(broker_url: str) -> AsyncIterator[MakeBroker]:
    """Start extra brokers on the test's URL (with options such as max_depth); after the test,
    what they stored on a shared server is dropped and they are closed."""
    opened: list[BrokerBackend] = []

    async def make(url: str | None = None, **options: Any) -> BrokerBackend:
        broker = await started(url or broker_url, **options)
        opened.append(broker)
        return broker

    yield make
    for broker in reversed(opened):
        await drop_storage(broker)
        await broker.close()


@pytest.fixture
async def broker(make_broker: MakeBroker) -> BrokerBackend:
    """A started broker, closed after the test."""
    return await make_broker()


@pytest.fixture
def clock() -> FakeClock:
    """The test's clock: time moves only when the test advances it."""
    return FakeClock(T0)


@pytest.fixture
def tasks() -> Tasks:
    """A task builder with explicit increasing ids."""
    return Tasks()
