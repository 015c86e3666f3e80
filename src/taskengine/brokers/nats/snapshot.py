"""Snapshots of the replica (ADR 0031, compaction): what the replica holds after applying the
log up to a sequence S, packed, and its storage beside the log.

Storage: a second stream, `<stream>_snap` (same storage and replicas as the log), with the
snapshot's bytes as chunks on `taskengine.<stream>.snap.c.<S>.<nonce>` (a snapshot of 100k
tasks is tens of MiB, over max_payload: not a KV value) and, once every chunk is
acknowledged, a small *head* on `taskengine.<stream>.snap.head` naming them. A head is
published only with `Nats-Expected-Last-Subject-Sequence` set to the head it replaces and only
if its S is higher, so the last head is always the highest S stored: two writers at once
cannot put an older snapshot over a newer one. The log is purged up to S only after the head
of S is acknowledged, so every purged operation is covered by a durable snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from typing import Any

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, DiscardPolicy, RetentionPolicy, StreamConfig

from taskengine.brokers.base import Control, InstanceReport
from taskengine.brokers.nats.ops import Replica
from taskengine.model import TaskRecord, TaskState
from taskengine.model.limits import Limit
from taskengine.model.worker import WorkerInfo

CHUNK_ENVELOPE = 4096  # bytes kept free in a chunk message for headers and subject


class State(msgspec.Struct, array_like=True):
    """The replica's stores after applying the log up to `seq`, and the batches in parts.
    Every store of brokers/memory's connection is here (a test checks the list)."""

    seq: int
    max_depth: int
    records: list[TaskRecord]
    tokens: dict[str, str]
    by_key: dict[str, str]
    ready: dict[str, list[tuple[float, str]]]
    later: list[tuple[float, str]]
    queued: int
    paused: list[str]
    workers: list[WorkerInfo]
    leaders: dict[str, tuple[str, float]]
    instances: list[InstanceReport]
    parts: dict[str, list[bytes]]
    controls: dict[str, list[Control]] = msgspec.field(default_factory=dict)
    # ADR 0038: limits and buckets by (scope, name), as pairs (msgpack keys are strings)
    limits: list[tuple[tuple[str, str], Limit]] = msgspec.field(default_factory=list)
    buckets: list[tuple[tuple[str, str], tuple[float, float]]] = msgspec.field(default_factory=list)
    limited_for: float | None = None
    locks: dict[str, tuple[str, float | None, tuple[TaskState, ...]]] = msgspec.field(
        default_factory=dict
    )
    lock_of: dict[str, str] = msgspec.field(default_factory=dict)
    # parent -> its blocked dependents (model.deps); after the other fields and defaulted,
    # so a snapshot written by a build before dependencies still decodes.
    waits: dict[str, list[str]] = {}


class Head(msgspec.Struct, array_like=True):
    """Where the snapshot at `seq` lies: its chunks, their count, size and SHA-256, and the
    creation time of the log stream it describes."""

    seq: int
    subject: str
    chunks: int
    size: int
    sha256: bytes
    log_created: str


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(State)
_head_decoder = msgspec.msgpack.Decoder(Head)


def capture(replica: Replica, seq: int, parts: dict[str, list[bytes]]) -> State:
    """Copy the replica's stores (no await: the copy is exactly the state at `seq`)."""
    return State(
        seq=seq,
        max_depth=replica.max_depth,
        records=list(replica._records.values()),
        tokens=dict(replica._tokens),
        by_key=dict(replica._by_key),
        ready={queue: list(heap) for queue, heap in replica._ready.items()},
        later=list(replica._later),
        queued=replica._queued,
        paused=sorted(replica._paused),
        workers=list(replica._workers.values()),
        leaders=dict(replica._leaders),
        instances=list(replica._instances.values()),
        waits={parent: sorted(children) for parent, children in replica._waits.items()},
        parts={batch: list(chunks) for batch, chunks in parts.items()},
        controls={instance: list(sent) for instance, sent in replica._controls.items()},
        limits=list(replica._limits.items()),
        buckets=list(replica._buckets.items()),
        limited_for=replica._limited_for,
        locks=dict(replica._locks),
        lock_of=dict(replica._lock_of),
    )


def restore(replica: Replica, state: State) -> None:
    """Make `replica` hold what `state` says, in place (its waiters stay), and wake them."""
    replica.max_depth = state.max_depth
    replica._records = {record.id: record for record in state.records}
    replica._tokens = state.tokens
    replica._by_key = state.by_key
    replica._ready = state.ready
    replica._later = state.later
    replica._queued = state.queued
    replica._paused = set(state.paused)
    replica._workers = {worker.id: worker for worker in state.workers}
    replica._leaders = state.leaders
    replica._instances = {report.instance: report for report in state.instances}
    replica._waits = {parent: set(children) for parent, children in state.waits.items()}
    replica._controls = state.controls
    replica._limits = {(scope, name): limit for (scope, name), limit in state.limits}
    replica._buckets = {(scope, name): bucket for (scope, name), bucket in state.buckets}
    replica._limited_for = state.limited_for
    replica._locks = state.locks
    replica._lock_of = state.lock_of
    replica._work.set()


