"""Client commands about the system: dead letters, workers, queues (pause, resume), limits,
metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import click

from taskengine.cli import output
from taskengine.cli.client import Client, with_client
from taskengine.cli.errors import EXIT_FAILURE, EXIT_USAGE, fail
from taskengine.cli.loading import (
    check_cursor,
    check_queue_names,
    json_option,
    state_of,
    wants_json,
)

if TYPE_CHECKING:
    from taskengine.brokers import Page, ReplayResult
    from taskengine.model.limits import Limit
    from taskengine.views import LimitView, QueueView, WorkerView


@click.group()
def dlq() -> None:
    """The dead-letter queue: tasks whose attempts ran out or that cannot be retried."""


@dlq.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@json_option
@click.pass_context
def dlq_list(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """List dead tasks, newest first."""
    from taskengine.brokers import TaskFilter
    from taskengine.model import TaskState

    check_cursor(cursor)

    async def body(client: Client) -> Page:
        dead = TaskFilter(states=frozenset({TaskState.DEAD}))
        return await client.list_tasks(dead, limit, cursor)

    page = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        from taskengine.views import task_page

        output.print_json(task_page(page))
    else:
        output.show_tasks(page.items, page.next_cursor, title="dead letters")


@dlq.command("replay")
@click.argument("task_ids", metavar="ID...", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead task.")
@json_option
@click.pass_context
def dlq_replay(
    ctx: click.Context, task_ids: tuple[str, ...], replay_all: bool, as_json: bool
) -> None:
    """Queue dead tasks again (by ID, or --all), each with a fresh attempt count."""
    from taskengine.brokers import ReplayResult

    if replay_all == bool(task_ids):
        fail("give task ids or --all (not both)", EXIT_USAGE)

    async def body(client: Client) -> list[tuple[str, ReplayResult]]:
        ids = list(task_ids) if task_ids else await all_dead(client)
        return list(zip(ids, await client.replay(ids), strict=True))

    answers = with_client(state_of(ctx), body)
    replayed = [task_id for task_id, answer in answers if answer is ReplayResult.REPLAYED]
    refused = [
        (task_id, answer) for task_id, answer in answers if answer is not ReplayResult.REPLAYED
    ]
    if wants_json(ctx, as_json):
        output.print_json({"results": {task_id: answer.value for task_id, answer in answers}})
    else:
        click.echo(f"replayed {len(replayed)} task{'s' if len(replayed) != 1 else ''}")
    for task_id, answer in refused:
        reason = "no such task" if answer is ReplayResult.NOT_FOUND else "not dead or cancelled"
        click.echo(f"error: {task_id}: {reason}", err=True)
    if refused:
        raise click.exceptions.Exit(EXIT_FAILURE)


async def all_dead(client: Client) -> list[str]:
    """Every dead task's id, page by page."""
    from taskengine.brokers import TaskFilter
    from taskengine.model import TaskState

    dead = TaskFilter(states=frozenset({TaskState.DEAD}))
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await client.list_tasks(dead, 1000, cursor)
        ids += [record.id for record in page.items]
        if page.next_cursor is None or not page.items:
            return ids
        cursor = page.next_cursor


