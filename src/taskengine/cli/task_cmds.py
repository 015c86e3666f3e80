"""Client commands about single tasks: submit, status, list, cancel, retry."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec

from taskengine.cli import output
from taskengine.cli.client import Client, open_client, with_client
from taskengine.cli.errors import EXIT_FAILURE, EXIT_USAGE, fail
from taskengine.cli.loading import check_cursor, json_option, state_of, wants_json

if TYPE_CHECKING:
    from taskengine.brokers import CancelResult, Page, ReplayResult
    from taskengine.model import TaskRecord
    from taskengine.views import Submitted

PRIORITIES = click.Choice(["high", "normal", "low"], case_sensitive=False)
STATE_NAMES = click.Choice(list(output.STATES), case_sensitive=False)


def moment(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A point in time as the API takes it (an ISO 8601 date-time with an offset, or epoch
    seconds) as epoch seconds; a usage error (exit 2) for anything else."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise click.BadParameter(
                f"{value!r} is neither a date-time with an offset (2026-01-31T12:00:00Z) "
                "nor seconds since the epoch",
                ctx,
                param,
            ) from None
        return when.timestamp()
    if not math.isfinite(seconds):
        raise click.BadParameter(f"{value!r} is not a time", ctx, param)
    return seconds


def time_range_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--created-after (inclusive) and --created-before (exclusive), as GET /api/tasks has."""
    fn = click.option(
        "--created-before",
        metavar="TIME",
        callback=moment,
        help="Created before this time (exclusive): 2026-01-31T12:00:00Z or epoch seconds.",
    )(fn)
    return click.option(
        "--created-after",
        metavar="TIME",
        callback=moment,
        help="Created at or after this time: 2026-01-31T12:00:00Z or epoch seconds.",
    )(fn)


def parse_payload(payload: str | None, payload_file: str | None) -> Any:
    """The payload from `--payload` or `--payload-file` (`-` for stdin), decoded from JSON."""
    if payload is not None and payload_file is not None:
        fail("give --payload or --payload-file, not both", EXIT_USAGE)
    if payload_file is not None:
        try:
            payload = sys.stdin.read() if payload_file == "-" else Path(payload_file).read_text()
        except OSError as exc:
            fail(f"cannot read payload file {payload_file}: {exc.strerror or exc}", EXIT_USAGE)
    if payload is None:
        return None
    try:
        return msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeEncodeError) as exc:
        from taskengine.model.storable import loads_with_lone_surrogates

        try:  # lone surrogates: refused at submit as unstorable values, naming them
            return loads_with_lone_surrogates(payload)
        except ValueError:
            fail(f"invalid JSON payload: {exc}", EXIT_USAGE)


def parse_time(value: str) -> float:
    """Epoch seconds, or an ISO 8601 date-time (local time unless it has an offset)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        fail(f"invalid --run-at {value!r}: use epoch seconds or ISO 8601", EXIT_USAGE)


@click.command()
@click.argument("task_type", metavar="TYPE")
@click.option("--payload", help="The payload as JSON.")
@click.option("--payload-file", help="Read the JSON payload from a file ('-': stdin).")
@click.option("--priority", type=PRIORITIES, help="high, normal or low (default: the type's).")
@click.option("--queue", help="Queue name (default: the type's).")
@click.option(
    "--delay", type=click.FloatRange(min=0), help="Run no sooner than this many seconds from now."
)
@click.option("--run-at", help="Run no sooner than this time (ISO 8601 or epoch seconds).")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds one attempt may take."
)
@click.option(
    "--max-attempts", type=click.IntRange(min=1), help="Attempts before the task is dead-lettered."
)
@click.option("--idempotency-key", help="A repeated key returns the first task's id.")
@click.option(
    "--depends-on",
    "depends_on",
    multiple=True,
    metavar="ID",
    help="A task that must succeed first (repeatable); until then this one is blocked.",
)
@click.option(
    "--on-parent-failure",
    type=click.Choice(["cancel", "run"]),
    default="cancel",
    show_default=True,
    help="When a parent ends dead or cancelled: cancel this task, or run it anyway.",
)
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option(
    "--wait-timeout", type=click.FloatRange(min=0), help="Give up waiting after this many seconds."
)
@json_option
@click.pass_context
def submit(
    ctx: click.Context,
    task_type: str,
    payload: str | None,
    payload_file: str | None,
    priority: str | None,
    queue: str | None,
    delay: float | None,
    run_at: str | None,
    timeout: float | None,
    max_attempts: int | None,
    idempotency_key: str | None,
    depends_on: tuple[str, ...],
    on_parent_failure: str,
    wait: bool,
    wait_timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a task of a registered TYPE; print its id (or its result with --wait)."""
    from taskengine.app import TaskRequest
    from taskengine.model import ResultStatus, TaskRecord, TaskResult, TaskState

    as_json = wants_json(ctx, as_json)
    if wait_timeout is not None and not wait:
        fail("--wait-timeout needs --wait", EXIT_USAGE)
    request = TaskRequest(
        type=task_type,
        payload=parse_payload(payload, payload_file),
        priority=priority,
        queue=queue,
        delay=delay,
        run_at=None if run_at is None else parse_time(run_at),
        timeout=timeout,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        depends_on=list(depends_on) or None,
        on_parent_failure=on_parent_failure,
    )

    async def body(client: Client) -> TaskRecord | Submitted:
        answer = await client.submit(request)
        if not wait:
            return answer
        return await wait_for(client, answer.id, wait_timeout, spinner=not as_json)

    client = open_client(state_of(ctx))
    client.check(request)  # validate before touching the broker: nothing is created on bad input
    found = with_client(state_of(ctx), body, client=client)
    if not isinstance(found, TaskRecord):
        if as_json:
            output.print_json(found)  # as POST /api/tasks answers
        else:
            click.echo(found.id)
        return
    result = found.result or TaskResult(
        task_id=found.id, status=ResultStatus.CANCELLED, completed_at=found.updated_at
    )
    if as_json:
        from taskengine.views import result_view

        output.print_json(result_view(result))
    else:
        output.show_result(result)
    if found.state is not TaskState.SUCCEEDED:  # dead or cancelled
        raise click.exceptions.Exit(EXIT_FAILURE)


