"""Progress from process handlers: a throttled reporter in each child and the parent's reader.

A child sends each report as one datagram on a Unix socket the parent's executor binds in a
private directory: a datagram is whole or not sent, needs no lock (a child killed mid-send
cannot block the others) and never blocks the handler (`MSG_DONTWAIT`: a full socket drops a
report, and the next one replaces it). A run sends at most one report every 0.2 s; the latest
one, sent or not, also comes back in the run's reply on pebble's pipe (process_pool), so the
last report is never lost to the throttle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from taskengine.runtime.child_limits import limit_child

SEND_EVERY = 0.2  # seconds between two reports a child sends of one run
_MAX_DATAGRAM = 4096  # a report: two ids, three numbers and a note of at most 200 characters
STOP = b"stop"

log = logging.getLogger("taskengine.runtime")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(tuple[str, str, int, int, int, str | None])
_socket: socket.socket | None = None  # in a child: where reports go (set by `init_child`)
_address = ""


class RunKey(NamedTuple):
    """Which run a child's reports belong to."""

    task_id: str
    token: str
    attempt: int


# (task_id, token, attempt, done, total, note): what the parent hands a report to.
OnProgress = Callable[[str, str, int, int, int, "str | None"], None]


def init_child(memory_mb: int, cpu_seconds: int, address: str) -> None:
    """Pebble's initializer in each new child: its caps, and the parent's progress socket."""
    global _socket, _address
    limit_child(memory_mb, cpu_seconds)
    if address:
        _socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        _address = address


class ChildReporter:
    """In the child: a run's `ctx.progress` callback (sends at most every SEND_EVERY s)."""

    def __init__(self, run: RunKey) -> None:
        self.run = run
        self.latest: tuple[int, int, str | None] | None = None
        self._sent_at = float("-inf")

    def __call__(self, done: int, total: int, note: str | None) -> None:
        self.latest = (done, total, note)
        now = time.monotonic()
        if _socket is None or now - self._sent_at < SEND_EVERY:
            return
        self._sent_at = now
        data = _encoder.encode((*self.run, done, total, note))
        with contextlib.suppress(OSError):  # full or gone: the next report replaces it
            _socket.sendto(data, socket.MSG_DONTWAIT, _address)


class ProgressReader:
    """In the parent: binds the socket and hands each child's report to `on_progress` from a
    daemon thread (the callback must be thread-safe)."""

    def __init__(self, on_progress: OnProgress) -> None:
        self._on_progress = on_progress
        self._dir = tempfile.mkdtemp(prefix="te-progress-")
        self.address = os.path.join(self._dir, "s")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.address)
        self._thread = threading.Thread(target=self._read, name="taskengine:progress", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self._socket.recv(_MAX_DATAGRAM)
            except OSError:
                return
            if data == STOP:
                return
            try:
                self._on_progress(*_decoder.decode(data))
            except Exception:  # a malformed datagram or a failing callback: drop that report
                log.debug("dropped a progress report from a child", exc_info=True)

    def close(self) -> None:
        """Stop the thread and remove the socket."""
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stopper,
        ):
            stopper.sendto(STOP, self.address)
        self._thread.join(1.0)
        self._socket.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def reporter(run: Any) -> ChildReporter | None:
    """The reporter of a run whose handler takes a context, or None."""
    return None if run is None else ChildReporter(RunKey(*run))
