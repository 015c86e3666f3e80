"""Log messages to and from bytes: a batch of operations (ops.py) that one process wrote
together, under an id its writer waits on (msgpack, array-like). A batch larger than the
server's max_payload travels as numbered parts, published one after another; replicas apply
it when its last part arrives, so it is still one step of the log."""

from __future__ import annotations

import msgspec

from taskengine.brokers.nats.ops import Op


class _Outgoing(msgspec.Struct, array_like=True):
    id: str
    ops: list[msgspec.Raw]


class Batch(msgspec.Struct, array_like=True):
    """One log message: the writer's batch id and its operations, in the order to apply."""

    id: str
    ops: list[Op]


class Part(msgspec.Struct, array_like=True):
    """One piece of a batch too large for one message."""

    id: str
    index: int
    total: int
    chunk: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)
_part_decoder = msgspec.msgpack.Decoder(Part)
ENVELOPE = 64  # bytes a batch adds around its operations (id, array headers), generously
WHOLE, PIECE = b"B", b"P"  # the first byte of a message: a whole batch, or a part of one


def encode_op(op: Op) -> bytes:
    """One operation packed (its size decides which message it goes in)."""
    return _encoder.encode(op)


def encode_batch(batch_id: str, ops: list[bytes], max_payload: int) -> list[bytes]:
    """The messages of a batch of packed operations: one, or parts when it is too large."""
    data = _encoder.encode(_Outgoing(batch_id, [msgspec.Raw(op) for op in ops]))
    if len(data) + 1 <= max_payload:
        return [WHOLE + data]
    size = max_payload - 2 * ENVELOPE - len(batch_id)
    chunks = [data[start : start + size] for start in range(0, len(data), size)]
    return [
        PIECE + _encoder.encode(Part(batch_id, index, len(chunks), chunk))
        for index, chunk in enumerate(chunks)
    ]


def decode_message(data: bytes, parts: dict[str, list[bytes]]) -> Batch | None:
    """The batch a message completes (None for a part that is not the last), keeping the
    parts seen so far in `parts`."""
    if data[:1] == WHOLE:
        return _decoder.decode(data[1:])
    part = _part_decoder.decode(data[1:])
    chunks = parts.setdefault(part.id, [])
    if part.index != len(chunks):  # a writer that failed midway and wrote again: start over
        chunks.clear()
        if part.index != 0:
            parts.pop(part.id, None)
            return None
    chunks.append(part.chunk)
    if len(chunks) < part.total:
        return None
    del parts[part.id]
    return _decoder.decode(b"".join(chunks))
