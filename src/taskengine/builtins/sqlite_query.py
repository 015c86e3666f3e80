"""The `io.sqlite` task type: one parameterised statement against a database in the data dir.

Layers of defence: the database file is opened and checked as `io.file` opens files (in the
data directory, no symlink followed, one link, never the engine's own store) and SQLite is
shown to hold that very file (see `sqlite_open`); the connection is read-only (`mode=ro` and
`PRAGMA query_only`) unless writes are enabled; exactly one statement is accepted; an
authorizer allows only reads (or, with writes enabled, refuses ATTACH, DETACH, PRAGMA and
extension loading); a timer interrupts the statement at the time limit (a progress handler is
not called inside one long expression such as `hex(randomblob(N))`; SQLite notices the
interrupt when that expression ends, and its length limit, set to the byte cap, keeps every
value, so every expression, small: a bigger one is refused before it is built); rows are read
until `max_rows` or the byte cap, whichever comes first.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import PurePosixPath
from typing import Annotated, Any

import msgspec

from taskengine.builtins import sqlite_open
from taskengine.builtins.config import BuiltinConfig, TaskInputError, TaskRefused
from taskengine.builtins.files import open_confined

Scalar = str | int | float | bool | None
_READ_ONLY_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_ALWAYS_DENIED = frozenset({sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_PRAGMA})
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})
# The authorizer's action codes only: sqlite3 also exports SQLITE_LIMIT_* and result codes
# with the same small integers, so a table built from every SQLITE_* name mislabels them.
_AUTHORIZER_ACTIONS = (
    "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE",
    "CREATE_TEMP_TRIGGER", "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "DELETE",
    "DROP_INDEX", "DROP_TABLE", "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER",
    "DROP_TEMP_VIEW", "DROP_TRIGGER", "DROP_VIEW", "INSERT", "PRAGMA", "READ", "SELECT",
    "TRANSACTION", "UPDATE", "ATTACH", "DETACH", "ALTER_TABLE", "REINDEX", "ANALYZE",
    "CREATE_VTABLE", "DROP_VTABLE", "FUNCTION", "SAVEPOINT", "RECURSIVE",
)  # fmt: skip
_ACTION_NAMES = {getattr(sqlite3, f"SQLITE_{name}"): name for name in _AUTHORIZER_ACTIONS}
_FETCH_BATCH = 256
_RESULT_OVERHEAD = 100  # bytes of the result around its rows ("rowcount", "truncated", ...)
_encoder = msgspec.json.Encoder()


class SqlitePayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One SQL statement with its parameters (positional list or named dict)."""

    database: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    sql: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    params: list[Scalar] | dict[str, Scalar] = []
    max_rows: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None


