"""A user's App runs only the user's task types; the built-ins are asked for (as `serve` does)."""

import os
import subprocess
import sys

from taskengine import App
from taskengine.cli.loading import CliState, load_app
from taskengine.testing import memory_app

BUILTIN = {"cpu.primes", "io.http", "io.file", "io.sqlite", "time.sleep"}


def test_a_users_app_has_only_the_users_task_types() -> None:
    app = App("memory://")

    @app.task("email.send")
    async def send(payload: dict[str, str]) -> None: ...

    assert app.registry.names() == ["email.send"]
    assert not BUILTIN & set(memory_app().registry.names())


def test_builtins_are_there_when_asked_for() -> None:
    assert set(App("memory://", builtins=True).registry.names()) >= BUILTIN
    assert set(memory_app(builtins=True).registry.names()) >= BUILTIN


def test_the_cli_without_an_app_keeps_the_builtins() -> None:
    """`taskengine serve` / `submit` with no --app: the quick start's task types are there."""
    assert set(load_app(CliState(broker="memory://")).registry.names()) >= BUILTIN


def test_an_app_without_builtins_or_process_tasks_does_not_load_them() -> None:
    """What an idle engine holds in memory: the built-ins' code (HTTP, files, SQLite) and the
    process pool's (pebble, multiprocessing) load only where they can be used."""
    script = """
import asyncio, sys
from taskengine import App

async def main():
    app = App("memory://")

    @app.task("quick")
    async def quick(payload): ...

    async with app:
        engine = app.engine()
        await engine.start()
        await engine.stop()

asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith(("taskengine.builtins", "pebble"))))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
