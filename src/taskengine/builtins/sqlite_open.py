"""Connecting `io.sqlite` to the very database file its checks passed, race-free.

SQLite opens a database by name, and resolves symlinks in that name itself, so a name checked
first can be swapped for a symlink (or its directory for one) before SQLite opens it. So the
file is opened here first, as `io.file` opens files: one component at a time from the data
directory without following links, then checked on the open descriptor (regular, one link,
not forbidden). SQLite is pointed at that descriptor as `/proc/self/fd/N`, but even then it
reads the link back into a path and opens the path, which can be swapped again in between.

So the connection is checked after the fact: SQLite opens the main database file while
connecting and keeps that descriptor until it closes, so the regular files this process
opened during `connect` (listed before and after, by descriptor and (st_dev, st_ino)) must be
the checked file and nothing else. If SQLite opened another file, it shows up, and the
connection is not used. Two things fail safe the same way: another thread opening a file at
that moment, and SQLite reusing a descriptor it kept (when a connection closes while others
of the process hold locks on the file, SQLite keeps its descriptor for the next connection to
that file, so no new one appears). Connecting is then tried again, up to `_ATTEMPTS` times,
with the failed connections kept open until the end so that SQLite runs out of kept
descriptors and opens the file afresh; past that the task fails with a retryable error.
`io.sqlite` connects and closes one thread at a time (microseconds each), so its own threads
do not get in each other's way. The one blind spot: SQLite reusing the number of a descriptor
of that same other file, closed meanwhile, while another thread opens the checked file; it
needs this process to have the other file open already.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading

from taskengine.errors import TaskEngineError

_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
_ATTEMPTS = 32
_connecting = threading.Lock()

FileId = tuple[int, int]  # (st_dev, st_ino)


class DatabaseUnverified(TaskEngineError):
    """SQLite could not be shown to hold the checked database file; worth a retry."""

    code = "database_unverified"


def connect_verified(
    fd: int, info: os.stat_result, *, writes: bool, timeout: float
) -> sqlite3.Connection:
    """Connect to the database open as `fd` (fstat `info`), and close `fd`; raise
    DatabaseUnverified unless the file SQLite opened is that one, sqlite3.Error if SQLite
    cannot open it. Close the connection with `close`."""
    uri = f"file:{_FD_DIR}/{fd}?mode={'rw' if writes else 'ro'}"
    checked: FileId = (info.st_dev, info.st_ino)
    failed: list[sqlite3.Connection] = []
    try:
        for _ in range(_ATTEMPTS):
            with _connecting:
                before = _open_files()
                conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
                after = _open_files()
            opened = {file for number, file in after.items() if before.get(number) != file}
            if opened == {checked}:
                return conn
            failed.append(conn)
    finally:
        with _connecting:
            os.close(fd)
            for conn in failed:
                conn.close()
    raise DatabaseUnverified(
        "could not verify that SQLite opened the checked database file (files were opened "
        "while it connected); try again"
    )


def close(conn: sqlite3.Connection) -> None:
    """Close a connection made by `connect_verified` (not while another thread connects)."""
    with _connecting:
        conn.close()


def _open_files() -> dict[int, FileId]:
    """Descriptor -> (st_dev, st_ino) of each regular file this process has open."""
    files: dict[int, FileId] = {}
    for name in os.listdir(_FD_DIR):
        try:
            info = os.stat(f"{_FD_DIR}/{name}")
        except OSError:  # closed since it was listed
            continue
        if stat.S_ISREG(info.st_mode):
            files[int(name)] = (info.st_dev, info.st_ino)
    return files
