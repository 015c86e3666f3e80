"""Fixtures of the runtime tests: `app_on` builds test apps on every broker under test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from taskengine.app import App
from taskengine.errors import BrokerUnavailable
from tests.brokers.support import SERVICE_SCHEMES, broker_urls, drop_storage, fill_url, url_id
from tests.runtime.apps import build_app

MakeApp = Callable[..., Awaitable[App]]


@pytest.fixture(params=broker_urls(oldest=False), ids=url_id)
async def app_on(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeApp]:
    """Build started test apps on one broker (each backend in turn); dropped after the test."""
    url = fill_url(request.param, tmp_path)
    apps: list[App] = []

    async def make(**settings: Any) -> App:
        app = build_app(url=url, **settings)
        try:
            await app.start()
        except (BrokerUnavailable, OSError) as exc:
            if url.startswith(SERVICE_SCHEMES) and os.environ.get("CI") != "true":
                pytest.skip(f"{url.split(':', 1)[0]} unreachable: {exc}")
            raise
        apps.append(app)
        return app

    yield make
    for app in reversed(apps):
        await drop_storage(app.broker)
        await app.close()
