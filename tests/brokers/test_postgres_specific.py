"""PostgreSQL broker: what only PostgreSQL has (SKIP LOCKED across pools, NOTIFY wake-ups,
schemas, migrations, the URL).

Runs against the server at 127.0.0.1:5432; skipped with a reason if it does not answer,
unless CI=true. Every test works in fresh schemas and drops them at the end.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from msgspec.structs import replace

from taskengine.brokers import TaskFilter, open_broker
from taskengine.brokers.postgres import PostgresBroker
from taskengine.brokers.postgres.config import parse_url
from taskengine.brokers.postgres.schema import SCHEMA_VERSION
from taskengine.errors import BrokerUnavailable, ConfigurationError, QueueFull, ValidationError
from taskengine.model import Lease, LeaseStatus, OutcomeKind, TaskState
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.unique import UniqueLock
from tests.brokers.stall_proxy import StallProxy
from tests.brokers.support import T0, Tasks, drop_storage, outcome
from tests.cli.support import Cli

SERVER = "postgresql://postgres@127.0.0.1:5432/test"

Make = Callable[..., Awaitable[PostgresBroker]]


def _schema() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def server() -> AsyncIterator[Any]:
    """A plain connection to the test database; skips (outside CI) if it does not answer."""
    try:
        conn = await asyncpg.connect(SERVER, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"postgresql unreachable at {SERVER}: {exc}")
    yield conn
    await conn.close()


@pytest.fixture
async def make(server: Any) -> AsyncIterator[Make]:
    """Start brokers (a fresh schema unless given); drop their schemas, then close them."""
    opened: list[PostgresBroker] = []

    async def make_one(schema: str | None = None, **options: Any) -> PostgresBroker:
        broker = PostgresBroker(SERVER, schema=schema or _schema(), **options)
        await broker.start()
        opened.append(broker)
        return broker

    yield make_one
    for broker in reversed(opened):
        await drop_storage(broker)
        await broker.close()


async def _schemas(server: Any, name: str) -> list[str]:
    rows = await server.fetch("SELECT nspname FROM pg_namespace WHERE nspname = $1", name)
    return [row["nspname"] for row in rows]


async def test_two_pools_reserving_at_once_never_double_claim(make: Make, tasks: Tasks) -> None:
    schema = _schema()
    one, two = await make(schema), await make(schema)
    batch = tasks.many(500, T0)
    await one.enqueue(batch, T0)

    async def reserver(broker: PostgresBroker, name: str) -> list[str]:
        claimed: list[str] = []
        while leases := await broker.reserve(name, 7, 300.0, T0):
            claimed.extend(lease.task_id for lease in leases)
        return claimed

    results = await asyncio.gather(
        *(reserver(broker, f"w{i}") for i, broker in enumerate([one, two, one, two]))
    )

    claimed = [task_id for ids in results for task_id in ids]
    assert len(claimed) == len(set(claimed)), "a task was claimed twice"
    assert set(claimed) == {t.id for t in batch}
    assert results[0] + results[2], "the first pool claimed nothing"
    assert results[1] + results[3], "the second pool claimed nothing"


async def test_depth_limit_holds_across_pools(make: Make, tasks: Tasks) -> None:
    schema = _schema()
    one, two = await make(schema, max_depth=50), await make(schema, max_depth=50)

    async def offer(broker: PostgresBroker) -> bool:
        try:
            await broker.enqueue(tasks.many(10, T0), T0)
        except QueueFull:
            return False
        return True

    accepted = await asyncio.gather(*(offer([one, two][n % 2]) for n in range(12)))

    assert accepted.count(True) == 5
    assert sum(r.count for r in await one.counts()) == 50


async def test_notify_wakes_a_waiter_on_enqueue_from_another_instance(
    make: Make, tasks: Tasks
) -> None:
    schema = _schema()
    waiter, producer = await make(schema), await make(schema)
    other = await make()  # another schema: its enqueues must not wake the waiter
    await waiter.wait_for_work(0.01)  # drain anything pending

    parked = asyncio.create_task(waiter.wait_for_work(30.0))
    await asyncio.sleep(0.05)
    await other.enqueue([tasks(T0)], T0)
    await asyncio.sleep(0.2)
    assert not parked.done(), "woken by another schema"
    started = time.monotonic()
    await producer.enqueue([tasks(T0)], T0)
    await asyncio.wait_for(parked, 5)

    assert time.monotonic() - started < 0.5


async def test_resume_and_retry_wake_waiters(make: Make, tasks: Tasks) -> None:
    schema = _schema()
    waiter, actor = await make(schema), await make(schema)
    await actor.enqueue([tasks(T0)], T0)
    [lease] = await actor.reserve("w", 1, 30.0, T0)
    await waiter.wait_for_work(0.01)

    parked = asyncio.create_task(waiter.wait_for_work(30.0))
    await actor.settle([outcome(OutcomeKind.RETRY, lease, T0, run_at=T0)], T0)
    await asyncio.wait_for(parked, 5)

    parked = asyncio.create_task(waiter.wait_for_work(30.0))
    await actor.resume(["mail"])
    await asyncio.wait_for(parked, 5)


async def test_wake_listener_comes_back_after_its_connection_is_killed(
    make: Make, server: Any, tasks: Tasks
) -> None:
    schema = _schema()
    waiter, producer = await make(schema), await make(schema)
    listener = waiter._wake
    assert listener is not None
    pid = listener.server_pid
    assert pid is not None

    await server.execute("SELECT pg_terminate_backend($1)", pid)

    # the loss itself wakes the waiter: notifications may have been missed
    await asyncio.wait_for(waiter.wait_for_work(30.0), 5)
    for _ in range(100):
        if listener.server_pid not in (None, pid):
            break
        await asyncio.sleep(0.05)
    assert listener.server_pid not in (None, pid), "the listener did not reconnect"
    await waiter.wait_for_work(0.01)
    parked = asyncio.create_task(waiter.wait_for_work(30.0))
    await producer.enqueue([tasks(T0)], T0)
    await asyncio.wait_for(parked, 5)


async def test_broker_recovers_when_its_pool_connections_are_killed(
    make: Make, server: Any, tasks: Tasks
) -> None:
    schema = _schema()
    broker = await make(schema)
    await broker.enqueue([tasks(T0)], T0)

    killed = await server.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        f"taskengine {schema}",
    )
    assert len(killed) >= 2  # the pool's and the listener's

    for _ in range(3):  # a call that met a dead connection says so; later ones reconnect
        try:
            leases = await broker.reserve("w", 5, 30.0, T0)
            break
        except BrokerUnavailable:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("the broker did not reconnect")
    assert len(leases) == 1


async def test_stale_token_from_another_instance_is_refused_after_requeue(
    make: Make, tasks: Tasks
) -> None:
    schema = _schema()
    slow, reaper = await make(schema, server_clock=False), await make(schema, server_clock=False)
    await slow.enqueue([tasks(T0)], T0)
    [old] = await slow.reserve("slow", 1, 10.0, T0)

    assert await reaper.requeue_expired(T0 + 11, 10) == [old.task_id]
    [new] = await reaper.reserve("fast", 1, 10.0, T0 + 11)

    late = outcome(OutcomeKind.SUCCEEDED, old, T0 + 12, data="stale")
    assert await slow.settle([late], T0 + 12) == [False]
    assert await slow.extend([old], 10.0, T0 + 12) == [LeaseStatus.LOST]
    fresh = outcome(OutcomeKind.SUCCEEDED, new, T0 + 12, data="fresh")
    assert await reaper.settle([fresh], T0 + 12) == [True]
    [record] = await slow.get([new.task_id])
    assert record is not None
    assert record.result == fresh.result
    assert record.attempt == 2
    assert [line.error for line in record.history] == ["lease expired", None]


async def test_duplicate_outcomes_in_one_batch_apply_once(make: Make, tasks: Tasks) -> None:
    broker = await make()
    await broker.enqueue(tasks.many(2, T0), T0)
    first, second = await broker.reserve("w", 2, 30.0, T0)
    stale = Lease(record=first.record, token="not-the-token", expires_at=first.expires_at)
    batch = [
        outcome(OutcomeKind.DEAD, stale, T0),
        outcome(OutcomeKind.SUCCEEDED, first, T0),
        outcome(OutcomeKind.RETRY, first, T0, run_at=T0),
        outcome(OutcomeKind.SUCCEEDED, second, T0),
        outcome(OutcomeKind.SUCCEEDED, second, T0),
    ]

    assert await broker.settle(batch, T0) == [False, True, False, True, False]
    assert await broker.extend([second, second], 30.0, T0) == [LeaseStatus.LOST] * 2


async def test_schemas_are_isolated(make: Make, tasks: Tasks) -> None:
    one, two = await make(), await make()
    task = tasks(T0, idempotency_key="same")
    await one.enqueue([task], T0)
    await one.pause(["mail"])
    assert await one.leader("reaper", "a", 10.0, T0)

    assert await two.reserve("w", 10, 30.0, T0) == []
    assert await two.get([task.id]) == [None]
    assert await two.counts() == []
    assert await two.paused() == set()
    assert (await two.list_tasks(TaskFilter(), 10)).items == []
    assert await two.leader("reaper", "b", 10.0, T0)
    [again] = await two.enqueue([tasks(T0, idempotency_key="same")], T0)
    assert again.created
    assert [lease.task_id for lease in await one.reserve("w", 10, 30.0, T0)] == [task.id]


async def test_unreachable_server_is_broker_unavailable() -> None:
    broker = PostgresBroker("postgresql://postgres@127.0.0.1:1/test", schema="x")
    with pytest.raises(BrokerUnavailable):
        await broker.start()
    with pytest.raises(BrokerUnavailable):
        await broker.reserve("w", 1, 30.0, T0)
    with pytest.raises(BrokerUnavailable):
        await broker.wait_for_work(0.01)


async def test_unknown_database_is_broker_unavailable(server: Any) -> None:
    broker = PostgresBroker(f"postgresql://postgres@127.0.0.1:5432/no_such_{_schema()}")
    with pytest.raises(BrokerUnavailable):
        await broker.start()


async def test_closed_broker_is_broker_unavailable_and_reopens(make: Make, tasks: Tasks) -> None:
    broker = await make()
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await broker.counts()
    with pytest.raises(BrokerUnavailable):
        await broker.enqueue([tasks(T0)], T0)
    await broker.start()  # reopening works; the fixture drops and closes it
    assert (await broker.enqueue([tasks(T0)], T0))[0].created


async def test_drop_schema_removes_it(make: Make, server: Any, tasks: Tasks) -> None:
    schema = _schema()
    broker = await make(schema)
    await broker.enqueue([tasks(T0)], T0)
    assert await _schemas(server, schema) == [schema]

    await broker.drop_schema()

    assert await _schemas(server, schema) == []


async def test_brokers_starting_at_once_migrate_a_new_schema_once(
    make: Make, server: Any, tasks: Tasks
) -> None:
    schema = _schema()

    brokers = await asyncio.gather(*(make(schema) for _ in range(4)))

    versions = await server.fetch(f'SELECT version FROM "{schema}".schema_version')
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
    [result] = await brokers[0].enqueue([tasks(T0)], T0)
    assert [lease.task_id for lease in await brokers[3].reserve("w", 5, 30.0, T0)] == [result.id]
    await brokers[1].close()
    await brokers[1].start()  # an up-to-date schema: nothing to do


async def test_a_version_7_schema_is_migrated_to_8_and_takes_dependencies(
    make: Make, server: Any, tasks: Tasks
) -> None:
    schema = _schema()
    old = await make(schema)
    parent = tasks(T0)
    await old.enqueue([parent], T0)
    await old.close()
    s = f'"{schema}"'
    # the schema as a version 7 build left it: what migration 8 added, last first
    await server.execute(
        f"""
        DROP TABLE {s}.waits;
        DROP INDEX {s}.tasks_workflow;
        ALTER TABLE {s}.tasks DROP COLUMN waited, DROP COLUMN waiting, DROP COLUMN workflow,
            DROP COLUMN on_parent_failure, DROP COLUMN depends_on;
        ALTER TABLE {s}.tasks DROP CONSTRAINT tasks_state_check;
        ALTER TABLE {s}.tasks ADD CONSTRAINT tasks_state_check
            CHECK (state IN ('queued', 'running', 'succeeded', 'dead', 'cancelled'));
        DELETE FROM {s}.schema_version WHERE version = 8;
        """
    )

    broker = await make(schema)

    versions = await server.fetch(f"SELECT version FROM {s}.schema_version ORDER BY version")
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
    assert SCHEMA_VERSION == 8
    [record] = await broker.get([parent.id])
    assert record is not None and record.depends_on == () and record.waiting == 0
    child = replace(tasks(T0), depends_on=(parent.id,))
    await broker.enqueue([child], T0)
    [stored] = await broker.get([child.id])
    assert stored is not None and stored.state is TaskState.BLOCKED


async def test_a_version_5_schema_is_upgraded_to_hold_limits_and_unique_locks(
    make: Make, server: Any, tasks: Tasks
) -> None:
    schema = _schema()
    old = await make(schema)
    [stored] = await old.enqueue([tasks(T0)], T0)
    await old.close()
    # the schema as a version 5 build left it
    await server.execute(f'DROP TABLE "{schema}".unique_locks, "{schema}".limits')
    await server.execute(f'DELETE FROM "{schema}".schema_version WHERE version > 5')

    broker = await make(schema)

    versions = await server.fetch(f'SELECT version FROM "{schema}".schema_version')
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
    await broker.set_limits([Limit(scope=LimitScope.QUEUE, name="default", max_concurrency=1)])
    assert [lease.task_id for lease in await broker.reserve("w", 5, 30.0, T0)] == [stored.id]
    lock = UniqueLock(key="k", seconds=60.0)
    [first, again] = await broker.enqueue([tasks(T0), tasks(T0)], T0, [lock, lock])
    assert first.created and not again.created and again.id == first.id


async def test_newer_schema_is_refused(make: Make, server: Any) -> None:
    schema = _schema()
    await make(schema)
    await server.execute(f'INSERT INTO "{schema}".schema_version VALUES ($1)', SCHEMA_VERSION + 1)

    broker = PostgresBroker(SERVER, schema=schema)
    with pytest.raises(ConfigurationError, match="version"):
        await broker.start()
    assert broker._pool is None


async def test_with_migrate_false_only_taskengine_migrate_changes_the_schema(
    make: Make, server: Any, tmp_path: Path
) -> None:
    schema = _schema()
    url = f"{SERVER}?schema={schema}&migrate=false"
    refused = PostgresBroker(url)
    with pytest.raises(ConfigurationError, match="run `taskengine migrate`"):
        await refused.start()
    assert await _schemas(server, schema) == []  # nothing was created

    cli = Cli(tmp_path)
    cli.url = url
    result = await asyncio.to_thread(cli.ok, "migrate")  # the command runs its own loop
    assert result.stdout.endswith("storage is up to date\n")
    versions = await server.fetch(f'SELECT version FROM "{schema}".schema_version')
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))

    await refused.start()  # current now: it starts, and works
    try:
        assert await refused.counts() == []
    finally:
        await refused.close()
    await make(schema)  # drops the schema at the end


async def test_capabilities_follow_the_server(make: Make, server: Any) -> None:
    broker = await make()
    fsync = await server.fetchval("SELECT current_setting('fsync')")
    commit = await server.fetchval("SELECT current_setting('synchronous_commit')")

    assert broker.capabilities.durable is (fsync == "on" and commit != "off")
    assert broker.capabilities.shared
    assert broker.capabilities.push_wakeup


async def test_open_broker_reads_schema_and_options_from_the_url(server: Any, tasks: Tasks) -> None:
    schema = _schema()
    broker = open_broker(f"{SERVER}?schema={schema}&max_depth=7&pool_size=2")
    assert isinstance(broker, PostgresBroker)
    await broker.start()
    try:
        await broker.enqueue([tasks(T0)], T0)
        assert broker.max_depth == 7
        assert broker.config.pool_size == 2
        assert await _schemas(server, schema) == [schema]
    finally:
        await broker.drop_schema()
        await broker.close()


def test_url_options() -> None:
    config = parse_url(f"{SERVER}?schema=s1&sslmode=disable&pool_size=3", url_params={})
    assert (config.schema, config.pool_size) == ("s1", 3)
    assert config.dsn == f"{SERVER}?sslmode=disable"
    assert config.channel == "taskengine.s1"
    assert config.application_name == "taskengine s1"
    assert parse_url(f"{SERVER}?application_name=me").application_name is None
    assert parse_url("postgres://u:secret@db/x").schema == "taskengine"
    assert "secret" not in parse_url("postgres://u:secret@db/x").where
    assert parse_url(f"{SERVER}?max_depth=9").max_depth == 9
    assert parse_url(f"{SERVER}?max_depth=9", max_depth=9).max_depth == 9
    assert parse_url(SERVER).migrate is True
    assert parse_url(f"{SERVER}?migrate=false").migrate is False
    assert parse_url(f"{SERVER}?migrate=false").dsn == SERVER


@pytest.mark.parametrize(
    ("url", "options"),
    [
        (SERVER, {"schema": "has-dash"}),
        (SERVER, {"schema": "pg_catalog"}),
        (SERVER, {"schema": "x" * 49}),
        (SERVER, {"schema": "trailing_newline\n"}),
        (f"{SERVER}?schema=a", {"schema": "b"}),
        (f"{SERVER}?max_depth=5", {"max_depth": 6}),
        ("postgresql://127.0.0.1:port/test", {}),
        (SERVER, {"pool_size": "0"}),
        (SERVER, {"pool_size": "many"}),
        (SERVER, {"sslmode": "require"}),  # not in the URL: a typo?
        (f"{SERVER}?migrate=maybe", {}),
        ("mysql://127.0.0.1/test", {}),
    ],
)
def test_bad_options_are_refused(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PostgresBroker(url, **options)


def test_bad_max_depth_is_refused() -> None:
    with pytest.raises(ValidationError):
        PostgresBroker(SERVER, max_depth=0)


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
async def test_concurrent_reserves_succeed_whatever_the_roles_default_isolation(
    server: Any, tasks: Tasks, level: str
) -> None:
    # A role whose sessions default to a stricter isolation level: its reserves must still
    # never fail with a serialization error (the broker sets READ COMMITTED itself). The
    # role is the test's own and is dropped at the end, so no server setting outlives it.
    role = f"te_{uuid.uuid4().hex[:12]}"
    await server.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    await server.execute(f"ALTER ROLE {role} SET default_transaction_isolation = '{level}'")
    url = f"postgresql://{role}@127.0.0.1:5432/test"
    schema = _schema()
    brokers: list[PostgresBroker] = []
    try:
        for _ in range(2):
            broker = PostgresBroker(url, schema=schema, pool_size=4)
            await broker.start()
            brokers.append(broker)
        one, two = brokers
        batch = tasks.many(400, T0)
        await one.enqueue(batch, T0)

        async def reserver(broker: PostgresBroker, name: str) -> list[str]:
            claimed: list[str] = []
            while leases := await broker.reserve(name, 3, 300.0, T0):
                claimed.extend(lease.task_id for lease in leases)
                applied = await broker.settle(
                    [outcome(OutcomeKind.SUCCEEDED, lease, T0) for lease in leases], T0
                )
                assert all(applied)
            return claimed

        results = await asyncio.gather(
            *(reserver(broker, f"w{i}") for i, broker in enumerate([one, two] * 4))
        )
        claimed = [task_id for ids in results for task_id in ids]
        assert sorted(claimed) == sorted(t.id for t in batch)
    finally:
        for broker in reversed(brokers):
            await drop_storage(broker)
            await broker.close()
        await server.execute(f"DROP OWNED BY {role}")
        await server.execute(f"DROP ROLE {role}")


async def test_a_call_waiting_for_a_pooled_connection_has_a_deadline(
    server: Any, tasks: Tasks
) -> None:
    # The only pooled connection hangs (half-open): the call on it and the one waiting for it
    # both give up with BrokerUnavailable, and the pool serves again once the network heals.
    schema = _schema()
    proxy, url = await StallProxy.to_url(f"{SERVER}?schema={schema}&pool_size=1&timeout=0.5")
    broker = PostgresBroker(url)
    try:
        await broker.start()
        [task] = tasks.many(1, T0)
        await broker.enqueue([task], T0)
        proxy.freeze()
        holder = asyncio.ensure_future(broker.get([task.id]))
        waiter = asyncio.ensure_future(broker.get([task.id]))
        done, _ = await asyncio.wait({holder, waiter}, timeout=5.0)  # ten deadlines
        assert done == {holder, waiter}, "a call on a hung pool did not return"
        for call in (holder, waiter):
            assert isinstance(call.exception(), BrokerUnavailable)
        proxy.thaw()
        [record] = await broker.get([task.id])
        assert record is not None and record.id == task.id
    finally:
        await proxy.close()
        await broker.close()
        await server.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
