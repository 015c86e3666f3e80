"""The broker's connection to NATS: the client, the log stream, the replica kept up to date
by an ordered consumer, the writer that publishes batches of operations, and error mapping.

Shared by the hot path (broker.py) and the admin half (admin.py). A write is one operation
(ops.py) queued for the writer, which publishes what is queued in one message (in parts past
max_payload; up to IN_FLIGHT publishes at once) and waits for JetStream's acknowledgement;
the caller's answer is what the replica computes when the message comes back through the
consumer, in log order (ADR 0031). A read first asks the stream for its last sequence and
waits until the replica has applied it. NATS and timeout errors become BrokerUnavailable; a
write whose answer did not come in time may still apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import re
import secrets
import time
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from taskengine.brokers.base import Capabilities, check_limit
from taskengine.brokers.deadline import parse_timeout
from taskengine.brokers.nats.codec import ENVELOPE, decode_message, encode_batch, encode_op
from taskengine.brokers.nats.ops import Leader, Op, Replica, apply
from taskengine.brokers.nats.snapshot import (
    SnapshotStore,
    capture,
    encode_state,
    restore,
)
from taskengine.brokers.nats.stream import check_stream
from taskengine.brokers.waiting import wait_event, wait_progressing
from taskengine.errors import BrokerUnavailable, ConfigurationError, ValidationError

log = logging.getLogger("taskengine.brokers.nats")

T = TypeVar("T")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CAPABILITIES = Capabilities(durable=True, shared=True, push_wakeup=True)
_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)
MAX_OPERATION = 64 * 1024 * 1024  # bytes of one packed operation (in parts past max_payload)
PENDING_BYTES = 512 * 1024 * 1024  # what the consumer may buffer before NATS calls it slow
IN_FLIGHT = 4  # publishes of one process awaiting their acknowledgement at once
SNAPSHOT_LEADER = "nats-snapshot"  # the leader lease of the snapshot duty


class NatsConnection:
    """A NATS client, the log stream and this process's replica of what the log says."""

    def __init__(
        self,
        url: str,
        *,
        max_depth: int,
        stream: str,
        replicas: int,
        allow_unsafe: bool,
        server_clock: bool,
        timeout: object,
        snapshot_ops: int = 100_000,
        snapshot_seconds: float = 600.0,
    ) -> None:
        check_limit(max_depth, "max_depth")
        check_limit(snapshot_ops, "snapshot_ops")
        if not snapshot_seconds >= 0:
            raise ConfigurationError(f"snapshot_seconds must be >= 0: {snapshot_seconds!r}")
        check_limit(replicas, "replicas")
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls") or not parts.netloc:
            raise ConfigurationError(f"not a NATS URL: {url!r}; use nats://host:4222")
        if not _STREAM_NAME.fullmatch(stream):
            raise ConfigurationError(f"invalid NATS stream name {stream!r}: use [A-Za-z0-9_-]")
        self.server = f"{parts.scheme}://{parts.netloc}"
        self.timeout = parse_timeout(timeout, None)
        self.max_depth = max_depth
        self.stream = stream
        self.subject = f"taskengine.{stream}.log"
        self.replicas = replicas
        self.allow_unsafe = allow_unsafe
        self.server_clock = server_clock
        self._replica = Replica()
        self._limited_for: float | None = None  # the answer to this process's last reserve
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._starting: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queue: list[tuple[bytes, asyncio.Future[object]]] = []
        self._kick = asyncio.Event()
        self._waiting: dict[str, list[asyncio.Future[object]]] = {}
        self._applied = 0  # the last stream sequence the replica applied
        self._barriers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._ids = 0
        self._client_id = secrets.token_hex(6)
        self._max_payload = 1024 * 1024
        self._broken: str | None = None
        self._sub: Any = None
        self._reconnects = 0
        self._flying: set[asyncio.Task[None]] = set()
        self._parts: dict[str, list[bytes]] = {}  # batches in parts, until their last part
        self.snapshot_ops = snapshot_ops
        self.snapshot_seconds = snapshot_seconds  # 0: no snapshot duty in this process
        self._snapshots: SnapshotStore | None = None
        self._log_created = ""  # the log stream's creation time: snapshots name their log
        self._snapshot_seq = 0  # the sequence the next snapshot is counted from
        self._due = asyncio.Event()  # set once snapshot_ops operations applied since then
        self._duty: asyncio.Task[None] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._acked: dict[str, int] = {}  # waiting batches stored, by the sequence they got
        self._rebuild_to = 0  # the log's end when the last reload began its replay

    @property
    def capabilities(self) -> Capabilities:
        """Durable (file storage), shared across processes, wakes waiters on any enqueue."""
        return _CAPABILITIES

    async def start(self) -> None:
        """Connect, create or check the stream, and apply the log so far. Idempotent."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=[self.server],
                    connect_timeout=self.timeout,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.1,
                    error_cb=self._on_error,
                    reconnected_cb=self._on_reconnected,
                ),
                self.timeout * 2,
            )
        except (*_NATS_ERRORS, TimeoutError) as exc:
            self._starting = None
            raise BrokerUnavailable(f"NATS at {self.server} unreachable: {exc!r}") from exc
        self._max_payload = self._nc.max_payload
        self._js = self._nc.jetstream(timeout=self.timeout)
        try:
            info = await self._ensure_stream()
            self._log_created = info.created.isoformat() if info.created else ""
            self._snapshots = SnapshotStore(self._js, self.stream, self.timeout)
            await self._call(self._snapshots.ensure(info.config))
            await self._load_snapshot()
            checked = check_stream(
                info.config, info.state.first_seq, self.allow_unsafe, covered=self._applied
            )
            for reason in checked.unsafe:
                log.warning("NATS stream %s is unsafe (allowed): %s", self.stream, reason)
            log.info(
                "NATS broker on stream %s (server %s): durability %s",
                self.stream,
                self._nc.connected_server_version,
                checked.window,
            )
            await self._subscribe()
            self._writer = asyncio.create_task(self._write_loop(), name="nats-writer")
            await self._caught_up(rebuilding=True)
            if self.snapshot_seconds > 0:
                self._duty = asyncio.create_task(self._snapshot_duty(), name="nats-snapshot")
        except BaseException:
            await self._nc.close()
            self._nc = self._js = None
            self._starting = None
            raise

    async def _subscribe(self) -> None:
        """Follow the log from the first message the replica has not applied."""
        self._sub = await self._live().subscribe(
            self.subject,
            stream=self.stream,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=self._applied + 1),
            pending_bytes_limit=PENDING_BYTES,
        )

    async def _on_reconnected(self) -> None:
        """Follow the log again at once: what the old consumer pushed into the broken
        connection is lost, and its heartbeats would notice only seconds later."""
        self._reconnects += 1
        if self._reloading is not None:
            return  # the reload follows the log again itself
        old, self._sub = self._sub, None
        if old is None or self._js is None:
            return
        with contextlib.suppress(*_NATS_ERRORS):
            await asyncio.wait_for(old.unsubscribe(), self.timeout)
        try:
            await self._subscribe()
        except (*_NATS_ERRORS, BrokerUnavailable):
            log.warning("NATS: following the log again after a reconnect failed", exc_info=True)

    async def _ensure_stream(self) -> Any:
        """The stream's info, creating the stream (file storage, no limits) if missing."""
        js = self._live()
        try:
            return await self._call(js.stream_info(self.stream))
        except BrokerUnavailable as exc:
            if not isinstance(exc.__cause__, nats.js.errors.NotFoundError):
                raise
        config = StreamConfig(
            name=self.stream,
            subjects=[self.subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            max_msgs=-1,
            max_bytes=-1,
            max_age=0,
            num_replicas=self.replicas,
        )
        return await self._call(js.add_stream(config))

    async def close(self) -> None:
        """Stop the writer, fail what waits, disconnect. Idempotent."""
        self._starting = None
        for task in (self._duty, self._reloading):
            if task is not None:
                task.cancel()
                await asyncio.wait({task}, timeout=self.timeout)
        self._duty = self._reloading = None
        if self._writer is not None:
            while not self._writer.done():  # a cancel may land as a publish completes
                self._writer.cancel()
                await asyncio.wait({self._writer}, timeout=0.1)
            self._writer = None
        for task in list(self._flying):
            task.cancel()
        if self._flying:
            await asyncio.wait(self._flying, timeout=self.timeout)
        self._fail_all(BrokerUnavailable("the NATS broker is closed"))
        if self._nc is not None:
            nc, self._nc, self._js = self._nc, None, None
            sub, self._sub = self._sub, None
            try:
                if sub is not None:
                    await asyncio.wait_for(sub.unsubscribe(), self.timeout)
            except (*_NATS_ERRORS, TimeoutError):
                log.debug("unsubscribing from the NATS log failed", exc_info=True)
            try:
                await nc.close()
            except _NATS_ERRORS:
                log.debug("closing the NATS connection failed", exc_info=True)

    async def drop_stream(self) -> None:
        """Delete the stream, its snapshots and everything in them (tests use it to clean up)."""
        await self._call(self._live().delete_stream(self.stream))
        if self._snapshots is not None:
            await self._call(self._snapshots.drop())

    async def wait_for_work(self, timeout: float) -> None:
        """Return as soon as an applied operation (anyone's) queued work, or after `timeout`."""
        await self._replica.wait_for_work(timeout)

    # -- the log ---------------------------------------------------------------------------

    async def _write(self, op: Op) -> Any:
        """Append one operation and return its answer (raise the error it raised)."""
        self._live()
        data = encode_op(op)
        if len(data) > MAX_OPERATION:
            raise ValidationError(
                f"this call packs to {len(data)} bytes, over the NATS broker's limit of "
                f"{MAX_OPERATION}: send smaller batches"
            )
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.append((data, future))
        self._kick.set()
        reconnects = self._reconnects
        try:
            try:
                result = await asyncio.wait_for(asyncio.shield(future), self.timeout)
            except TimeoutError:
                if reconnects == self._reconnects and not self._nc_reconnecting():
                    raise
                # the connection broke and came back meanwhile: one more deadline for it
                result = await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            future.cancel()  # if still queued, it is never sent (a late write surprises)
            raise BrokerUnavailable(
                f"NATS gave no answer within {self.timeout} s (the operation may still apply)"
            ) from None
        if isinstance(result, BaseException):
            raise result
        return result

    async def _write_loop(self) -> None:
        """Publish what is queued, as much as fits in each message, with up to IN_FLIGHT
        publishes awaiting their acknowledgement (one slow publish does not hold the rest)."""
        flying = self._flying
        while True:
            await self._kick.wait()
            self._kick.clear()
            self._queue = [(op, future) for op, future in self._queue if not future.done()]
            while self._queue:
                if len(flying) >= IN_FLIGHT:
                    await asyncio.wait(flying, return_when=asyncio.FIRST_COMPLETED)
                    self._queue = [(op, f) for op, f in self._queue if not f.done()]
                    continue
                size, taken = ENVELOPE, 0
                while taken < len(self._queue) and (
                    taken == 0 or size + len(self._queue[taken][0]) <= self._max_payload
                ):
                    size += len(self._queue[taken][0])
                    taken += 1
                group, self._queue = self._queue[:taken], self._queue[taken:]
                group = [(op, future) for op, future in group if not future.done()]
                if group:
                    task = asyncio.create_task(self._publish(group))
                    flying.add(task)
                    task.add_done_callback(flying.discard)

    async def _publish(self, group: list[tuple[bytes, asyncio.Future[object]]]) -> None:
        self._ids += 1
        batch_id = f"{self._client_id}:{self._ids}"
        futures = [future for _, future in group]
        self._waiting[batch_id] = futures
        messages = encode_batch(batch_id, [op for op, _ in group], self._max_payload)
        try:
            for index, data in enumerate(messages):  # in order: the last part completes it
                seq = await self._publish_one(data, f"{batch_id}/{index}", futures)
            if batch_id in self._waiting:  # not applied yet: a reload may have to answer it
                self._acked[batch_id] = seq
        except BrokerUnavailable as exc:
            if self._waiting.pop(batch_id, None) is not None:
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)

    async def _publish_one(
        self, data: bytes, msg_id: str, futures: list[asyncio.Future[object]]
    ) -> int:
        """Publish one message and wait for its acknowledgement. Sent again once if the
        connection broke meanwhile: the server drops a second copy by its Nats-Msg-Id (the
        stream's duplicate window, 2 min by default), so it is stored at most once. Returns
        the sequence the stream stored it at."""
        headers = {"Nats-Msg-Id": msg_id}
        reconnects = self._reconnects
        try:
            publish = self._live().publish(
                self.subject, data, timeout=self.timeout, stream=self.stream, headers=headers
            )
            return int((await self._call(publish)).seq)
        except BrokerUnavailable:
            if reconnects == self._reconnects and not self._nc_reconnecting():
                raise
            if all(future.done() for future in futures):
                raise  # every caller gave up: not sent again
            publish = self._live().publish(
                self.subject, data, timeout=self.timeout, stream=self.stream, headers=headers
            )
            return int((await self._call(publish)).seq)

    async def _on_message(self, msg: Msg) -> None:
        """Apply one log message to the replica and answer its writer, if it is waiting here."""
        seq = msg.metadata.sequence.stream
        if seq <= self._applied or self._reloading is not None:
            return  # delivered again after the consumer was recreated, or reloading
        if self._broken is not None:
            return
        if seq != self._applied + 1:
            self._reload()  # purged past this process's position while it was behind
            return
        batch = decode_message(msg.data, self._parts)
        if batch is not None:  # else a part of a batch, applied with its last part
            futures = self._waiting.pop(batch.id, None)
            self._acked.pop(batch.id, None)
            server_now = msg.metadata.timestamp.timestamp() if self.server_clock else None
            for index, op in enumerate(batch.ops):
                result = apply(self._replica, op, server_now)
                if futures is not None and not futures[index].done():
                    futures[index].set_result(result)
        self._applied = seq
        if seq - self._snapshot_seq >= self.snapshot_ops:
            self._due.set()
        self._release_barriers()

    def _release_barriers(self) -> None:
        """Answer the reads waiting for the replica to reach a sequence it has reached."""
        seq = self._applied
        barriers = self._barriers
        while barriers and barriers[0][0] <= seq:
            future = heapq.heappop(barriers)[2]
            if not future.done():
                future.set_result(None)

    async def _caught_up(self, rebuilding: bool = False) -> Replica:
        """The replica once it has applied every message the stream held when asked. While
        the replica is rebuilt (`rebuilding`: the start-up; or a reload's replay still short
        of the log's end it saw) it waits as long as each `timeout` applies something; an
        ordinary read waits `timeout` in all (ADR 0031)."""
        reconnects = self._reconnects
        try:
            info = await self._call(self._live().stream_info(self.stream))
        except BrokerUnavailable:
            if reconnects == self._reconnects and not self._nc_reconnecting():
                raise
            # asked on a connection that broke meanwhile: ask again (a read)
            info = await self._call(self._live().stream_info(self.stream))
        target = info.state.last_seq
        if info.state.first_seq > self._applied + 1 and self._broken is None:
            await asyncio.shield(self._reload())  # purged past this process's position
        if self._broken is not None:
            raise BrokerUnavailable(self._broken)
        if self._applied < target:
            rebuilding = rebuilding or self._applied < self._rebuild_to
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._ids += 1
            heapq.heappush(self._barriers, (target, self._ids, future))
            position = (lambda: self._applied) if rebuilding else (lambda: -1)
            if not await wait_progressing(future, self.timeout, position):
                future.cancel()
                bound = "without progress for" if rebuilding else "within"
                raise BrokerUnavailable(
                    f"the replica did not reach the log's end ({self._applied} of {target}) "
                    f"{bound} {self.timeout} s"
                )
        return self._replica

    # -- snapshots and compaction (ADR 0031) -----------------------------------------------

    async def compact(self) -> int | None:
        """Snapshot the replica at the sequence it has applied, then purge the log up to it;
        that sequence, or None when a snapshot at least as new was already the newest."""
        snapshots = self._snapshot_store()
        await self._caught_up()
        if self._reloading is not None:
            raise BrokerUnavailable("the replica is reloading a snapshot")
        state = capture(self._replica, self._applied, self._parts)  # exactly 1..S, no await
        data = await asyncio.to_thread(encode_state, state)
        window = self.timeout * 20  # tens of MiB: many publishes, each under the deadline
        stored = await self._call(
            snapshots.store(data, state.seq, self._log_created, self._max_payload), window
        )
        self._snapshot_seq = max(self._snapshot_seq, state.seq)
        if not stored:
            return None
        # only now: every operation purged is in a snapshot the server acknowledged
        await self._call(self._live().purge_stream(self.stream, seq=state.seq + 1))
        log.info(
            "NATS stream %s: snapshot at %d (%d bytes), log purged up to it",
            self.stream,
            state.seq,
            len(data),
        )
        return state.seq

    async def _snapshot_duty(self) -> None:
        """Every snapshot_ops operations or snapshot_seconds, whichever first, the holder of
        the snapshot lease compacts. The lease saves work; correctness does not need it."""
        ttl = 2 * self.snapshot_seconds + self.timeout
        while True:
            await wait_event(self._due, self.snapshot_seconds)
            self._due.clear()
            if self._applied <= self._snapshot_seq or self._broken is not None:
                continue
            try:
                lead = Leader(SNAPSHOT_LEADER, self._client_id, ttl, time.time())
                if await self._write(lead):
                    await self.compact()
                else:
                    self._snapshot_seq = self._applied  # the holder does it; count again
            except (BrokerUnavailable, *_NATS_ERRORS) as exc:
                self._snapshot_seq = self._applied  # try again when due again, not at once
                log.warning("NATS stream %s: snapshot failed: %r", self.stream, exc)

    async def _load_snapshot(self) -> None:
        """Make the replica the newest snapshot of this log, if there is one."""
        state = await self._call(self._snapshot_store().load(self._log_created), self.timeout * 20)
        if state is None or state.seq <= self._applied:
            return  # none, or older than what the replica holds
        restore(self._replica, state)
        self._applied = self._snapshot_seq = state.seq
        self._parts = state.parts
        log.info("NATS stream %s: loaded the snapshot at %d", self.stream, state.seq)

    def _reload(self) -> asyncio.Task[None]:
        """Start (or join) reloading the newest snapshot and following the log after it."""
        if self._reloading is None:
            self._reloading = asyncio.create_task(self._reload_now(), name="nats-reload")
        return self._reloading

    async def _reload_now(self) -> None:
        behind = self._applied
        try:
            old, self._sub = self._sub, None
            if old is not None:
                with contextlib.suppress(*_NATS_ERRORS):
                    await asyncio.wait_for(old.unsubscribe(), self.timeout)
            await self._load_snapshot()
            info = await self._call(self._live().stream_info(self.stream))
            if info.state.first_seq > self._applied + 1:
                raise BrokerUnavailable(
                    f"the log starts at {info.state.first_seq} and the newest snapshot is at "
                    f"{self._applied}: operations are missing"
                )
            self._rebuild_to = info.state.last_seq  # reads wait for this replay patiently
            log.warning(
                "NATS stream %s: this process was behind a compaction (at %d); reloaded the "
                "snapshot at %d",
                self.stream,
                behind,
                self._applied,
            )
            self._release_barriers()
            self._answer_skipped()
            self._reloading = None
            await self._subscribe()
        except (BrokerUnavailable, *_NATS_ERRORS) as exc:
            self._broken = f"the log skipped past {behind} and reloading failed: {exc!r}"
            log.error("NATS broker on stream %s is broken: %s", self.stream, self._broken)
            self._fail_all(BrokerUnavailable(self._broken))
        finally:
            self._reloading = None

    def _answer_skipped(self) -> None:
        """Fail the writes of this process that the snapshot covers: they applied while it was
        behind, and their answers are not in the snapshot."""
        for batch_id, seq in list(self._acked.items()):
            if seq > self._applied:
                continue
            del self._acked[batch_id]
            lost = BrokerUnavailable(
                f"this write applied at {seq} while the process was behind a compaction; "
                "its answer is lost (the operation applied)"
            )
            for future in self._waiting.pop(batch_id, []):
                if not future.done():
                    future.set_exception(lost)

    def _snapshot_store(self) -> SnapshotStore:
        if self._snapshots is None:
            raise BrokerUnavailable("the NATS broker is not started (or is closed)")
        return self._snapshots

    def _fail_all(self, exc: BrokerUnavailable) -> None:
        for _, future in self._queue:
            if not future.done():
                future.set_exception(exc)
        self._queue = []
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        self._waiting.clear()
        self._acked.clear()
        for _, _, barrier in self._barriers:
            if not barrier.done():
                barrier.set_exception(exc)
        self._barriers = []

    def _live(self) -> JetStreamContext:
        if self._js is None:
            raise BrokerUnavailable("the NATS broker is not started (or is closed)")
        return self._js

    def _nc_reconnecting(self) -> bool:
        return self._nc is not None and bool(self._nc.is_reconnecting)

    async def _call(self, call: Awaitable[T], timeout: float | None = None) -> T:
        """Run one NATS request under the deadline; its failures as BrokerUnavailable."""
        try:
            async with asyncio.timeout(
                timeout or self.timeout
            ):  # not wait_for: it can swallow a cancel
                return await call
        except (*_NATS_ERRORS, TimeoutError) as exc:
            raise BrokerUnavailable(f"NATS call failed: {exc!r}") from exc

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS client error: %r", exc)


__all__ = ["NatsConnection"]
