"""Brokers: where tasks are stored and claimed. `open_broker(url)` picks one by URL scheme."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from taskengine.brokers.base import (
    DEFAULT_MAX_DEPTH,
    Broker,
    BrokerAdmin,
    BrokerBackend,
    CancelResult,
    Capabilities,
    Control,
    ControlCommand,
    CountRow,
    EnqueueResult,
    InstanceReport,
    Page,
    ReplayResult,
    TaskFilter,
)
from taskengine.errors import ConfigurationError, UnknownBroker

DEFAULT_BROKER_URL = "sqlite:///taskengine.db"

__all__ = [
    "DEFAULT_BROKER_URL",
    "DEFAULT_MAX_DEPTH",
    "Broker",
    "BrokerAdmin",
    "BrokerBackend",
    "CancelResult",
    "Capabilities",
    "Control",
    "ControlCommand",
    "CountRow",
    "EnqueueResult",
    "InstanceReport",
    "Page",
    "ReplayResult",
    "TaskFilter",
    "open_broker",
]


def open_broker(url: str = DEFAULT_BROKER_URL, **options: Any) -> BrokerBackend:
    """Build the broker a URL names (not yet started); its client library is imported only now.

    `memory://` and `sqlite:///path.db` (relative) or `sqlite:////abs/path.db`. Keyword
    options (such as `max_depth`) and query parameters, which win, go to the broker. The
    `timeout` of calls (a deadline) concerns only brokers on a server: the others drop it.
    """
    parts = urlsplit(url)
    params: dict[str, Any] = dict(options)
    params.update(parse_qsl(parts.query))  # the URL is the more specific: it wins
    if parts.scheme in ("memory", "sqlite"):
        params.pop("timeout", None)  # no connection to wait on (ADR 0007)
    if parts.scheme == "memory":
        from taskengine.brokers.memory import MemoryBroker

        return MemoryBroker(**_max_depth(params))
    if parts.scheme == "sqlite":
        from taskengine.brokers.sqlite import SqliteBroker

        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise ConfigurationError(
                f"invalid SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db"
            )
        return SqliteBroker(path, **_max_depth(params))
    if parts.scheme.startswith(("redis+", "rediss+")):  # redis+cluster:// and the like
        raise ConfigurationError(
            f"no broker serves {parts.scheme!r}: Redis Cluster is not supported; use "
            "redis://host:port/db (one server)"
        )
    if parts.scheme in ("redis", "rediss"):
        with _driver("Redis", "redis", "redis"):
            from taskengine.brokers.redis import RedisBroker

        return RedisBroker(url, **_max_depth(params))
    if parts.scheme in ("postgresql", "postgres"):
        with _driver("PostgreSQL", "asyncpg", "postgres"):
            from taskengine.brokers.postgres import PostgresBroker

        return PostgresBroker(url, **_max_depth(params))
    if parts.scheme == "nats":
        with _driver("NATS", "nats", "nats"):
            from taskengine.brokers.nats import NatsBroker

        return NatsBroker(url, **_max_depth(params))
    raise UnknownBroker(
        f"no broker serves {parts.scheme or url!r}: use memory://, sqlite:///, redis://, "
        "postgresql:// or nats://"
    )


@contextlib.contextmanager
def _driver(broker: str, module: str, extra: str) -> Iterator[None]:
    """Turn the absence of a broker's client library into an error naming the extra to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name != module and not (exc.name or "").startswith(f"{module}."):
            raise  # something else is missing: not ours to explain
        raise ConfigurationError(
            f"the {broker} broker needs the {extra!r} extra ({module} is not installed): "
            f"pip install 'task-engine[{extra}]'"
        ) from exc


def _max_depth(params: dict[str, Any]) -> dict[str, Any]:
    if "max_depth" in params:
        try:
            params["max_depth"] = int(params["max_depth"])
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"max_depth must be an integer: {params['max_depth']!r}"
            ) from None
    return params
