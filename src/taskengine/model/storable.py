"""Which value of a payload brokers cannot store, said so a user can find it.

`serializer.check_storable` decides; this names the culprit, on the error path only: the first
integer outside MessagePack's range or string with a lone surrogate, by its JSON path.
"""

from __future__ import annotations

import json
import math
from typing import Any

INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # the integers MessagePack can hold
_SHOWN_DIGITS = 40


def find_unstorable(value: Any, path: str = "$") -> str | None:
    """Describe the first value under `value` that cannot be stored (with its path), or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, bool):
            continue
        if isinstance(node, int):
            if not INT_MIN <= node <= INT_MAX:
                return f"{where}: the integer {_shown(node)} cannot be stored " + (
                    "(integers must be from -2**63 to 2**64-1)"
                )
        elif isinstance(node, str):
            if (bad := _lone_surrogate(node)) is not None:
                return (
                    f"{where}: the string cannot be stored: it holds a lone surrogate "
                    f"\\u{bad:04x} (not valid Unicode)"
                )
        elif isinstance(node, dict):
            children: list[tuple[Any, str]] = []
            for key, child in node.items():
                if isinstance(key, str) and _lone_surrogate(key) is not None:
                    children.append((key, f"{where} (a key)"))
                children.append((child, f"{where}.{key}"))
            stack.extend(reversed(children))
        elif isinstance(node, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in reversed(list(enumerate(node))))
    return None


def loads_with_lone_surrogates(data: bytes | str) -> Any:
    """Decode strict JSON (UTF-8, no NaN or infinities) that may escape lone surrogates.

    `"\\ud800"` is valid JSON syntax that msgspec will not decode; callers fall back on this
    after msgspec refused a document, so that such a value is refused as unstorable (naming
    it) rather than as malformed JSON. Raise ValueError for anything else msgspec refuses.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data  # no UTF-16 guessing
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999: msgspec refuses it too
        raise ValueError(f"{text} is out of range")
    return number


def _lone_surrogate(text: str) -> int | None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return ord(text[exc.start])
    return None


def _shown(number: int) -> str:
    if number.bit_length() > 4 * _SHOWN_DIGITS:  # str() of a huge one is slow, or refused
        sign = "-" if number < 0 else ""
        return f"{sign}2**{number.bit_length() - 1} or more in size"
    return str(number)
