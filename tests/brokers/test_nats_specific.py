"""NATS only: the stream settings the broker refuses (they can lose acknowledged tasks) and
the durability window it logs; against the session's newest server."""

from __future__ import annotations

import asyncio
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


# -- compaction: snapshots and purge (ADR 0031) ------------------------------------------------

NOW = 1_700_000_000.0


def _url(stream: str, **options: str) -> str:
    extra = "".join(f"&{key}={value}" for key, value in options.items())
    return f"nats://{session_address()}?stream={stream}&server_clock=false{extra}"


async def _first_seq(broker: object) -> int:
    info = await broker._live().stream_info(broker.stream)  # type: ignore[attr-defined]
    return int(info.state.first_seq)


async def _fill(broker: object, n: int) -> list[str]:
    """Enqueue `n` tasks (several operations), run some, fail one to dead, pause a queue."""
    from taskengine.model import OutcomeKind, new_task
    from tests.brokers.support import outcome

    tasks = [new_task("demo.echo", {"n": i}, now=NOW, queue=f"q{i % 3}") for i in range(n)]
    for start in range(0, n, 7):
        await broker.enqueue(tasks[start : start + 7], NOW)  # type: ignore[attr-defined]
    leases = await broker.reserve("w1", 5, 30.0, NOW + 1)  # type: ignore[attr-defined]
    done = [outcome(OutcomeKind.DEAD, lease, NOW + 2) for lease in leases[:2]]
    await broker.settle(done, NOW + 2)  # type: ignore[attr-defined]
    await broker.pause(["q2"])  # type: ignore[attr-defined]
    await broker.record_instance("i1", b"report", NOW, 1e9)  # type: ignore[attr-defined]
    return [task.id for task in tasks]


async def _view(broker: object, ids: list[str]) -> tuple[object, ...]:
    """What a user sees of the store: every record, counts, pauses, a reserve's leases."""
    records = await broker.get(ids)  # type: ignore[attr-defined]
    return (
        [(r.id, r.state, r.attempt, r.worker_id) if r else None for r in records],
        await broker.counts(),  # type: ignore[attr-defined]
        await broker.paused(),  # type: ignore[attr-defined]
        await broker.instances(NOW),  # type: ignore[attr-defined]
    )


async def test_after_compaction_the_log_starts_later_and_a_new_process_sees_everything() -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    first = open_broker(_url(stream))
    await first.start()
    try:
        ids = await _fill(first, 40)
        before = await _view(first, ids)
        seq = await first.compact()  # type: ignore[attr-defined]
        assert seq is not None and await _first_seq(first) == seq + 1
        second = open_broker(_url(stream))
        await second.start()
        try:
            assert await _view(second, ids) == before
            assert second._applied == seq  # type: ignore[attr-defined]
            # both go on from there alike: the next reserve hands out the same tasks
            leases = await second.reserve("w2", 3, 30.0, NOW + 3)
            assert len(leases) == 3
            assert await _view(first, ids) == await _view(second, ids)
        finally:
            await second.close()
    finally:
        await first.drop_stream()  # type: ignore[attr-defined]
        await first.close()


async def test_a_process_behind_a_purge_reloads_the_snapshot_and_misses_nothing() -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    writer = open_broker(_url(stream))
    paused = open_broker(_url(stream))
    await writer.start()
    await paused.start()
    try:
        await paused._sub.unsubscribe()  # type: ignore[attr-defined]  # cut off: hears nothing
        ids = await _fill(writer, 30)
        seq = await writer.compact()  # type: ignore[attr-defined]
        assert seq is not None and await _first_seq(writer) == seq + 1
        more = await _fill(writer, 10)  # operations after the purge too
        assert paused._applied < seq  # type: ignore[attr-defined]
        await paused._on_reconnected()  # type: ignore[attr-defined]  # back: follows again
        assert await _view(paused, ids + more) == await _view(writer, ids + more)
        assert paused._broken is None  # type: ignore[attr-defined]
    finally:
        await paused.close()
        await writer.drop_stream()  # type: ignore[attr-defined]
        await writer.close()


