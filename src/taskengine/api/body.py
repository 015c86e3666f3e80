"""Reading request bodies safely: a size cap while streaming, strict JSON, a depth limit."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from taskengine.api.errors import ApiError
from taskengine.model.storable import loads_with_lone_surrogates

T = TypeVar("T")
_decoder = msgspec.json.Decoder()


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Return the body; 413 as soon as it passes `max_bytes` (never buffered past the cap)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise _too_large(max_bytes)
        except ValueError:
            raise ApiError(400, "invalid_request", "invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, max_depth: int) -> Any:
    """Decode strict JSON (UTF-8, no NaN/Infinity) no deeper than `max_depth`; 400 otherwise."""
    if not body.strip():
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        value = _decoder.decode(body)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the request body is not valid UTF-8") from None
    except msgspec.DecodeError as exc:
        try:  # lone surrogates: refused later, as unstorable values (422), naming them
            value = loads_with_lone_surrogates(body)
        except ValueError:
            raise ApiError(400, "invalid_json", f"invalid JSON: {exc}") from None
    if _depth_exceeds(value, max_depth):
        raise _too_deep(max_depth)
    return value


def convert(value: Any, kind: type[T]) -> T:
    """Validate decoded JSON against a request type; 422 with the offending path otherwise."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None


def check_json_content(request: Request) -> None:
    """415 unless the body is declared as JSON (a missing Content-Type is taken as JSON)."""
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body is larger than {max_bytes} bytes")


def _too_deep(max_depth: int) -> ApiError:
    return ApiError(400, "json_too_deep", f"JSON nested deeper than {max_depth} levels")


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """Walk the containers only (scalars cost nothing); stop at the first breach."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
