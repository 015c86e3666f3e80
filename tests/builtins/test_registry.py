"""builtin_registry: the names, executors and the shared HTTP client's lifecycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from taskengine.builtins import BuiltinConfig, TaskRefused, builtin_registry, close_builtins
from taskengine.builtins.http import HttpTask
from taskengine.errors import ValidationError


def test_every_builtin_type_is_registered(tmp_path: Path) -> None:
    registry = builtin_registry(BuiltinConfig(data_dir=str(tmp_path)))
    assert registry.names() == [
        "cpu.fibonacci",
        "cpu.primes",
        "cpu.sha256",
        "io.file",
        "io.http",
        "io.sqlite",
        "time.batch",
        "time.sleep",
    ]
    executors = {name: registry.get(name).executor for name in registry.names()}
    assert executors["io.http"] == "async"
    assert executors["io.sqlite"] == executors["io.file"] == "thread"


def test_refusals_are_not_retryable_validation_errors() -> None:
    error = TaskRefused("ssrf", "no")
    assert isinstance(error, ValidationError)
    assert (error.code, error.reason) == ("task_refused", "ssrf")


async def test_close_builtins_closes_the_shared_client(tmp_path: Path) -> None:
    registry = builtin_registry(BuiltinConfig(data_dir=str(tmp_path)))
    http = getattr(registry.get("io.http").fn, "__self__", None)
    assert isinstance(http, HttpTask)
    client = http.client()
    assert http.client() is client  # one shared client
    await close_builtins(registry)
    assert client.is_closed
    await close_builtins(registry)  # idempotent


def test_importing_the_builtins_does_not_import_httpx() -> None:
    code = "import sys, taskengine.builtins; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
