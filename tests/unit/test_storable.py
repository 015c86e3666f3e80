"""Payload values brokers cannot store: refused before any I/O, naming the value."""

from __future__ import annotations

from typing import Any

import pytest

from taskengine.app import App
from taskengine.errors import ValidationError
from taskengine.model.storable import find_unstorable
from taskengine.registry import InvalidPayload

app = App("memory://", builtins=False)


@app.task("echo")
async def echo(payload: Any) -> Any:
    return payload


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        (10**30, "$"),
        ({"n": 2**64}, "$.n"),
        ([1, {"a": [-(2**63) - 1]}], "$[1].a[0]"),
        ({"s": "x\ud800"}, "$.s"),
        ({"k\udc80": 1}, "$ (a key)"),
    ],
)
async def test_submit_refuses_unstorable_values_naming_them(payload: Any, where: str) -> None:
    async with app:
        with pytest.raises(InvalidPayload, match="cannot be stored") as raised:
            await app.submit("echo", payload)
        assert str(raised.value).startswith(f"payload {where}: "), raised.value
        assert isinstance(raised.value, ValidationError)
        assert await app.broker.counts() == []  # nothing was stored


async def test_submit_keeps_the_largest_storable_values() -> None:
    payload = {"big": 2**64 - 1, "small": -(2**63), "emoji": "\U0001f600"}
    async with app:
        task_id = await app.submit("echo", payload)
        assert (await app.get(task_id)).payload == payload


def test_idempotency_key_with_a_lone_surrogate_is_refused() -> None:
    from taskengine.app import TaskRequest

    with pytest.raises(ValidationError, match="idempotency_key"):
        app.build(TaskRequest(type="echo", idempotency_key="k\ud800"))


def test_find_unstorable_names_the_first_bad_value_only() -> None:
    assert find_unstorable({"a": [1, "ok", 2**64 - 1], "b": True}) is None
    found = find_unstorable({"a": [1, 10**40], "b": "\ud800"})
    assert found is not None and found.startswith("$.a[1]: the integer 1000000000")


def test_a_huge_integer_is_described_without_printing_it() -> None:
    found = find_unstorable([-(10**5000)])
    assert found is not None and found.startswith("$[0]: the integer -2**16609 or more in size")
