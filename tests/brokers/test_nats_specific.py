"""NATS only: the stream settings the broker refuses (they can lose acknowledged tasks) and
the durability window it logs; against the session's newest server."""

from __future__ import annotations

import uuid

import pytest
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from taskengine.brokers import open_broker
from taskengine.brokers.nats.stream import check_stream
from taskengine.errors import ConfigurationError
from tests.nats_server import session_address


def _config(**changes: object) -> StreamConfig:
    base = {
        "name": "s",
        "storage": StorageType.FILE,
        "discard": DiscardPolicy.NEW,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "num_replicas": 1,
    }
    base.update(changes)
    return StreamConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"storage": StorageType.MEMORY}, "memory storage"),
        ({"max_age": 3600.0}, "max_age"),
        ({"max_msgs": 1000, "discard": DiscardPolicy.OLD}, "discard=old"),
        ({"max_bytes": 1 << 30, "discard": DiscardPolicy.OLD}, "discard=old"),
    ],
)
def test_a_stream_that_can_drop_operations_is_refused_unless_allowed(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        check_stream(_config(**changes), 1, allow_unsafe=False)
    assert check_stream(_config(**changes), 1, allow_unsafe=True).unsafe


def test_limits_with_discard_new_refuse_writes_and_lose_nothing() -> None:
    assert check_stream(_config(max_bytes=1 << 30), 1, allow_unsafe=False).unsafe == []


def test_a_log_whose_start_is_gone_is_refused_even_if_allowed() -> None:
    with pytest.raises(ConfigurationError, match="first sequence"):
        check_stream(_config(), 7, allow_unsafe=True)


def test_the_window_names_storage_and_replicas() -> None:
    assert "R3" in check_stream(_config(num_replicas=3), 1, allow_unsafe=False).window
    assert "sync_interval" in check_stream(_config(), 1, allow_unsafe=False).window


async def test_a_memory_stream_on_the_server_is_refused_at_start() -> None:
    import nats

    name = f"t{uuid.uuid4().hex[:12]}"
    nc = await nats.connect(f"nats://{session_address()}")
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"taskengine.{name}.log"], storage=StorageType.MEMORY)
    try:
        broker = open_broker(f"nats://{session_address()}?stream={name}")
        with pytest.raises(ConfigurationError, match="memory storage"):
            await broker.start()
        unsafe = open_broker(f"nats://{session_address()}?stream={name}&allow_unsafe=true")
        await unsafe.start()
        await unsafe.close()
    finally:
        await js.delete_stream(name)
        await nc.close()


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown NATS broker options"):
        open_broker("nats://127.0.0.1:4222?strem=x")


async def test_a_batch_over_max_payload_travels_in_parts_and_applies_whole() -> None:
    from taskengine.model import new_task

    broker = open_broker(f"nats://{session_address()}?stream=t{uuid.uuid4().hex[:12]}")
    await broker.start()
    try:
        now = 1_700_000_000.0
        big = [new_task("demo.echo", {"blob": "x" * 400_000, "n": n}, now=now) for n in range(4)]
        results = await broker.enqueue(big, now)
        assert all(result.created for result in results)
        records = await broker.get([task.id for task in big])
        assert [r.payload["n"] for r in records if r is not None] == [0, 1, 2, 3]
    finally:
        await broker.drop_stream()  # type: ignore[attr-defined]
        await broker.close()
