"""The operator's commands: bulk actions on tasks, the scheduled and retrying lists, and
purging a queue (issue 16 item 6)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

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
from taskengine.cli.task_cmds import PRIORITIES, STATE_NAMES, time_range_options

if TYPE_CHECKING:
    from taskengine.brokers import Page, TaskFilter
    from taskengine.views import PeriodicView, TypeView

ACTIONS = click.Choice(["cancel", "replay", "delete"])


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--type, --queue and --priority (repeatable), as `list` takes them."""
    for option in reversed(
        (
            click.option("--type", "types", multiple=True, help="Task type (repeatable)."),
            click.option("--queue", "queues", multiple=True, help="Queue (repeatable)."),
            click.option(
                "--priority", "priorities", multiple=True, type=PRIORITIES, help="Repeatable."
            ),
        )
    ):
        fn = option(fn)
    return fn


def make_filter(
    states: tuple[str, ...],
    types: tuple[str, ...],
    queues: tuple[str, ...],
    priorities: tuple[str, ...],
    created_after: float | None = None,
    created_before: float | None = None,
) -> TaskFilter:
    """The TaskFilter of the options (None where none was given)."""
    from taskengine.brokers import TaskFilter
    from taskengine.model import Priority, TaskState

    return TaskFilter(
        states=frozenset(TaskState(s.lower()) for s in states) or None,
        types=frozenset(types) or None,
        queues=frozenset(queues) or None,
        priorities=frozenset(Priority.parse(p) for p in priorities) or None,
        created_after=created_after,
        created_before=created_before,
    )


@click.command()
@click.argument("action", type=ACTIONS)
@click.argument("task_ids", metavar="[ID...]", nargs=-1)
@click.option("--state", "states", multiple=True, type=STATE_NAMES, help="Repeatable.")
@filter_options
@time_range_options
@click.option("--yes", is_flag=True, help="Do not ask before acting on every match.")
@json_option
@click.pass_context
def bulk(
    ctx: click.Context,
    action: str,
    task_ids: tuple[str, ...],
    states: tuple[str, ...],
    types: tuple[str, ...],
    queues: tuple[str, ...],
    priorities: tuple[str, ...],
    created_after: float | None,
    created_before: float | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Cancel, replay or delete tasks: those named by ID, or every task the filters match.

    cancel takes blocked, queued and running tasks, replay dead and cancelled ones, delete
    finished ones; the others are left alone. Prints how many tasks changed.
    """
    times = (created_after, created_before)
    filtered = bool(states or types or queues or priorities) or times != (None, None)
    if task_ids and filtered:
        fail("give task ids or filters (not both)", EXIT_USAGE)
    task_filter = None if task_ids else make_filter(states, types, queues, priorities, *times)
    if task_filter is not None and not yes:
        what = "every task" + ("" if filtered else " (no filter given)")
        click.confirm(f"{action} {what} that matches?", abort=True, err=True)

    async def body(client: Client) -> int:
        return await client.bulk(action, list(task_ids) or None, task_filter)

    touched = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"action": action, "touched": touched})  # as POST /api/bulk
    else:
        click.echo(f"{action}: {touched} task{'' if touched == 1 else 's'} changed")


def _listing(
    title: str, read: Callable[[Client, TaskFilter, int, str | None], Awaitable[Page]]
) -> Any:
    @click.command(title)
    @filter_options
    @click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
    @click.option("--cursor", help="Continue after the page that printed this cursor.")
    @json_option
    @click.pass_context
    def command(
        ctx: click.Context,
        types: tuple[str, ...],
        queues: tuple[str, ...],
        priorities: tuple[str, ...],
        limit: int,
        cursor: str | None,
        as_json: bool,
    ) -> None:
        check_cursor(cursor)
        task_filter = make_filter((), types, queues, priorities)

        async def body(client: Client) -> Page:
            return await read(client, task_filter, limit, cursor)

        page = with_client(state_of(ctx), body)
        if wants_json(ctx, as_json):
            from taskengine.views import task_page

            output.print_json(task_page(page))
        else:
            output.show_tasks(page.items, page.next_cursor, title=f"{title} tasks")

    return command


scheduled = _listing("scheduled", lambda c, f, n, k: c.scheduled(f, n, k))
scheduled.help = "Queued tasks due later (a future run_at), newest first."
retrying = _listing("retrying", lambda c, f, n, k: c.retrying(f, n, k))
retrying.help = "Queued tasks that already ran an attempt (retrying), newest first."


def purge_command(group: click.Group) -> None:
    """Add `purge` to the `queues` group."""

    @group.command()
    @click.argument("name", metavar="QUEUE")
    @click.option("--yes", is_flag=True, help="Do not ask first.")
    @json_option
    @click.pass_context
    def purge(ctx: click.Context, name: str, yes: bool, as_json: bool) -> None:
        """Delete every queued task of QUEUE (running ones finish); asks first."""
        check_queue_names((name,))
        if not yes:
            click.confirm(f"delete every queued task of {name}?", abort=True, err=True)

        async def body(client: Client) -> int:
            return await client.purge_queue(name)

        purged = with_client(state_of(ctx), body)
        if wants_json(ctx, as_json):
            output.print_json({"queue": name, "purged": purged})  # as the API answers
        else:
            click.echo(f"purged {purged} queued task{'' if purged == 1 else 's'} of {name}")


@click.command("types")
@json_option
@click.pass_context
def task_types(ctx: click.Context, as_json: bool) -> None:
    """Every task type a live instance (or this app) registers: executor, timeout, attempts."""

    async def body(client: Client) -> list[TypeView]:
        return await client.task_types()

    found = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"types": found})  # as GET /api/types
    else:
        output.show_types(found)


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def periodic(ctx: click.Context, as_json: bool) -> None:
    """Periodic tasks: cron, next slot, last fired, the scheduler's leader; enable, disable."""
    if ctx.invoked_subcommand is not None:
        return

    async def body(client: Client) -> tuple[list[PeriodicView], float]:
        return await client.periodic(), client.now()

    found, now = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"periodic": found})  # as GET /api/periodic
    else:
        output.show_periodic(found, now)


def _toggle(ctx: click.Context, name: str, enabled: bool) -> None:
    async def body(client: Client) -> bool:
        return await client.set_periodic(name, enabled)

    if not with_client(state_of(ctx), body):
        fail(f"no periodic task {name!r} (see `taskengine periodic`)", EXIT_FAILURE)
    click.echo(f"{'enabled' if enabled else 'disabled'} {name} on every instance")


@periodic.command()
@click.argument("name")
@click.pass_context
def enable(ctx: click.Context, name: str) -> None:
    """Submit NAME at its slots again (from the next one: no backlog)."""
    _toggle(ctx, name, True)


@periodic.command()
@click.argument("name")
@click.pass_context
def disable(ctx: click.Context, name: str) -> None:
    """Stop submitting NAME on every instance, without a deploy."""
    _toggle(ctx, name, False)