class SqliteTask:
    """Runs `io.sqlite` payloads under one BuiltinConfig (a thread-executor handler)."""

    def __init__(self, config: BuiltinConfig) -> None:
        self.config = config

    def run(self, payload: SqlitePayload) -> dict[str, Any]:
        """Execute the statement; refusals raise TaskRefused, bad SQL TaskInputError."""
        sql = single_statement(payload.sql)
        writes = self.config.sqlite_allow_writes
        max_rows = min(payload.max_rows or self.config.sqlite_max_rows, self.config.sqlite_max_rows)
        if not PurePosixPath(payload.database).parts:
            raise TaskInputError("the data directory is not a database")
        # A new database is created here (empty), so SQLite never creates a file by name.
        flags = os.O_RDONLY | (os.O_CREAT if writes else 0)
        fd, info = open_confined(self.config, payload.database, flags)
        try:
            conn = sqlite_open.connect_verified(
                fd, info, writes=writes, timeout=self.config.sqlite_time_limit
            )
        except sqlite3.Error as exc:
            raise TaskInputError(f"cannot open {payload.database}: {exc}") from None
        denied: list[str] = []
        alarm = _Alarm(conn, self.config.sqlite_time_limit)
        try:
            self._harden(conn, denied, writes)
            cursor = conn.execute(sql, payload.params)
            columns = [d[0] for d in cursor.description or ()]
            budget = self.config.sqlite_max_bytes - len(_encoder.encode(columns)) - _RESULT_OVERHEAD
            rows, truncated = _read_rows(cursor, max_rows, budget)
            rowcount = len(rows) if cursor.description else cursor.rowcount
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise _sql_error(exc, denied, payload.database, self.config.sqlite_max_bytes) from None
        finally:
            alarm.close_connection()
        return {"columns": columns, "rows": rows, "rowcount": rowcount, "truncated": truncated}

    def _harden(self, conn: sqlite3.Connection, denied: list[str], writes: bool) -> None:
        """Limits, read-only pragma and authorizer, before any user SQL runs."""
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.config.sqlite_max_bytes)
        if hasattr(conn, "enable_load_extension"):  # absent when Python is built without it
            conn.enable_load_extension(False)
        if not writes:
            conn.execute("PRAGMA query_only = ON")

        def authorize(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
                denied.append(f"function {arg2}")
                return sqlite3.SQLITE_DENY
            refused = action in _ALWAYS_DENIED or (not writes and action not in _READ_ONLY_ACTIONS)
            if refused:
                what = action_name(action) + (f" {arg1}" if arg1 else "")
                if what not in denied:
                    denied.append(what)
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        conn.set_authorizer(authorize)


class _Alarm:
    """Interrupts a connection's statement once `seconds` have passed, from a timer thread.

    The lock keeps `interrupt` and `close` apart: interrupting a connection while another
    thread closes it would touch freed memory.
    """

    def __init__(self, conn: sqlite3.Connection, seconds: float) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._interrupt)
        self._timer.daemon = True
        self._timer.start()

    def _interrupt(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.interrupt()

    def close_connection(self) -> None:
        """Stop the timer and close the connection."""
        self._timer.cancel()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            sqlite_open.close(conn)


def _read_rows(cursor: sqlite3.Cursor, max_rows: int, budget: int) -> tuple[list[Any], bool]:
    """Read rows until there are none left (False), or until `max_rows` or `budget` bytes of
    JSON would be passed (True, "truncated"); no row past the cap is kept."""
    rows: list[Any] = []
    used = 0
    while batch := cursor.fetchmany(_FETCH_BATCH):
        for row in batch:
            used += len(_encoder.encode(row)) + 1  # and its comma
            if len(rows) >= max_rows or used > budget:
                return rows, True
            rows.append(list(row))
    return rows, False


def action_name(action: int) -> str:
    """The name of an SQLite authorizer action code (e.g. 9 -> "DELETE"); unknown ones as digits."""
    return _ACTION_NAMES.get(action, str(action))


def single_statement(sql: str) -> str:
    """Return `sql` stripped if it is exactly one statement; refuse anything after it."""
    text = sql.strip()
    if not text:
        raise TaskInputError("empty SQL")
    for i, char in enumerate(text):
        if char == ";" and sqlite3.complete_statement(text[: i + 1]):
            if text[i + 1 :].strip():
                raise TaskRefused("multiple_statements", "only one SQL statement is allowed")
            return text[:i]
    return text


def _sql_error(exc: Exception, denied: list[str], database: str, max_bytes: int) -> Exception:
    message = str(exc)
    if denied:
        return TaskRefused("sql_denied", f"not allowed in io.sqlite: {', '.join(denied)}")
    if message == "interrupted":
        return TaskRefused("time_limit", f"the statement on {database} ran past its time limit")
    if message == "string or blob too big":
        return TaskRefused("too_large", f"{database}: a value or row is over {max_bytes} bytes")
    if "readonly" in message or "read-only" in message or "query_only" in message:
        return TaskRefused("read_only", f"{database} is opened read-only: {message}")
    if "one statement at a time" in message:
        return TaskRefused("multiple_statements", "only one SQL statement is allowed")
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return exc  # contention: worth a retry
    return TaskInputError(f"{database}: {message}")