async def test_a_crash_between_snapshot_and_purge_loses_nothing() -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    first = open_broker(_url(stream))
    await first.start()
    try:
        ids = await _fill(first, 20)
        purges = []

        async def crash(*args: object, **kwargs: object) -> None:
            purges.append(kwargs)
            raise OSError("killed before the purge")

        real = first._js.purge_stream  # type: ignore[attr-defined]
        first._js.purge_stream = crash  # type: ignore[attr-defined]
        try:
            with pytest.raises(Exception, match="killed before the purge"):
                await first.compact()  # type: ignore[attr-defined]
        finally:
            first._js.purge_stream = real  # type: ignore[attr-defined]
        assert purges and await _first_seq(first) == 1  # stored, not purged
        more = await _fill(first, 5)
        second = open_broker(_url(stream))
        await second.start()  # from the snapshot, then the log after it
        try:
            assert await _view(second, ids + more) == await _view(first, ids + more)
            assert await second.compact() is not None  # type: ignore[attr-defined]
            third = open_broker(_url(stream))
            await third.start()
            try:
                assert await _view(third, ids + more) == await _view(first, ids + more)
            finally:
                await third.close()
        finally:
            await second.close()
    finally:
        await first.drop_stream()  # type: ignore[attr-defined]
        await first.close()


async def test_an_older_snapshot_never_replaces_a_newer_one() -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    early = open_broker(_url(stream))
    late = open_broker(_url(stream))
    await early.start()
    await late.start()
    try:
        await early._sub.unsubscribe()  # type: ignore[attr-defined]  # stays at its position
        ids = await _fill(late, 15)
        newest = await late.compact()  # type: ignore[attr-defined]
        early._caught_up = _no_catch_up(early)  # type: ignore[attr-defined]
        assert await early.compact() is None  # type: ignore[attr-defined]  # older: refused
        store = late._snapshots  # type: ignore[attr-defined]
        head, _ = await store.head()
        assert head.seq == newest
        fresh = open_broker(_url(stream))
        await fresh.start()
        try:
            assert await _view(fresh, ids) == await _view(late, ids)
        finally:
            await fresh.close()
    finally:
        await early.close()
        await late.drop_stream()  # type: ignore[attr-defined]
        await late.close()


def _no_catch_up(broker: object) -> object:
    async def replica() -> object:
        return broker._replica  # type: ignore[attr-defined]

    return replica


async def test_the_snapshot_duty_compacts_every_n_operations() -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    broker = open_broker(_url(stream, snapshot_ops="10", snapshot_seconds="300"))
    await broker.start()
    try:
        ids = await _fill(broker, 100)  # 18 operations
        for _ in range(600):  # the duty runs in the background: wait for it (up to ~60 s)
            if await _first_seq(broker) > 1:
                break
            await asyncio.sleep(0.1)
        assert await _first_seq(broker) > 1
        fresh = open_broker(_url(stream))
        await fresh.start()
        try:
            assert await _view(fresh, ids) == await _view(broker, ids)
        finally:
            await fresh.close()
    finally:
        await broker.drop_stream()  # type: ignore[attr-defined]
        await broker.close()


async def test_a_read_of_a_process_cut_off_past_a_purge_reloads_and_answers_in_full() -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    writer = open_broker(_url(stream))
    cut = open_broker(_url(stream))
    await writer.start()
    await cut.start()
    try:
        await cut._sub.unsubscribe()  # type: ignore[attr-defined]  # never follows again by itself
        ids = await _fill(writer, 25)
        assert await writer.compact() is not None  # type: ignore[attr-defined]
        assert await _view(cut, ids) == await _view(writer, ids)  # the read notices, reloads
        more = await _fill(writer, 5)  # and it follows the log again after the snapshot
        assert await _view(cut, ids + more) == await _view(writer, ids + more)
    finally:
        await cut.close()
        await writer.drop_stream()  # type: ignore[attr-defined]
        await writer.close()


async def test_a_compacted_log_without_its_snapshots_is_refused() -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    broker = open_broker(_url(stream))
    await broker.start()
    try:
        await _fill(broker, 10)
        assert await broker.compact() is not None  # type: ignore[attr-defined]
        await broker._snapshots.drop()  # type: ignore[attr-defined]
        again = open_broker(_url(stream))
        with pytest.raises(ConfigurationError, match="no snapshot covers them"):
            await again.start()
    finally:
        await broker.drop_stream()  # type: ignore[attr-defined]
        await broker.close()


