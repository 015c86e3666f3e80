"""The one serializer: JSON for payloads and the API, MessagePack inside brokers (msgspec)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from taskengine.errors import ResultTooLarge, ValidationError

T = TypeVar("T")

DEFAULT_MAX_RESULT_BYTES = 1024 * 1024  # like the API's request body cap

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


def check_storable(value: Any, max_bytes: int | None = None) -> None:
    """Raise ValidationError unless every broker can store `value` and the API can show it;
    ResultTooLarge if either encoding is over `max_bytes`.

    JSON alone is not enough: MessagePack refuses integers outside [-2**63, 2**64 - 1], and
    neither format takes a string with a lone surrogate.
    """
    try:
        size = max(len(_pack_encoder.encode(value)), len(_json_encoder.encode(value)))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"cannot be stored as JSON and MessagePack: {exc}") from exc
    if max_bytes is not None and size > max_bytes:
        raise ResultTooLarge(
            f"the result is {size} bytes, over the {max_bytes}-byte cap"
            " (TASKENGINE_MAX_RESULT_BYTES); return less, or store it elsewhere and return a key"
        )


def cap_text(text: str, max_bytes: int) -> str:
    """`text` if its UTF-8 form fits in `max_bytes`, else its head cut at a character boundary
    and a marker saying so, the whole within `max_bytes`."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= max_bytes:
        return text
    marker = f" [truncated from {len(data)} bytes to {max_bytes}]"
    head = data[: max(max_bytes - len(marker.encode()), 0)].decode("utf-8", "ignore")
    return head + marker


def check_json(value: Any) -> Any:
    """Return `value` if it survives a JSON round trip unchanged in kind, else raise."""
    return from_json(to_json(value))


def pack(value: Any) -> bytes:
    """Encode a struct or plain value as MessagePack."""
    return _pack_encoder.encode(value)


def unpack(data: bytes, kind: type[T]) -> T:
    """Decode MessagePack into `kind`, validating it."""
    return msgspec.msgpack.decode(data, type=kind)
