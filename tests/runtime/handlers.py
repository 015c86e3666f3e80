"""Module-level handlers the process executor tests run in child processes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec


class Add(msgspec.Struct, forbid_unknown_fields=True):
    """A typed payload: the child converts the JSON into this before calling the handler."""

    a: int
    b: int


def add(payload: Add) -> dict[str, int]:
    """Return the sum and the pid of the child that computed it."""
    return {"sum": payload.a + payload.b, "pid": os.getpid()}


def fail(payload: Any) -> None:
    """Raise ValueError with the payload in the message."""
    raise ValueError(f"bad value {payload!r}")


def spin(payload: dict[str, str]) -> None:
    """Write this child's pid to payload["pid_file"], then spin forever."""
    Path(payload["pid_file"]).write_text(str(os.getpid()))
    while True:
        pass


def busy(payload: float) -> dict[str, float | int]:
    """Burn CPU for `payload` seconds; return the pid and the start and end times."""
    start = time.monotonic()
    while time.monotonic() - start < payload:
        pass
    return {"pid": os.getpid(), "start": start, "end": time.monotonic()}


def not_json(payload: Any) -> object:
    """Return something JSON cannot encode."""
    return object()


def die(payload: Any) -> None:
    """Exit the child abruptly, as a crash would."""
    os._exit(3)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def unprintable(payload: Any) -> None:
    """Raise an exception whose str() fails."""
    raise _Unprintable


def allocate(payload: int) -> dict[str, int]:
    """Allocate `payload` MB at once (zero-filled, so only the address space is asked for)."""
    block = bytearray(payload * 1024 * 1024)
    return {"allocated": len(block), "pid": os.getpid()}
