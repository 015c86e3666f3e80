"""`taskengine instances`: the live engine instances, and their remote control (ADR 0036)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from taskengine.cli import output
from taskengine.cli.client import Client, with_client
from taskengine.cli.errors import EXIT_FAILURE, fail
from taskengine.cli.loading import json_option, state_of, wants_json

if TYPE_CHECKING:
    from taskengine.views import InstanceView


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def instances(ctx: click.Context, as_json: bool) -> None:
    """Live engine instances; drain, resume, resize or shut one down from anywhere."""
    if ctx.invoked_subcommand is not None:
        return

    async def body(client: Client) -> tuple[list[InstanceView], float]:
        return await client.instances(), client.now()

    found, now = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json({"instances": found})  # as GET /api/instances
    else:
        output.show_live_instances(found, now)


def _send(ctx: click.Context, instance: str, command: str, size: int | None = None) -> None:
    """Send `command` to a live instance; an unknown one fails (exit 1) and is sent nothing."""

    async def body(client: Client) -> bool:
        if instance not in {view.instance for view in await client.instances()}:
            return False
        await client.control(instance, command, size)
        return True

    if not with_client(state_of(ctx), body):
        fail(f"no live instance {instance!r} (see `taskengine instances`)", EXIT_FAILURE)
    click.echo(f"{command} sent to {instance}" + (f" ({size} workers)" if size else ""))


@instances.command()
@click.argument("instance")
@click.pass_context
def drain(ctx: click.Context, instance: str) -> None:
    """Stop INSTANCE taking tasks; its running tasks finish."""
    _send(ctx, instance, "drain")


@instances.command("resume")
@click.argument("instance")
@click.pass_context
def resume_instance(ctx: click.Context, instance: str) -> None:
    """Let a drained INSTANCE take tasks again."""
    _send(ctx, instance, "resume")


@instances.command()
@click.argument("instance")
@click.argument("size", type=click.IntRange(1, 10_000))
@click.pass_context
def resize(ctx: click.Context, instance: str, size: int) -> None:
    """Run SIZE workers on INSTANCE (its autoscaler keeps to that size)."""
    _send(ctx, instance, "resize", size)


@instances.command()
@click.argument("instance")
@click.pass_context
def shutdown(ctx: click.Context, instance: str) -> None:
    """Stop INSTANCE gracefully, as SIGTERM would."""
    _send(ctx, instance, "shutdown")
