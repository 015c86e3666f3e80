"""The SQLite store's files as the broker opened them: noticing that they were removed,
replaced or made unwritable, and naming the store in every storage error.

SQLite keeps writing to a file that was unlinked or renamed under it (WAL mode commits happily
to the unlinked inode), so without this the broker would acknowledge tasks no restart will
find. The guard records (st_dev, st_ino) of the main file, -wal and -shm once they exist and
compares them with what the path names now: one stat per file per commit group (and per read),
never per task. A removed or replaced store stays refused until the process restarts: reopening
the path would answer from an empty or foreign store.

An unwritable file (read-only file system, `chattr +i`) is refused before SQLite touches it:
SQLite writes the WAL index through a shared memory map of the -shm file, and a write fault on
that map is SIGBUS, which kills the process (ADR 0016).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

from taskengine.errors import BrokerUnavailable

log = logging.getLogger("taskengine.brokers.sqlite")

SUFFIXES = ("", "-wal", "-shm")

# Primary result codes that say the store itself is broken or out of reach, not the statement.
_STORE_FAULTS = frozenset(
    {
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_PROTOCOL,
    }
)


class StoreGuard:
    """Checks, from the writer and reader threads, that the store is still the one opened."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._opened: dict[str, tuple[int, int]] = {}  # file name -> (st_dev, st_ino)
        self._lost: str | None = None  # sticky: why the store was removed or replaced
        self._failing: str | None = None  # the last storage error, until a success
        self._lock = threading.Lock()

    def capture(self) -> None:
        """Record the identity of the store's files (after the connections opened them)."""
        opened: dict[str, tuple[int, int]] = {}
        for name in self._names():
            try:
                st = os.stat(name)
            except FileNotFoundError:
                continue  # -wal and -shm appear with the first read; the main file must exist
            opened[name] = (st.st_dev, st.st_ino)
        if self.path not in opened:
            raise BrokerUnavailable(f"SQLite store {self.path} is missing right after opening it")
        self._opened = opened

    def check(self) -> None:
        """Raise BrokerUnavailable if the store was removed, replaced or is not writable.

        Six system calls (a stat and an access per file); the first loss is logged once.
        """
        if self._lost is not None:
            raise BrokerUnavailable(self._lost)
        for name, identity in self._opened.items():
            try:
                st = os.stat(name)
            except FileNotFoundError:
                raise self._lose(f"{name} was removed while open") from None
            if (st.st_dev, st.st_ino) != identity:
                raise self._lose(f"{name} was replaced by another file while open")
            if not os.access(name, os.W_OK):
                raise self._fail(f"{name} is not writable (read-only file system or immutable)")

    def fault(self, exc: BaseException) -> BaseException:
        """The exception a caller should see for `exc` raised by SQLite on this store.

        Storage faults (corruption, I/O, disk full, read-only) become BrokerUnavailable naming
        the store, logged when they start; anything else (a constraint, QueueFull) is unchanged.
        """
        if isinstance(exc, BrokerUnavailable):
            return exc
        if isinstance(exc, sqlite3.Error) and is_store_fault(exc):
            failure = self._fail(str(exc))
            failure.__cause__ = exc
            return failure
        return exc

    def succeeded(self) -> None:
        """Note a commit that worked: the next storage fault is logged again."""
        if self._failing is not None:
            with self._lock:
                if self._failing is not None:
                    log.info("SQLite store %s works again", self.path, extra={"store": self.path})
                self._failing = None

    def closable(self) -> bool:
        """True if closing the last connection is safe: it checkpoints, writing the -shm map,
        unless the store was removed or replaced (SQLite then skips the checkpoint)."""
        return self._lost is not None or all(os.access(n, os.W_OK) for n in self._opened)

    def _names(self) -> list[str]:
        return [self.path + suffix for suffix in SUFFIXES]

    def _lose(self, why: str) -> BrokerUnavailable:
        with self._lock:
            if self._lost is None:
                self._lost = (
                    f"SQLite store {self.path} is lost: {why}; every call is refused until the "
                    "store is restored and the process restarted"
                )
                log.error("%s", self._lost, extra={"store": self.path})
            return BrokerUnavailable(self._lost)

    def _fail(self, why: str) -> BrokerUnavailable:
        message = f"SQLite store {self.path}: {why}"
        with self._lock:
            if self._failing != why:
                log.error("SQLite store %s failing: %s", self.path, why, extra={"store": self.path})
                self._failing = why
        return BrokerUnavailable(message)


def is_store_fault(exc: sqlite3.Error) -> bool:
    """True if SQLite's error says the store is broken or out of reach, not the statement."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return False
    return code & 0xFF in _STORE_FAULTS
