"""Task records to and from the fields of a task's Redis hash (MessagePack via msgspec).

A task hash holds `task` (the Task as enqueued, MessagePack), the fields that change over its
life as plain strings, `result` (the last TaskResult, MessagePack; its attempt number is kept
apart in `result_attempt`, set by the scripts) and `history` (the attempt lines, each a
MessagePack AttemptRecord, concatenated; `history_len` counts them) and `progress` (the last
progress report, MessagePack). Absent fields are None.
Numbers cross as Python's `repr` of the float, which Redis and Lua parse back exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from msgspec.structs import replace

from taskengine.model import (
    AttemptRecord,
    Outcome,
    Progress,
    Task,
    TaskRecord,
    TaskResult,
    TaskState,
)
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.outcome import ATTEMPT_REFUNDED
from taskengine.model.priority import HEAD_START
from taskengine.model.records import honour_cancel, outcome_line
from taskengine.model.serializer import pack
from taskengine.model.unique import UniqueLock, encode_states

Fields = dict[bytes, bytes]

_record = msgspec.msgpack.Decoder(TaskRecord)
_result = msgspec.msgpack.Decoder(TaskResult)
_history = msgspec.msgpack.Decoder(list[AttemptRecord])
_progress = msgspec.msgpack.Decoder(Progress)


def enqueue_batch(tasks: Sequence[Task]) -> bytes:
    """The one argument enqueue.lua reads for a batch: MessagePack of the fifteen fields of
    each task in a row, every number as the string redis-py would have sent for it."""
    fields: list[str | msgspec.Raw] = []
    for task in tasks:
        key = task.idempotency_key
        created = repr(float(task.created_at))
        run_at = created if task.run_at == task.created_at else repr(float(task.run_at))
        fields += (
            task.id,
            "" if key is None else "=" + key,  # "=": present
            task.queue,
            run_at,
            _HEAD[task.priority],  # reserve orders by due - head start (model.priority)
            _PRIORITY[task.priority],
            created,
            str(int(task.attempt)),
            task.type,
            _as_str(pack(task)),
            str(int(task.max_attempts)),  # read by requeue_expired.lua
            "" if task.keep_result is None else repr(float(task.keep_result)),  # ADR 0035
            ",".join(task.depends_on),  # ids hold no comma (model.ids)
            "" if task.on_parent_failure == "cancel" else task.on_parent_failure,
            task.workflow or "",
        )
    return pack(fields)


_HEAD = {priority: repr(float(head)) for priority, head in HEAD_START.items()}
_PRIORITY = {priority: str(int(priority)) for priority in HEAD_START}


def _as_str(blob: bytes) -> msgspec.Raw:
    """`blob` as a MessagePack str: Redis's cmsgpack decodes no bin type, and a Lua string
    holds any bytes."""
    size = len(blob)
    if size < 32:
        head = bytes((0xA0 | size,))
    elif size < 0x100:
        head = bytes((0xD9, size))
    elif size < 0x10000:
        head = b"\xda" + size.to_bytes(2, "big")
    else:
        head = b"\xdb" + size.to_bytes(4, "big")
    return msgspec.Raw(head + blob)


def settle_batch(outcomes: Sequence[Outcome], now: float) -> bytes:
    """The one argument settle.lua reads for a batch: MessagePack of the nine fields of each
    outcome in a row (its own seven, then the result and line that replace them if the task
    has a cancel request, model.records; empty: none), every value a string."""
    fields: list[str | msgspec.Raw] = []
    for outcome in outcomes:
        fields += _settle_fields(outcome)
        honoured = honour_cancel(outcome, now)
        if honoured is None:
            fields += ("", "")
        else:
            fields += _settle_fields(honoured)[5:]
    return pack(fields)


_EMPTY = msgspec.Raw(b"\xa0")


def _settle_fields(outcome: Outcome) -> list[str | msgspec.Raw]:
    result = outcome.result
    line = outcome_line(outcome)  # the script sets its attempt number: only the store knows it
    return [
        outcome.task_id,
        outcome.token,
        outcome.state.value,
        "1" if outcome.kind in ATTEMPT_REFUNDED else "0",
        "" if outcome.run_at is None else repr(float(outcome.run_at)),
        _EMPTY if result is None else _as_str(pack(result)),
        _EMPTY if line is None else _as_str(pack(line)),
    ]


def pairs(flat: Sequence[bytes]) -> Fields:
    """An HGETALL array returned by a script, as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _result_of(blob: bytes | None, attempt: bytes | None) -> TaskResult | None:
    if blob is None:
        return None
    return replace(_result.decode(blob), attempt=int(attempt or 0))


