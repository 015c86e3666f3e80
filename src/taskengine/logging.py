"""Structured logging: JSON lines (a readable console on a terminal), field names in one place,
secrets redacted. The engine logs through the standard library; structlog renders it."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit


def _structlog_without_rich() -> ModuleType:
    """Import structlog with rich hidden from it, unless rich is loaded already.

    structlog.dev imports rich (and pygments) when it is installed, only to pretty-print
    tracebacks on a console. That costs the server ~5 MB of its 50 MB idle budget; the CLI,
    which wants rich, imports it itself.
    """
    if "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog

        return structlog
    finally:
        del sys.modules["rich"]


if TYPE_CHECKING:
    import structlog
else:
    structlog = _structlog_without_rich()

# The field names every log line uses.
TASK_ID = "task_id"
TASK_TYPE = "type"
WORKER_ID = "worker_id"
ATTEMPT = "attempt"
DURATION = "duration"
OUTCOME = "outcome"
ERROR = "error"
REQUEST_ID = "request_id"
METHOD = "method"
PATH = "path"
STATUS = "status"
LATENCY_MS = "latency_ms"
INSTANCE = "instance"

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"pass|secret|token|authorization|api[_-]?key|cookie|credential", re.I)
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s,;]+")


def redact(value: Any, depth: int = 0) -> Any:
    """Replace values under secret-looking keys (recursively) and bearer tokens in strings."""
    if depth > 8:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str) and "earer" in value:
        return _BEARER.sub(r"\1" + REDACTED, value)
    return value


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _redact_processor(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's duplicate of the message with ANSI colours
    redacted = redact(event)
    assert isinstance(redacted, dict)
    return redacted


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Route the standard library's records through structlog: JSON lines unless a terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b([\w-]*(?:pass|secret|token|authorization|api[_-]?key|cookie|credential)[\w-]*"
    r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
)


def redact_text(text: str) -> str:
    """Free text (a traceback, an error message) with secrets replaced as in the logs: bearer
    tokens, URL passwords and the value of secret-looking `key=value` / `key: value` pairs."""
    if "earer" in text:
        text = _BEARER.sub(r"\1" + REDACTED, text)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _SECRET_ASSIGNMENT.sub(r"\1" + REDACTED, text)
