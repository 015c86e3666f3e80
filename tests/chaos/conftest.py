"""Fixtures of the chaos tests: a broker per backend, and the processes a test starts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from taskengine.brokers import BrokerBackend
from tests.brokers.support import SERVICE_URLS, drop_storage, fill_url, started, url_id
from tests.chaos.support import Children
from tests.nats_server import OLDEST_URL

# SQLite on a file, and the shared Redis and PostgreSQL servers (each test in its own
# namespace or schema). Outside CI an unreachable server skips its tests; with CI=true they run.
BROKER_URLS = [
    "sqlite:///{tmp}/chaos.db",
    *(url for url in SERVICE_URLS if OLDEST_URL not in url),  # the newest NATS only
]


@pytest.fixture(params=BROKER_URLS, ids=url_id)
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fill_url(request.param, tmp_path)


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[BrokerBackend]:
    """The test's own connection to the broker the engine processes use; what it stored on a
    shared server is dropped afterwards."""
    opened = await started(broker_url)
    try:
        yield opened
    finally:
        await drop_storage(opened)
        await opened.close()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    """Start processes with `children.start`; any still running at the end is killed by PID.
    Their logs are printed (shown when the test fails)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    started_ = Children(logs)
    try:
        yield started_
    finally:
        started_.close()
        print(started_.tails())
