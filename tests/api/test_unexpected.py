"""An unhandled exception: its 500 goes through the middleware like any other answer.

In process (a route that raises cannot be reached on a real server): the app from `build_api`
with one extra route, driven through httpx's ASGI transport.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskengine import App
from taskengine.api import ApiContext, build_api


async def _boom(request: Request) -> Response:
    raise RuntimeError("boom: a bug in a route")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = App("memory://")
    api = build_api(ApiContext(app=app))
    api.router.routes.append(Route("/boom", _boom, methods=["GET"]))
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c
    await app.close()


async def test_unhandled_exception_is_a_json_500_with_every_header(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskengine.api")
    response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal server error"}
    }
    assert b"boom: a bug" not in response.content
    assert response.headers["x-request-id"] == "boom-1"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"

    [traceback] = [r for r in caplog.records if r.exc_info is not None]
    assert getattr(traceback, "request_id", None) == "boom-1"
    assert traceback.exc_info is not None and "boom: a bug" in str(traceback.exc_info[1])
    [line] = [r for r in caplog.records if r.getMessage() == "request"]
    assert getattr(line, "request_id", None) == "boom-1"
    assert getattr(line, "status", None) == 500


async def test_generated_request_id_is_on_the_500_and_its_log_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskengine.api")
    response = await client.get("/boom")
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert request_id
    ids = {getattr(r, "request_id", None) for r in caplog.records if r.name == "taskengine.api"}
    assert ids == {request_id}
