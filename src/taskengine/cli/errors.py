"""Exit codes and the one place that turns engine errors into a one-line message and a code."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from taskengine.errors import (
    BrokerUnavailable,
    ConfigurationError,
    QueueFull,
    TaskEngineError,
    TaskNotFound,
    ValidationError,
)

EXIT_OK = 0
EXIT_FAILURE = 1  # the task failed, is unknown, or the action did not apply
EXIT_USAGE = 2  # bad input: options, payload, task type, broker URL (click uses 2 too)
EXIT_QUEUE_FULL = 3  # backpressure: try again later
EXIT_UNAVAILABLE = 4  # the broker cannot be reached
EXIT_INTERNAL = 70  # a bug: an exception the engine did not raise on purpose
EXIT_INTERRUPTED = 130

# Most specific first: the first class an error is an instance of decides its exit code.
EXIT_CODES: tuple[tuple[type[TaskEngineError], int], ...] = (
    (QueueFull, EXIT_QUEUE_FULL),
    (BrokerUnavailable, EXIT_UNAVAILABLE),
    (ConfigurationError, EXIT_USAGE),
    (ValidationError, EXIT_USAGE),
    (TaskNotFound, EXIT_FAILURE),
    (TaskEngineError, EXIT_FAILURE),
)


class CliError(Exception):
    """A one-line failure with its own exit code, raised by commands (shown by EngineGroup)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def fail(message: str, exit_code: int = EXIT_FAILURE) -> NoReturn:
    """Stop the command with `message` on stderr and `exit_code`."""
    raise CliError(message, exit_code)


def exit_code_of(exc: TaskEngineError) -> int:
    """The exit code for an engine error."""
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_FAILURE  # pragma: no cover - TaskEngineError is the last row


def message_of(exc: BaseException) -> str:
    """One line of text for an error (the first line of its message)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class EngineGroup(click.Group):
    """The root group: every error below it ends as one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            raise _exit(exc.message, exc.exit_code) from None
        except TaskEngineError as exc:
            raise _exit(message_of(exc), exit_code_of(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            if ctx.find_root().params.get("traceback"):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {message_of(exc)}"
                " (run with --traceback for details)",
                err=True,
            )
            sys.stderr.flush()
            raise click.exceptions.Exit(EXIT_INTERNAL) from None


def _exit(message: str, code: int) -> click.exceptions.Exit:
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(code)
