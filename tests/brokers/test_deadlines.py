"""Deadlines of the brokers on a server (Redis, PostgreSQL), against the real servers through a
loopback proxy that the test freezes: a half-open connection.

A call on a frozen connection must give up with BrokerUnavailable (the runtime's loops retry
with backoff) instead of waiting forever; once the network heals the broker works again; and a
call that timed out is never sent a second time. Bounds are generous (ten deadlines): what is
tested is that a call returns, not how fast. Memory and SQLite have no connection to wait on
(see docs/adr/0007-broker-deadlines.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from taskengine.app import App
from taskengine.brokers import BrokerBackend, TaskFilter, open_broker
from taskengine.brokers.postgres import PostgresBroker
from taskengine.brokers.redis import RedisBroker
from taskengine.errors import BrokerUnavailable, ConfigurationError
from taskengine.model import LeaseStatus, OutcomeKind, TaskState
from taskengine.settings import Settings
from tests.brokers.stall_proxy import StallProxy
from tests.brokers.support import (
    SERVICE_SCHEMES,
    T0,
    Tasks,
    broker_urls,
    drop_storage,
    fill_url,
    outcome,
    started,
    url_id,
)

T = TypeVar("T")
DEADLINE = 0.5  # seconds: the `timeout` URL option of the brokers under test
BOUND = 60 * DEADLINE  # a call that has not returned by then has no deadline (generous: loaded CI)

SERVICE_URLS = [url for url in broker_urls() if url.startswith(SERVICE_SCHEMES)]


class Stalled:
    """A started broker whose connections all go through `proxy`."""

    def __init__(self, proxy: StallProxy, broker: BrokerBackend, url: str) -> None:
        self.proxy = proxy
        self.broker = broker
        self.url = url  # the URL through the proxy


@pytest.fixture(params=SERVICE_URLS, ids=url_id)
async def proxied(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[StallProxy, str]]:
    """A stall proxy to a real server and the broker URL through it (a fresh namespace or
    schema, dropped afterwards directly on the server)."""
    real = fill_url(request.param, tmp_path)
    proxy, through = await StallProxy.to_url(real)
    yield proxy, through
    await proxy.close()
    cleanup = await started(real)
    await drop_storage(cleanup)
    await cleanup.close()


@pytest.fixture
async def stalled(proxied: tuple[StallProxy, str]) -> AsyncIterator[Stalled]:
    """A broker on a real server through a stall proxy, with a short deadline."""
    proxy, through = proxied
    through += f"&timeout={DEADLINE}"
    broker = await started(through)
    yield Stalled(proxy, broker, through)
    proxy.thaw()
    await proxy.close()  # cuts what is left, so nothing can hang the close
    await within_bound(broker.close())


async def within_bound(call: Awaitable[T]) -> T:
    """The call's result; fails the test if it has not returned after BOUND seconds (without
    waiting for the cancelled call to wind down, which a call with no deadline never does)."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=BOUND)
    if not done:
        task.cancel()
        raise AssertionError(f"the call did not return within {BOUND} s: no deadline")
    return task.result()


async def fails_unavailable(call: Awaitable[object], name: str) -> None:
    """Fail the test unless `call` raises BrokerUnavailable within BOUND seconds."""
    try:
        result = await within_bound(call)
    except BrokerUnavailable:
        return
    raise AssertionError(f"{name} returned {result!r} instead of BrokerUnavailable")


