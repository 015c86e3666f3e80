"""Finding what a command drives (the global options, the user's App) and running async code.

The `Client` the commands talk to is in `cli/client.py`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from taskengine.cli.errors import EXIT_USAGE, fail

if TYPE_CHECKING:
    from taskengine.app import App

T = TypeVar("T")


@dataclass(frozen=True)
class CliState:
    """The global options, as every subcommand sees them."""

    broker: str | None = None
    app_path: str | None = None
    json: bool = False
    traceback: bool = False
    api: str | None = None  # drive a remote `taskengine serve` instead of the broker
    token: str | None = None

    def global_args(self) -> list[str]:
        """The global options again, as arguments for a child `taskengine` process."""
        args: list[str] = []
        if self.broker is not None:
            args += ["--broker", self.broker]
        if self.app_path is not None:
            args += ["--app", self.app_path]
        return args


def state_of(ctx: click.Context) -> CliState:
    """The CliState stored by the root group (a default one when a command runs alone)."""
    state = ctx.find_object(CliState)
    return state if state is not None else CliState()


def wants_json(ctx: click.Context, local: bool) -> bool:
    """True if `--json` was given before or after the subcommand."""
    return local or state_of(ctx).json


def load_app(state: CliState) -> App:
    """Build the App for this invocation: the user's (`--app`), or a plain one with built-ins."""
    from taskengine.app import App

    if state.app_path is None:
        return App(state.broker, builtins=True)
    found = _import_attr(state.app_path)
    if callable(found) and not isinstance(found, App):
        found = found()  # a factory
    if not isinstance(found, App):
        fail(
            f"--app {state.app_path}: expected a taskengine App, got {type(found).__name__}",
            EXIT_USAGE,
        )
    if state.broker is None or state.broker == found.settings.broker_url:
        return found
    # Another broker for this invocation: a fresh App sharing the user's task types, so the
    # user's module-level App is never changed.
    app = App(
        settings=found.settings.with_changes(broker_url=state.broker),
        clock=found.clock,
        builtins=False,
    )
    app.registry = found.registry
    app.periodic_tasks = list(found.periodic_tasks)
    return app


def _import_attr(path: str) -> object:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        fail(f"--app {path!r}: use module:attribute, e.g. myproject.tasks:app", EXIT_USAGE)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current project is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"--app {path}: cannot import {module_name!r}: {exc}", EXIT_USAGE)
    try:
        found: object = module
        for part in attr.split("."):
            found = getattr(found, part)
    except AttributeError:
        fail(f"--app {path}: {module_name!r} has no attribute {attr!r}", EXIT_USAGE)
    return found


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a new event loop (uvloop when it is installed)."""
    factory = _uvloop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def check_queue_names(names: Sequence[str]) -> None:
    """Refuse queue names the API refuses (ValidationError: one line, exit 2), before any I/O."""
    from taskengine.model.task import validate_name

    for name in names:
        validate_name("queue", name)


def check_cursor(cursor: str | None) -> None:
    """Refuse a --cursor the API refuses (ValidationError: one line, exit 2), before any I/O."""
    from taskengine.model.ids import check_cursor as check

    if cursor:  # like the API, an empty cursor means the first page
        check(cursor)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--json` to a client command (it may also be given before the subcommand)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)
