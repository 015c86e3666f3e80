"""The idempotency rule on every broker: a key names one request, compared as canonical JSON of
what the broker gives back (so its codec must keep 1, 1.0 and true apart)."""

from __future__ import annotations

import pytest

from taskengine.app import TaskRequest
from taskengine.errors import IdempotencyConflict
from tests.runtime.conftest import MakeApp

PAYLOAD = {"b": [1, 2.5, True, None, "x"], "a": {"n": 1}}


async def test_a_key_names_one_request_as_stored(app_on: MakeApp) -> None:
    app = await app_on()
    first = await app.submit("quick", PAYLOAD, idempotency_key="k1")
    reordered = {"a": {"n": 1}, "b": [1, 2.5, True, None, "x"]}  # the same JSON object
    assert await app.submit("quick", reordered, idempotency_key="k1") == first
    for other in ({**PAYLOAD, "a": {"n": 1.0}}, {**PAYLOAD, "a": {"n": True}}):
        with pytest.raises(IdempotencyConflict) as info:
            await app.submit("quick", other, idempotency_key="k1")
        assert info.value.existing_id == first
    batch = [
        TaskRequest(type="quick", payload=1),
        TaskRequest(type="quick", payload=[1.0], idempotency_key="k1"),
    ]
    with pytest.raises(IdempotencyConflict, match=r"^tasks\[1\]: "):
        await app.submit_many(batch)