async def test_every_call_on_a_frozen_connection_fails_and_works_after_a_thaw(
    stalled: Stalled, tasks: Tasks
) -> None:
    broker = stalled.broker
    await broker.enqueue(tasks.many(3, T0), T0)
    [lease] = await broker.reserve("w", 1, 30.0, T0)

    stalled.proxy.freeze()
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "reserve": lambda: broker.reserve("w", 1, 30.0, T0),
        "extend": lambda: broker.extend([lease], 30.0, T0),
        "settle": lambda: broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, T0)], T0),
        "get": lambda: broker.get([lease.task_id]),
    }
    for name, call in calls.items():
        await fails_unavailable(call(), name)

    stalled.proxy.thaw()
    assert await within_bound(broker.extend([lease], 30.0, T0)) == [LeaseStatus.HELD]
    assert await within_bound(broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, T0)], T0)) == [
        True
    ]
    [record] = await within_bound(broker.get([lease.task_id]))
    assert record is not None and record.state is TaskState.SUCCEEDED
    assert len(await within_bound(broker.reserve("w", 5, 30.0, T0))) == 2


async def test_a_reserve_whose_reply_never_came_ran_once(stalled: Stalled, tasks: Tasks) -> None:
    # The request reaches the server, the reply never comes back. The call must fail (its
    # tasks come back when their lease expires), not be sent again on a fresh connection:
    # a second run would claim more tasks whose leases nobody holds either.
    broker = stalled.broker
    batch = tasks.many(6, T0)
    await broker.enqueue(batch, T0)
    # Nothing in that queue: this only makes the connection know the statement, so that the
    # stalled call is one round trip that runs (asyncpg prepares a new statement first).
    assert await broker.reserve("w", 2, 30.0, T0, queues=["idle"]) == []

    stalled.proxy.stall_replies()
    await fails_unavailable(broker.reserve("w", 2, 30.0, T0), "reserve")
    # The late reply now arrives; a connection that was reused would read it as the reply
    # of the next call.
    stalled.proxy.thaw(deliver=True)

    running = await within_bound(
        broker.list_tasks(TaskFilter(states=frozenset({TaskState.RUNNING})), 100)
    )
    assert len(running.items) == 2, "the reserve ran on the server more than once"
    held = await within_bound(broker.reserve("w", 10, 30.0, T0 + 20.0))  # until T0 + 50
    assert len(held) == 4
    assert {lease.task_id for lease in held}.isdisjoint(r.id for r in running.items)
    # The lost reply's tasks run again once their lease has expired.
    requeued = await within_bound(broker.requeue_expired(T0 + 31.0, 100))
    assert sorted(requeued) == sorted(r.id for r in running.items)
    again = await within_bound(broker.reserve("w", 10, 30.0, T0 + 31.0))
    assert sorted(lease.task_id for lease in [*held, *again]) == sorted(t.id for t in batch)


async def test_the_settings_deadline_reaches_the_broker(
    proxied: tuple[StallProxy, str], tasks: Tasks
) -> None:
    proxy, url = proxied
    app = App(settings=Settings(broker_url=url, broker_timeout=DEADLINE))
    await app.start()
    try:
        [task] = tasks.many(1, T0)
        await app.broker.enqueue([task], T0)
        proxy.freeze()
        with pytest.raises(BrokerUnavailable):
            await within_bound(app.broker.get([task.id]))
        proxy.thaw()
        [record] = await within_bound(app.broker.get([task.id]))
        assert record is not None
    finally:
        proxy.thaw()
        await within_bound(app.close())


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
@pytest.mark.parametrize("bad", ["0", "-1", "soon", "inf", "nan"])
def test_a_bad_timeout_is_refused(scheme: str, bad: str) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        open_broker(f"{scheme}://127.0.0.1/0?timeout={bad}")


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_a_keyword_timeout_must_agree_with_the_url(scheme: str) -> None:
    # open_broker lets the URL win over Settings.broker_timeout; a broker built directly
    # refuses two different values rather than pick one.
    broker_class = RedisBroker if scheme == "redis" else PostgresBroker
    with pytest.raises(ConfigurationError, match="timeout"):
        broker_class(f"{scheme}://127.0.0.1/0?timeout=2", timeout="3")
    broker_class(f"{scheme}://127.0.0.1/0?timeout=2", timeout="2.0")  # the same: accepted


def test_a_bad_broker_timeout_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="broker_timeout"):
        Settings(broker_timeout=0)
