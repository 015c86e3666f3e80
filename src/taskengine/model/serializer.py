"""The one serializer: JSON for payloads and the API, MessagePack inside brokers (msgspec)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from taskengine.errors import ValidationError

T = TypeVar("T")

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()
_pack_encoder = msgspec.msgpack.Encoder()


def to_json(value: Any) -> bytes:
    """Encode `value` as JSON; raise ValidationError if it is not JSON-serialisable."""
    try:
        return _json_encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"not JSON-serialisable: {exc}") from exc


def from_json(data: bytes | str) -> Any:
    """Decode JSON into plain Python values; raise ValidationError on malformed input."""
    try:
        return _json_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"invalid JSON: {exc}") from exc


def check_storable(value: Any) -> None:
    """Raise ValidationError unless every broker can store `value` and the API can show it.

    JSON alone is not enough: MessagePack refuses integers outside [-2**63, 2**64 - 1], and
    neither format takes a string with a lone surrogate.
    """
    try:
        _pack_encoder.encode(value)
        _json_encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"cannot be stored: {exc}") from exc


def check_json(value: Any) -> Any:
    """Return `value` if it survives a JSON round trip unchanged in kind, else raise."""
    return from_json(to_json(value))


def pack(value: Any) -> bytes:
    """Encode a struct or plain value as MessagePack."""
    return _pack_encoder.encode(value)


def unpack(data: bytes, kind: type[T]) -> T:
    """Decode MessagePack into `kind`, validating it."""
    return msgspec.msgpack.decode(data, type=kind)
