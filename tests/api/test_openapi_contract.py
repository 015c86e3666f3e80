"""The OpenAPI document is the contract: schemathesis holds every operation to it.

The API runs in-process (schemathesis's ASGI transport) on the memory broker with builtins and
no worker, so submitted tasks are stored and never run: nothing burns CPU, touches files or
calls out. schemathesis's default checks all run: no server error, documented status codes,
content types, response schemas and headers, schema-valid requests accepted and schema-invalid
ones refused, 405s with Allow, and in call sequences (following the document's links) a
resource still there after it was made. Left out: the response-time check (no timed assertions
here) and use-after-free (DELETE cancels a task; it stays readable). Bounded: MAX_EXAMPLES
cases per operation and phase, ten sequences of six calls, fixed seeds.

The SSE feed is read until its second event (the history, then a tick), which schemathesis's
ASGI transport allows by cutting an event stream at `max-stream-events`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

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
        # DELETE /api/tasks/{id} cancels: the task stays readable as `cancelled` (API.md)
        "checks": {"use_after_free": {"enabled": False}},
        "max-stream-events": 2,
        "request-timeout": 10,
    }
)
# a copy: schemathesis adds the links it infers to the dict it is given
schema = schemathesis.openapi.from_dict(copy.deepcopy(openapi_document()), config=CONFIG)

# Types this server has, with payloads they take (stored, never run: there is no worker); None
# leaves a generated type as it is.
RUNNABLE = [None, ("cpu.primes", {"limit": 10}), ("time.sleep", {"seconds": 0})]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")


def _runnable(item: Any) -> Any:
    """`item`, or for two names in three a registered type and its payload in their place.


    Only a valid name is replaced, by another: as the document allows any valid name and any
    payload, a negative case stays negative and a positive one can now be stored.
    """
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return item
    pick = RUNNABLE[len(item["type"]) % len(RUNNABLE)]
    if pick is None or NAME.fullmatch(item["type"]) is None:
        return item
    return {**item, "type": pick[0], "payload": pick[1]}


def _sendable(value: Any) -> Any:
    if isinstance(value, list):
        return ["" if item is None else item for item in value]
    return "" if value is None else value


def _null_as_empty(case: Any) -> None:
    """A query string has no null: send a "negative" null as an empty value, not as "null"
    (a valid name) nor left out (as requests does)."""
    if case.query:
        case.query = {name: _sendable(value) for name, value in case.query.items()}


@schema.hook
def map_case(context: Any, case: Any) -> Any:
    """Nulls in queries made sendable; submissions the registry takes, and a batch without the
    header it refuses (a rule the document states only in words)."""
    _null_as_empty(case)
    if context.operation is None or context.operation.label != "POST /api/tasks":
        return case
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("tasks"), list):
        case.body = {**body, "tasks": [_runnable(item) for item in body["tasks"]]}
        key = next((k for k in case.headers or {} if k.lower() == "idempotency-key"), None)
        if key is not None and 0 < len(str(case.headers[key])) <= 256:
            del case.headers[key]
    else:
        case.body = _runnable(body)
    return case


class FreshApi:
    """An ASGI app that builds a new engine and API at each lifespan startup, or on demand.

    schemathesis's pytest plugin ends the lifespan after every test, so each operation gets a
    fresh memory broker (and a live feed that was never closed); `renew()` gives the next
    request a fresh one too (each stateful scenario starts from nothing).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.current: Starlette | None = None
        self.renew_before_next = False
        self._stop: Callable[[], Awaitable[None]] | None = None

    def renew(self) -> None:
        """The next request gets a new engine and API (on the app's own event loop)."""
        self.renew_before_next = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.renew_before_next:
            self.renew_before_next = False
            await self._close()
            await self._start()
        assert self.current is not None, "a request before the lifespan started"
        await self.current(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        engine = memory_app(data_dir=str(self.data_dir))
        ctx = ApiContext(app=engine)
        await engine.start()
        await ctx.live.start()
        self.current = build_api(ctx)

        async def stop() -> None:
            await ctx.live.stop()
            await engine.close()

        self._stop = stop

    async def _close(self) -> None:
        self.current = None
        if self._stop is not None:
            await self._stop()
            self._stop = None


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> FreshApi:
    return FreshApi(tmp_path_factory.mktemp("contract"))


# A well-formed submission may still name a type this server does not have, or carry a payload
# that type refuses: the registry is the server's configuration, not part of the document.
REGISTRY_REFUSALS = {"unknown_task_type", "invalid_payload"}
# A task may depend only on stored tasks, and a workflow's nodes must form a graph (names
# unique, `after` naming nodes, no cycle): rules across items, or against the store.
GRAPH_RULES = {"unknown_parent", "invalid_workflow"}
# An Idempotency-Key header with another body idempotency_key is refused (#14 item 5): a rule
# across a header and a body field, which the document states in words but no schema can.
ACROSS_FIELDS = {"ambiguous_idempotency_key"}


SUBMISSIONS = {"POST /api/tasks", "POST /api/workflows"}


def submission_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance for POST /api/tasks, allowing the registry's own refusals."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code in (200, 201, 409, 429):
        return True
    assert response.status_code == 422, f"a valid submission got {response.status_code}"
    code = response.json()["error"]["code"]
    assert code in REGISTRY_REFUSALS | ACROSS_FIELDS | GRAPH_RULES, response.text
    return True


def test_the_served_document_is_the_one_tested(api: FreshApi) -> None:
    client = schemathesis.python.asgi.get_client(api)
    with client:
        served = client.get(f"{BASE_URL}/openapi.json")
    assert served.status_code == 200
    assert served.json() == openapi_document()


@schema.parametrize()
def test_every_operation_keeps_the_documented_contract(case: Any, api: FreshApi) -> None:
    if case.operation.label in SUBMISSIONS:
        case.call_and_validate(
            app=api,
            base_url=BASE_URL,
            excluded_checks=[positive_data_acceptance],
            additional_checks=[submission_accepted],
        )
    else:
        case.call_and_validate(app=api, base_url=BASE_URL)


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Sequences of calls joined by the document's links (a submitted task looked up, cancelled)."""

    api: FreshApi

    def setup(self) -> None:
        self.api.renew()  # a scenario's steps depend on its own answers only

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"app": self.api, "base_url": BASE_URL}

    def validate_response(
        self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
    ) -> None:
        if case.operation.label not in SUBMISSIONS:
            return super().validate_response(response, case, additional_checks, **kwargs)
        case.validate_response(
            response,
            excluded_checks=[positive_data_acceptance],
            additional_checks=[submission_accepted],
            transport_kwargs=kwargs,
            recorder=self.recorder,
        )
        return None


def test_call_sequences_keep_the_documented_contract(api: FreshApi) -> None:
    Workflow.api = api
    Workflow.run(
        settings=settings(
            max_examples=10,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