def encode_state(state: State) -> bytes:
    """The state packed (msgpack)."""
    return _state_encoder.encode(state)


def decode_state(data: bytes) -> State:
    """The state unpacked."""
    return _state_decoder.decode(data)


class SnapshotStore:
    """The snapshot stream of one log: store a snapshot, read the newest."""

    def __init__(self, js: JetStreamContext, log_stream: str, timeout: float) -> None:
        self.js = js
        self.stream = f"{log_stream}_snap"
        self.prefix = f"taskengine.{log_stream}.snap"
        self.head_subject = f"{self.prefix}.head"
        self.timeout = timeout

    async def ensure(self, log_config: Any) -> None:
        """Create the snapshot stream, if missing, with the log's storage and replicas."""
        try:
            await self.js.stream_info(self.stream)
            return
        except nats.js.errors.NotFoundError:
            pass
        await self.js.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=[f"{self.prefix}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=log_config.storage,
                discard=DiscardPolicy.NEW,
                max_msgs=-1,
                max_bytes=-1,
                max_age=0,
                num_replicas=log_config.num_replicas or 1,
            )
        )

    async def head(self) -> tuple[Head | None, int]:
        """The newest head and its stream sequence ((None, 0) when there is none)."""
        try:
            msg = await self.js.get_last_msg(self.stream, self.head_subject)
        except nats.js.errors.NotFoundError:
            return None, 0
        return _head_decoder.decode(msg.data or b""), msg.seq or 0

    async def store(self, data: bytes, seq: int, log_created: str, max_payload: int) -> bool:
        """Store the packed state at `seq` and make it the newest; False (nothing stored) if
        a snapshot at `seq` or later is already the newest."""
        current, current_seq = await self.head()
        if current is not None and current.seq >= seq:
            return False
        subject = f"{self.prefix}.c.{seq}.{secrets.token_hex(4)}"
        size = max(1024, max_payload - CHUNK_ENVELOPE)
        chunks = [data[start : start + size] for start in range(0, len(data), size)] or [b""]
        try:
            for chunk in chunks:
                await self.js.publish(subject, chunk, stream=self.stream)
            digest = await asyncio.to_thread(_sha256, data)  # tens of MB: off the loop
            head = Head(seq, subject, len(chunks), len(data), digest, log_created)
            for attempt in range(5):
                try:
                    await self.js.publish(
                        self.head_subject,
                        _state_encoder.encode(head),
                        stream=self.stream,
                        headers={"Nats-Expected-Last-Subject-Sequence": str(current_seq)},
                    )
                    break
                except nats.js.errors.APIError:
                    # another writer's head came first: ours only if still the higher
                    current, current_seq = await self.head()
                    if attempt == 4 or (current is not None and current.seq >= seq):
                        raise
        except nats.js.errors.APIError:
            await self.js.purge_stream(self.stream, subject=subject)
            return False
        if current is not None and current.subject != subject:
            await self.js.purge_stream(self.stream, subject=current.subject)
        await self.js.purge_stream(self.stream, subject=self.head_subject, keep=1)
        return True

    async def load(self, log_created: str) -> State | None:
        """The newest snapshot of this log (None if none), read again if it was replaced
        while being read."""
        for _ in range(3):
            head, _seq = await self.head()
            if head is None or (head.log_created and head.log_created != log_created):
                return None
            data = await self._read(head)
            if data is not None:
                return await asyncio.to_thread(decode_state, data)
        raise nats.js.errors.Error("the newest snapshot could not be read whole (3 tries)")

    async def _read(self, head: Head) -> bytes | None:
        """The snapshot's bytes, or None if its chunks are gone or damaged."""
        sub = await self.js.subscribe(
            head.subject,
            stream=self.stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            pending_bytes_limit=512 * 1024 * 1024,
        )
        pieces: list[bytes] = []
        try:
            for _ in range(head.chunks):
                msg = await sub.next_msg(timeout=self.timeout)
                pieces.append(msg.data)
        except (TimeoutError, nats.errors.TimeoutError):
            return None
        finally:
            await sub.unsubscribe()
        data = b"".join(pieces)
        if len(data) != head.size or await asyncio.to_thread(_sha256, data) != head.sha256:
            return None
        return data

    async def drop(self) -> None:
        """Delete the snapshot stream (tests clean up with it)."""
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_stream(self.stream)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