@click.command()
@click.option(
    "--since",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Show workers seen within this many seconds.",
)
@json_option
@click.pass_context
def workers(ctx: click.Context, since: float, as_json: bool) -> None:
    """The worker registry: every worker of every instance on this broker."""

    async def body(client: Client) -> tuple[list[WorkerView], float]:
        return await client.workers(since), client.now()

    found, now = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"workers": found})  # as GET /api/workers
    else:
        output.show_workers(found, now)


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Task counts per queue, state and priority; pause and resume queues."""
    if ctx.invoked_subcommand is not None:
        return

    async def body(client: Client) -> tuple[list[QueueView], float]:
        return await client.queues(), client.now()

    found, now = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"queues": found})  # as GET /api/queues
    else:
        output.show_queues(found, now)


@queues.command()
@click.argument("names", metavar="QUEUE...", nargs=-1, required=True)
@json_option
@click.pass_context
def pause(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> None:
    """Stop workers from taking tasks of these queues (running tasks finish)."""
    check_queue_names(names)

    async def body(client: Client) -> None:
        await client.pause(names)

    with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"paused": list(names)})
    else:
        click.echo(f"paused {', '.join(names)}")


@queues.command()
@click.argument("names", metavar="QUEUE...", nargs=-1, required=True)
@json_option
@click.pass_context
def resume(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> None:
    """Let workers take tasks of these queues again."""
    check_queue_names(names)

    async def body(client: Client) -> None:
        await client.resume(names)

    with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"resumed": list(names)})
    else:
        click.echo(f"resumed {', '.join(names)}")


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def limits(ctx: click.Context, as_json: bool) -> None:
    """Rate and concurrency limits per task type and queue, for every instance (ADR 0038)."""
    if ctx.invoked_subcommand is not None:
        return

    async def body(client: Client) -> list[LimitView]:
        return await client.limits()

    found = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"limits": found})  # as GET /api/limits
    else:
        output.show_limits(found)


SCOPE = click.Choice(["type", "queue"])


@limits.command("set")
@click.argument("scope", type=SCOPE)
@click.argument("name")
@click.option("--max-concurrency", type=click.IntRange(min=1), help="Running at once, at most.")
@click.option("--rate", "rate_limit", metavar="N/s|N/m|N/h", help="Tasks started, on average.")
@click.option("--burst", type=click.IntRange(min=1), help="Starts at once after a pause.")
@json_option
@click.pass_context
def set_limit(
    ctx: click.Context,
    scope: str,
    name: str,
    max_concurrency: int | None,
    rate_limit: str | None,
    burst: int | None,
    as_json: bool,
) -> None:
    """Replace the limits of a task type or queue (with no option: remove them)."""
    limit = checked_limit(scope, name, max_concurrency, rate_limit, burst)

    async def body(client: Client) -> LimitView:
        return await client.set_limit(limit)

    view = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json(view)
    else:
        output.show_limits([view])


@limits.command("clear")
@click.argument("scope", type=SCOPE)
@click.argument("name")
@click.pass_context
def clear_limit(ctx: click.Context, scope: str, name: str) -> None:
    """Remove the limits of a task type or queue."""
    limit = checked_limit(scope, name, None, None, None)

    async def body(client: Client) -> LimitView:
        return await client.set_limit(limit)

    with_client(state_of(ctx), body)
    click.echo(f"cleared the limits of {scope} {name}")


def checked_limit(
    scope: str, name: str, max_concurrency: int | None, rate_limit: str | None, burst: int | None
) -> Limit:
    """The Limit the options ask for; a usage error (exit 2) naming a malformed value."""
    from taskengine.errors import ValidationError
    from taskengine.model.limits import Limit, LimitScope, check_limit_values, parse_rate

    try:
        rate = None if rate_limit is None else parse_rate(rate_limit)
        return check_limit_values(
            Limit(
                scope=LimitScope(scope),
                name=name,
                max_concurrency=max_concurrency,
                rate=rate,
                burst=burst,
            )
        )
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@json_option
@click.pass_context
def metrics(ctx: click.Context, as_json: bool) -> None:
    """Figures of the system: with --api the server's metrics, else what the broker holds."""

    async def body(client: Client) -> dict[str, Any]:
        return await client.metrics()

    figures = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json(figures)
    else:
        output.show_metrics(figures)


@click.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the broker's storage (tables, schema, scripts); safe to run again.

    Brokers also do this when they start, unless their URL says `migrate=false` (a database
    user without DDL rights); run it ahead of a deploy so several new processes do not all wait
    on it, or to check that a database is reachable and current.
    """
    from taskengine.app import App
    from taskengine.cli.client import connected
    from taskengine.cli.loading import load_app, run
    from taskengine.logging import redact_url

    app = load_app(state_of(ctx))
    migrating = App(
        _without_param(app.settings.broker_url, "migrate"), settings=app.settings, builtins=False
    )

    async def body() -> None:
        async with connected(migrating):
            pass

    run(body())
    click.echo(f"{redact_url(app.settings.broker_url)}: storage is up to date")


def _without_param(url: str, name: str) -> str:
    """`url` without the query parameter `name` (`migrate` migrates whatever the URL says)."""
    base, _, query = url.partition("?")  # not urlunsplit: it drops sqlite:///'s empty host
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != name]
    return f"{base}?{urlencode(kept)}" if kept else base
