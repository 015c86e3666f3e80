"""What the stream's settings mean for the broker: refusal of those that lose operations,
and the durability window. Pure functions of the stream's configuration and state."""

from __future__ import annotations

from typing import Any

import msgspec

from taskengine.errors import ConfigurationError


class StreamCheck(msgspec.Struct, frozen=True):
    """What start() found: the durability window in words, and what it tolerated."""

    window: str
    unsafe: list[str]  # reasons it would have refused, tolerated by allow_unsafe


def check_stream(config: Any, first_seq: int, allow_unsafe: bool) -> StreamCheck:
    """Refuse a stream that can drop operations of the log (memory storage, limits that
    discard old messages, an age limit); describe what survives what."""
    unsafe: list[str] = []
    storage = _name(config.storage)
    if storage == "memory":
        unsafe.append("memory storage: a server restart loses every task")
    if config.max_age:
        unsafe.append(f"max_age={config.max_age}s removes old operations")
    limited = [
        name
        for name in ("max_msgs", "max_bytes", "max_msgs_per_subject")
        if (getattr(config, name, None) or -1) > 0
    ]
    if limited and _name(config.discard) != "new":
        unsafe.append(f"{', '.join(limited)} with discard=old removes old operations")
    if unsafe and not allow_unsafe:
        raise ConfigurationError(
            f"NATS stream {config.name!r} can lose acknowledged tasks: {'; '.join(unsafe)}. "
            "Fix the stream (file storage, no limits, or discard=new) or pass allow_unsafe=true"
        )
    if first_seq > 1:
        raise ConfigurationError(
            f"NATS stream {config.name!r} no longer holds its first operations (first sequence "
            f"{first_seq}): the tasks cannot be rebuilt from it"
        )
    replicas = config.num_replicas or 1
    if storage == "memory":
        window = "none: memory storage, a server restart loses every task"
    elif replicas >= 3:
        window = (
            f"file storage, R{replicas}: an acknowledged task is on a majority of servers; "
            "one server lost loses nothing"
        )
    else:
        window = (
            f"file storage, R{replicas}: a server crash loses nothing written, a power loss "
            "may lose writes not yet fsynced (the server's sync_interval, 2 min by default, "
            "unless sync_interval: always)"
        )
    return StreamCheck(window, unsafe)


def _name(value: Any) -> str:
    """An enum of nats-py (or its raw string) as its lower-case value."""
    return str(getattr(value, "value", value)).lower()