def _history_of(lines: bytes | None, count: bytes | None) -> list[AttemptRecord]:
    if not lines:
        return []
    return _history.decode(_array_header(int(count or 0)) + lines)


def _progress_of(blob: bytes | None) -> Progress | None:
    return None if blob is None else _progress.decode(blob)


def decode_record(fields: Fields) -> TaskRecord:
    """Build the TaskRecord a task hash holds."""
    get = fields.get
    worker = get(b"worker_id")
    return replace(
        _record.decode(fields[b"task"]),
        state=TaskState(fields[b"state"].decode()),
        attempt=int(fields[b"attempt"]),
        run_at=float(fields[b"run_at"]),
        created_at=float(fields[b"created_at"]),  # as received (enqueue.lua), not the blob's
        updated_at=float(fields[b"updated_at"]),
        started_at=_float(get(b"started_at")),
        finished_at=_float(get(b"finished_at")),
        worker_id=None if worker is None else worker.decode(),
        lease_expires_at=_float(get(b"lease_expires_at")),
        cancel_requested=get(b"cancel_requested") == b"1",
        waiting=int(get(b"waiting") or 0),
        result=_result_of(get(b"result"), get(b"result_attempt")),
        history=_history_of(get(b"history"), get(b"history_len")),
        progress=_progress_of(get(b"progress")),
    )


def decode_claim(
    values: Sequence[Any], worker_id: str, now: float, expires_at: float
) -> TaskRecord:
    """Build the record of a task reserve.lua just claimed: its reply's values (in the order
    the script's header gives) and the claim's own fields, which the caller passed to it."""
    blob, attempt, run_at, finished_at, result, result_attempt, lines, count = values[:8]
    return replace(
        _record.decode(blob),
        state=TaskState.RUNNING,
        attempt=int(attempt),
        run_at=float(run_at),
        created_at=float(values[9]),  # as received (enqueue.lua), not the blob's
        updated_at=now,
        started_at=now,
        finished_at=_float(finished_at),
        worker_id=worker_id,
        lease_expires_at=expires_at,
        cancel_requested=False,
        result=_result_of(result, result_attempt),
        history=_history_of(lines, count),
        progress=_progress_of(values[10] if len(values) > 10 else None),
    )


def decode_records(replies: Sequence[Any]) -> list[TaskRecord]:
    """Records from a script's list of HGETALL arrays."""
    return [decode_record(pairs(flat)) for flat in replies]


def encode_limit(limit: Limit) -> str:
    """A limit as its K.limits value: "max_concurrency|rate|burst", '' for none (reserve.lua)."""

    def text(value: float | None) -> str:
        return "" if value is None else repr(value)

    return f"{text(limit.max_concurrency)}|{text(limit.rate)}|{text(limit.burst)}"


def decode_limit(member: str, value: str) -> Limit:
    """A limit from its K.limits field ("scope|name") and value."""
    scope, name = member.split("|", 1)
    conc, rate, burst = value.split("|")
    return Limit(
        scope=LimitScope(scope),
        name=name,
        max_concurrency=int(conc) if conc else None,
        rate=float(rate) if rate else None,
        burst=int(burst) if burst else None,
    )


def unique_batch(unique: Sequence[UniqueLock | None], now: float) -> bytes:
    """The unique locks of an enqueue batch as enqueue.lua reads them (ARGV[5]): per lock,
    the task's place in the batch, the key, until ('' = none) and the states ('' = none)."""
    fields: list[str] = []
    for index, lock in enumerate(unique):
        if lock is not None:
            until = "" if lock.seconds is None else repr(float(now + lock.seconds))
            fields += (str(index), lock.key, until, encode_states(lock.states))
    return pack(fields)