async def test_a_write_covered_by_a_snapshot_while_its_process_was_behind_is_answered() -> None:
    from taskengine.errors import BrokerUnavailable
    from taskengine.model import new_task

    stream = f"t{uuid.uuid4().hex[:12]}"
    writer = open_broker(_url(stream, timeout="60"))
    cut = open_broker(_url(stream, timeout="60"))
    await writer.start()
    await cut.start()
    try:
        await cut._sub.unsubscribe()  # type: ignore[attr-defined]  # hears nothing, writes still
        task = new_task("demo.echo", {"lost": "answer"}, now=NOW)
        pending = asyncio.create_task(cut.enqueue([task], NOW))
        for _ in range(600):  # stored by the server (acknowledged), not applied here
            if cut._acked:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert cut._acked  # type: ignore[attr-defined]
        assert await writer.compact() is not None  # type: ignore[attr-defined]
        await cut.counts()  # notices the purge, reloads the snapshot
        with pytest.raises(BrokerUnavailable, match="answer is lost"):
            await asyncio.wait_for(pending, 30)  # at once, not after the 60 s deadline
        assert (await cut.get([task.id]))[0] is not None  # it did apply
    finally:
        await cut.close()
        await writer.drop_stream()  # type: ignore[attr-defined]
        await writer.close()


def test_a_snapshot_holds_every_store_of_the_replica() -> None:
    """A store added to the memory broker must be added to the snapshot (snapshot.State,
    capture, restore), or a process started from a snapshot would lose it."""
    from taskengine.brokers.nats.ops import Replica

    covered = {
        "max_depth", "_records", "_tokens", "_by_key", "_ready", "_later", "_queued",
        "_paused", "_workers", "_leaders", "_instances", "_controls",
        "_limits", "_buckets", "_limited_for", "_locks", "_lock_of", "_waits",
        "_work",  # the wake-up event: not state, set again by restore
    }  # fmt: skip
    assert set(vars(Replica())) == covered


async def test_a_replica_restored_from_a_snapshot_still_releases_blocked_tasks() -> None:
    from taskengine.brokers.nats.ops import Replica
    from taskengine.brokers.nats.snapshot import capture, decode_state, encode_state, restore
    from taskengine.model import OutcomeKind, TaskState, new_task
    from tests.brokers.support import T0, outcome

    replica = Replica()
    parent = new_task("demo.echo", now=T0)
    child = new_task("demo.echo", now=T0, depends_on=[parent.id])
    await replica.enqueue([parent, child], T0)
    [lease] = await replica.reserve("w", 5, 30.0, T0)
    restored = Replica()
    restore(restored, decode_state(encode_state(capture(replica, 1, {}))))

    assert await restored.settle([outcome(OutcomeKind.SUCCEEDED, lease, T0)], T0) == [True]
    [record] = await restored.get([child.id])
    assert record is not None and record.state is TaskState.QUEUED


async def test_remote_controls_waiting_for_an_instance_survive_a_snapshot() -> None:
    """A drain sent before a compaction still reaches its instance started from the snapshot."""
    from taskengine.brokers.base import Control, ControlCommand
    from taskengine.brokers.nats.ops import Replica
    from taskengine.brokers.nats.snapshot import capture, decode_state, encode_state, restore

    before = Replica()
    drain = Control(command=ControlCommand.DRAIN, sent_at=1_000.0)
    await before.send_control("host-1:42", [drain])
    after = Replica()
    restore(after, decode_state(encode_state(capture(before, 7, {}))))
    assert await after.take_controls("host-1:42") == [drain]


async def test_limits_and_unique_locks_survive_a_snapshot() -> None:
    """A process started from a snapshot keeps the cluster's limits and unique locks."""
    from taskengine.brokers.nats.ops import Replica
    from taskengine.brokers.nats.snapshot import capture, decode_state, encode_state, restore
    from taskengine.model import new_task
    from taskengine.model.limits import Limit, LimitScope
    from taskengine.model.unique import UniqueLock

    before = Replica()
    limit = Limit(scope=LimitScope.TYPE, name="demo.echo", max_concurrency=2, rate=5.0)
    await before.set_limits([limit])
    task = new_task("demo.echo", now=1_000.0)
    await before.enqueue([task], 1_000.0, [UniqueLock(key="k", seconds=60.0)])
    after = Replica()
    restore(after, decode_state(encode_state(capture(before, 7, {}))))
    assert await after.limits() == await before.limits() == [limit]
    assert after._locks == before._locks != {}
    again = new_task("demo.echo", now=1_001.0)
    [answer] = await after.enqueue([again], 1_001.0, [UniqueLock(key="k", seconds=60.0)])
    assert answer.id == task.id and not answer.created  # the lock held across the snapshot


