"""The OpenAPI document is the contract: schemathesis holds every operation to it.

The API runs in-process (schemathesis's ASGI transport) on the memory broker with builtins and
no worker, so submitted tasks are stored and never run: nothing burns CPU, touches files or
calls out. Every check schemathesis has for single requests runs (server errors, documented
status codes, content types, response schemas and headers, schema-valid requests accepted and
schema-invalid ones refused, 405s with Allow) except the response-time one (no timed
assertions here). Bounded: MAX_EXAMPLES cases per operation and phase, a fixed seed.

The SSE feed is read until its second event (the history, then a tick), which schemathesis's
ASGI transport allows by cutting an event stream at `max-stream-events`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from taskengine.api import ApiContext, build_api  # noqa: E402
from taskengine.api.openapi import openapi_document  # noqa: E402
from taskengine.testing import memory_app  # noqa: E402

BASE_URL = "http://127.0.0.1:8080"  # the Host a loopback server sees
MAX_EXAMPLES = 25

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261203,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "mode": "all",
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "max-stream-events": 2,
        "request-timeout": 10,
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)

# A well-formed submission may still name a type this server does not have, or carry a payload
# that type refuses: the registry is the server's configuration, not part of the document.
REGISTRY_REFUSALS = {"unknown_task_type", "invalid_payload"}


class FreshApi:
    """An ASGI app that builds a new engine and API at each lifespan startup.

    schemathesis's pytest plugin ends the lifespan after every test, so each operation gets a
    fresh memory broker (and a live feed that was never closed).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.current: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            assert self.current is not None, "a request before the lifespan started"
            await self.current(scope, receive, send)
            return
        engine = memory_app(data_dir=str(self.data_dir))
        ctx = ApiContext(app=engine)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await engine.start()
                await ctx.live.start()
                self.current = build_api(ctx)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.current = None
                await ctx.live.stop()
                await engine.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> FreshApi:
    return FreshApi(tmp_path_factory.mktemp("contract"))


def submission_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance for POST /api/tasks, allowing the registry's own refusals."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code in (200, 201, 409, 429):
        return True
    assert response.status_code == 422, f"a valid submission got {response.status_code}"
    code = response.json()["error"]["code"]
    headers = {name.lower() for name in case.headers or {}}
    batch_with_key = isinstance(case.body, dict) and "tasks" in case.body and "idempotency-key"
    assert code in REGISTRY_REFUSALS or batch_with_key in headers, response.text
    return True


def test_the_served_document_is_the_one_tested(api: FreshApi) -> None:
    client = schemathesis.python.asgi.get_client(api)
    with client:
        served = client.get(f"{BASE_URL}/openapi.json")
    assert served.status_code == 200
    assert served.json() == openapi_document()


@schema.parametrize()
def test_every_operation_keeps_the_documented_contract(case: Any, api: FreshApi) -> None:
    if case.operation.label == "POST /api/tasks":
        case.call_and_validate(
            app=api,
            base_url=BASE_URL,
            excluded_checks=[positive_data_acceptance],
            additional_checks=[submission_accepted],
        )
    else:
        case.call_and_validate(app=api, base_url=BASE_URL)
