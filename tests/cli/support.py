"""Helpers for the CLI tests: a CliRunner bound to a temporary SQLite broker, and a test App."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from taskengine.app import App
from taskengine.cli import cli

APP_PATH = "tests.cli.support:app"


async def always_fail(payload: Any) -> None:
    """A task that always raises: with max_attempts=1 it goes straight to the dead letters."""
    raise RuntimeError("boom")


async def echo(payload: Any) -> Any:
    """A task that returns its payload."""
    return payload


def register(app: App) -> App:
    """Add the test task types to `app`."""
    app.task("test.fail", max_attempts=1)(always_fail)
    app.task("test.echo")(echo)
    return app


app = register(App(builtins=False))


def make_app(url: str) -> App:
    """A fresh test App on `url`."""
    return register(App(url, builtins=False))


class Cli:
    """Runs `taskengine --broker <temp sqlite> ...` in-process."""

    def __init__(self, tmp_path: Path, *, app_path: str | None = None) -> None:
        self.url = f"sqlite:///{tmp_path / 't.db'}"
        self.app_path = app_path
        self.runner = CliRunner()

    def invoke(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        """Run the command; the result keeps stdout, stderr and the exit code apart."""
        prefix = ["--broker", self.url]
        if self.app_path is not None:
            prefix += ["--app", self.app_path]
        return self.runner.invoke(cli, [*prefix, *args], input=input, env=env)

    def ok(self, *args: str, input: str | None = None) -> Result:
        """Run the command and assert it exited 0."""
        result = self.invoke(*args, input=input)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        """Run the command with --json and decode its stdout."""
        return json.loads(self.ok(*args, "--json").stdout)

    def submit(self, task_type: str, payload: Any = None, *options: str) -> str:
        """Submit a task and return its id."""
        args = ["submit", task_type, *options]
        if payload is not None:
            args += ["--payload", json.dumps(payload)]
        task_id = self.ok(*args).stdout.strip()
        assert len(task_id) == 26, task_id
        return task_id


def run_worker_until_idle(url: str) -> None:
    """Run the test App's worker in-process until no task is due, then stop it."""

    async def main() -> None:
        test_app = make_app(url)
        async with test_app:
            worker = test_app.engine(workers=2, idle_wait=0.05)
            await worker.start()
            try:
                await worker.run_until_idle(timeout=20)
            finally:
                await worker.stop()

    asyncio.run(main())