# -- start-up and reload wait while the replay progresses (ADR 0031) --------------------------


def _slow_apply(broker: object, gate: asyncio.Event | None = None, after: int = 0) -> None:
    """Make `broker` apply each log message a few ms late (a loaded machine's replay); with
    `gate`, stop applying after `after` messages until the gate opens (a stalled replay)."""
    real = broker._on_message  # type: ignore[attr-defined]
    seen = 0

    async def apply_late(msg: object) -> None:
        nonlocal seen
        seen += 1
        if gate is not None and seen > after:
            await gate.wait()
        await asyncio.sleep(0.004)
        await real(msg)

    broker._on_message = apply_late  # type: ignore[attr-defined]


async def _enqueue_one_by_one(broker: object, n: int) -> list[str]:
    """`n` log messages: one enqueue of one task each, awaited in turn."""
    from taskengine.model import new_task

    ids = []
    for i in range(n):
        task = new_task("demo.echo", {"n": i}, now=NOW)
        await broker.enqueue([task], NOW)  # type: ignore[attr-defined]
        ids.append(task.id)
    return ids


async def test_a_start_whose_replay_outlasts_the_deadline_but_progresses_succeeds() -> None:
    from taskengine.model import TaskState

    stream = f"t{uuid.uuid4().hex[:12]}"
    writer = open_broker(_url(stream, snapshot_seconds="0"))
    await writer.start()
    try:
        ids = await _enqueue_one_by_one(writer, 300)  # replayed at >= 4 ms each: >= 1.2 s
        late = open_broker(_url(stream, timeout="0.3", snapshot_seconds="0"))
        _slow_apply(late)
        await asyncio.wait_for(late.start(), 120)  # many 0.3 s windows, each with progress
        try:
            records = await late.get(ids)
            assert [r.state if r else None for r in records] == [TaskState.QUEUED] * len(ids)
        finally:
            await late.close()
    finally:
        await writer.drop_stream()  # type: ignore[attr-defined]
        await writer.close()


async def test_a_start_whose_replay_stalls_fails_naming_where_it_stopped() -> None:
    from taskengine.errors import BrokerUnavailable

    stream = f"t{uuid.uuid4().hex[:12]}"
    writer = open_broker(_url(stream, snapshot_seconds="0"))
    await writer.start()
    try:
        await _enqueue_one_by_one(writer, 40)
        stuck = open_broker(_url(stream, timeout="0.3", snapshot_seconds="0"))
        _slow_apply(stuck, asyncio.Event(), after=10)  # applies 10, then never another
        with pytest.raises(BrokerUnavailable, match=r"\(10 of 40\)"):
            await asyncio.wait_for(stuck.start(), 60)
        await stuck.close()
    finally:
        await writer.drop_stream()  # type: ignore[attr-defined]
        await writer.close()


async def test_a_reload_past_a_purge_whose_replay_outlasts_the_deadline_succeeds() -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    writer = open_broker(_url(stream, snapshot_seconds="0"))
    cut = open_broker(_url(stream, timeout="0.3", snapshot_seconds="0"))
    await writer.start()
    await cut.start()
    try:
        await cut._sub.unsubscribe()  # type: ignore[attr-defined]  # hears nothing from here
        ids = await _fill(writer, 20)
        assert await writer.compact() is not None  # type: ignore[attr-defined]
        more = await _enqueue_one_by_one(writer, 300)  # after the snapshot: replayed slowly
        _slow_apply(cut)  # the reload follows the log again with the slow apply
        seen = await asyncio.wait_for(_view(cut, ids + more), 120)  # notices, reloads, replays
        assert seen == await _view(writer, ids + more)
    finally:
        await cut.close()
        await writer.drop_stream()  # type: ignore[attr-defined]
        await writer.close()
