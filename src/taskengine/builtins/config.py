"""Configuration of the built-in task types, and the refusal error they raise."""

from __future__ import annotations

import msgspec

from taskengine.errors import ValidationError

MIB = 1024 * 1024


class BuiltinConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the built-in task types may touch: data directory, network and size limits.

    `http_allowed_hosts` lists host names or IP literals exempt from the private-address
    check; `forbidden_paths` are files (e.g. the engine's own store) no task may open.
    """

    data_dir: str = "./data"
    http_allow_private: bool = False
    http_allowed_hosts: frozenset[str] = frozenset()
    http_max_bytes: int = 10 * MIB
    http_timeout: float = 30.0
    http_max_redirects: int = 5
    file_max_bytes: int = 10 * MIB
    sqlite_allow_writes: bool = False
    sqlite_time_limit: float = 5.0
    sqlite_max_rows: int = 10_000
    sqlite_max_bytes: int = MIB  # of the rows returned, as JSON; also SQLite's value size limit
    forbidden_paths: frozenset[str] = frozenset()


class TaskRefused(ValidationError):
    """A built-in task asked for something its safety rules forbid; retrying cannot help.

    `reason` is a stable, machine-readable word (e.g. "ssrf", "path_escape", "sql_denied").
    """

    code = "task_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TaskInputError(ValidationError):
    """A built-in task's input is wrong at run time (missing file, bad SQL); not retryable."""

    code = "task_input_error"
