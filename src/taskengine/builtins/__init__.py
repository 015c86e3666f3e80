"""The built-in task types: CPU work, HTTP, files, SQLite and timers, behind safety rules.

`builtin_registry(config)` returns a Registry with every type; call `close_builtins(registry)`
at shutdown to close the shared HTTP connection pool. Errors a retry cannot fix are
ValidationError subclasses: TaskRefused (a safety rule said no) and TaskInputError.
"""

from __future__ import annotations

from taskengine.builtins import cpu, timed
from taskengine.builtins.config import BuiltinConfig, TaskInputError, TaskRefused
from taskengine.builtins.files import FileTask
from taskengine.builtins.http import (
    HttpRequestFailed,
    HttpStatusFailed,
    HttpStatusRefused,
    HttpTask,
    Resolver,
    system_resolver,
)
from taskengine.builtins.sqlite_query import SqliteTask
from taskengine.registry import Registry, build_spec

__all__ = [
    "BuiltinConfig",
    "HttpRequestFailed",
    "HttpStatusFailed",
    "HttpStatusRefused",
    "TaskInputError",
    "TaskRefused",
    "builtin_registry",
    "close_builtins",
]

_CPU_TIMEOUT = 10 * 60.0
_IO_TIMEOUT = 5 * 60.0


def builtin_registry(config: BuiltinConfig, resolver: Resolver = system_resolver) -> Registry:
    """Return a new Registry holding every built-in task type, bound to `config`."""
    registry = Registry()
    for name, fn in (
        ("cpu.primes", cpu.primes),
        ("cpu.fibonacci", cpu.fibonacci),
        ("cpu.sha256", cpu.sha256),
    ):
        registry.register(build_spec(fn, name=name, executor="process", timeout=_CPU_TIMEOUT))
    http = HttpTask(config, resolver)
    # io.http's breakers are per host (HttpTask.breakers): one bad host must not stall the type
    registry.register(
        build_spec(http.run, name="io.http", executor="async", timeout=_IO_TIMEOUT, breaker=False)
    )
    registry.register(
        build_spec(FileTask(config).run, name="io.file", executor="thread", timeout=_IO_TIMEOUT)
    )
    registry.register(
        build_spec(SqliteTask(config).run, name="io.sqlite", executor="thread", timeout=_IO_TIMEOUT)
    )
    registry.register(build_spec(timed.sleep, name="time.sleep", executor="async", timeout=7200))
    registry.register(build_spec(timed.batch, name="time.batch", executor="async"))
    return registry


async def close_builtins(registry: Registry) -> None:
    """Close the shared HTTP client of the registry's `io.http` type, if it has one."""
    if "io.http" not in registry:
        return
    owner = getattr(registry.get("io.http").fn, "__self__", None)
    if isinstance(owner, HttpTask):
        await owner.aclose()
