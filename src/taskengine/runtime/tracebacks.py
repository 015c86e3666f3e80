"""The traceback a failed attempt keeps: formatted, secrets redacted as in the logs, and
capped at 8 KiB with its tail kept (the frame that raised and the error are at the end)."""

from __future__ import annotations

import traceback

from taskengine.errors import ResourceCapExceeded, TaskFailed, TaskTimeout
from taskengine.logging import redact_text

MAX_TRACEBACK_BYTES = 8 * 1024


def format_traceback(exc: BaseException) -> str | None:
    """The traceback of `exc` for its attempt's history line, or None when the handler's code
    is not in it (a timeout, a cap passed, a child process that died, an unknown type). A
    handler's error in a child process brings the child's traceback. Never raises."""
    try:
        if isinstance(exc, TaskFailed):
            if not exc.child_traceback:
                return None
            text = exc.child_traceback
        elif exc.__traceback__ is None or isinstance(exc, TaskTimeout | ResourceCapExceeded):
            return None
        else:
            text = "".join(traceback.format_exception(exc))
        return cap_tail(redact_text(text), MAX_TRACEBACK_BYTES)
    except Exception:  # an exception whose str() or frames cannot be formatted
        return None


def cap_tail(text: str, max_bytes: int) -> str:
    """`text` if its UTF-8 form fits in `max_bytes`, else its tail cut at a character boundary
    after a first line saying how much was cut, the whole within `max_bytes`."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= max_bytes:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    marker = f"[a traceback of {len(data)} bytes: its head was cut]\n"
    keep = max_bytes - len(marker.encode())
    tail = data[len(data) - keep :].decode("utf-8", "ignore")
    return marker + tail