async def wait_for(
    client: Client, task_id: str, timeout: float | None, *, spinner: bool
) -> TaskRecord:
    """Poll the task until it is finished, showing its state on stderr."""
    from taskengine.model import TERMINAL_STATES

    status = None
    if spinner and sys.stderr.isatty():
        status = output.console(stderr=True).status(f"waiting for {task_id}")
        status.start()
    try:
        async with asyncio.timeout(timeout):
            delay = 0.01
            while True:
                record = await client.get(task_id)
                if record.state in TERMINAL_STATES:
                    return record
                if status is not None:
                    status.update(
                        f"{task_id}: {record.state.value} "
                        f"(attempt {record.attempt}/{record.max_attempts})"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)
    except TimeoutError:
        fail(f"task {task_id} did not finish within {timeout:g}s (it keeps its place)")
    finally:
        if status is not None:
            status.stop()


@click.command()
@click.argument("task_id", metavar="ID")
@json_option
@click.pass_context
def status(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show a task: state, attempts, timestamps, result and history."""

    async def body(client: Client) -> TaskRecord:
        return await client.get(task_id)

    record = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        from taskengine.views import task_view

        output.print_json(task_view(record))
    else:
        output.show_record(record)


@click.command("list")
@click.option("--state", "states", multiple=True, type=STATE_NAMES, help="Repeatable.")
@click.option("--type", "types", multiple=True, help="Task type (repeatable).")
@click.option("--queue", "queues", multiple=True, help="Queue (repeatable).")
@click.option("--priority", "priorities", multiple=True, type=PRIORITIES, help="Repeatable.")
@time_range_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@json_option
@click.pass_context
def list_tasks(
    ctx: click.Context,
    states: tuple[str, ...],
    types: tuple[str, ...],
    queues: tuple[str, ...],
    priorities: tuple[str, ...],
    created_after: float | None,
    created_before: float | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List tasks, newest first, with filters."""
    from taskengine.brokers import TaskFilter
    from taskengine.model import Priority, TaskState

    check_cursor(cursor)
    task_filter = TaskFilter(
        states=frozenset(TaskState(s.lower()) for s in states) or None,
        types=frozenset(types) or None,
        queues=frozenset(queues) or None,
        priorities=frozenset(Priority.parse(p) for p in priorities) or None,
        created_after=created_after,
        created_before=created_before,
    )

    async def body(client: Client) -> Page:
        return await client.list_tasks(task_filter, limit, cursor)

    page = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        from taskengine.views import task_page

        output.print_json(task_page(page))
    else:
        output.show_tasks(page.items, page.next_cursor, title="tasks")


@click.command()
@click.argument("task_id", metavar="ID")
@json_option
@click.pass_context
def cancel(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Cancel a queued task, or ask a running one's worker to stop it."""
    from taskengine.brokers import CancelResult

    async def body(client: Client) -> CancelResult:
        return await client.cancel(task_id)

    answer = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"id": task_id, "result": answer.value})
    messages = {
        CancelResult.CANCELLED: (f"cancelled {task_id}", 0),
        CancelResult.REQUESTED: (f"cancel requested: {task_id} is running; its worker stops it", 0),
        CancelResult.FINISHED: (
            f"task {task_id} already finished: nothing to cancel",
            EXIT_FAILURE,
        ),
        CancelResult.NOT_FOUND: (f"no task {task_id!r}", EXIT_FAILURE),
    }
    message, code = messages[answer]
    report(message, code, quiet=wants_json(ctx, as_json))


@click.command()
@click.argument("task_id", metavar="ID")
@json_option
@click.pass_context
def retry(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Queue a dead or cancelled task again, with a fresh attempt count."""
    from taskengine.brokers import ReplayResult

    async def body(client: Client) -> tuple[ReplayResult, TaskRecord | None]:
        answer = (await client.replay([task_id]))[0]
        replayed = answer is ReplayResult.REPLAYED and wants_json(ctx, as_json)
        return answer, await client.get(task_id) if replayed else None

    answer, record = with_client(state_of(ctx), body)
    if record is not None:  # the task as queued again, like POST /api/tasks/{id}/retry
        from taskengine.views import task_view

        output.print_json(task_view(record))
    messages = {
        ReplayResult.REPLAYED: (f"queued {task_id} again", 0),
        ReplayResult.NOT_REPLAYABLE: (
            f"task {task_id} is not dead or cancelled: nothing to retry",
            EXIT_FAILURE,
        ),
        ReplayResult.NOT_FOUND: (f"no task {task_id!r}", EXIT_FAILURE),
    }
    message, code = messages[answer]
    report(message, code, quiet=wants_json(ctx, as_json))


def report(message: str, code: int, *, quiet: bool) -> None:
    """Say what happened (success on stdout, failure as an error) and exit with `code`."""
    if code:
        fail(message, code)
    if not quiet:
        click.echo(message)
