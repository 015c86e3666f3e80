"""Log messages to and from bytes: one message is a batch of operations (ops.py) that one
process wrote in one publish, under an id its writer waits on (msgpack, array-like)."""

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


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)
ENVELOPE = 64  # bytes a batch adds around its operations (id, array headers), generously


def encode_op(op: Op) -> bytes:
    """One operation packed (its size decides which message it goes in)."""
    return _encoder.encode(op)


def encode_batch(batch_id: str, ops: list[bytes]) -> bytes:
    """A message of packed operations."""
    return _encoder.encode(_Outgoing(batch_id, [msgspec.Raw(op) for op in ops]))


def decode_batch(data: bytes) -> Batch:
    """A message as written by `encode_batch`."""
    return _decoder.decode(data)
