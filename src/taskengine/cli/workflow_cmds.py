"""`taskengine workflow show|cancel|replay ID`: a workflow as a whole (ADR 0037)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from taskengine.cli import output
from taskengine.cli.client import Client, with_client
from taskengine.cli.errors import EXIT_FAILURE
from taskengine.cli.loading import json_option, state_of, wants_json

if TYPE_CHECKING:
    from taskengine.views import WorkflowAction, WorkflowView


@click.group()
def workflow() -> None:
    """Show, cancel or replay a workflow (a chain, group, chord or DAG) by its id."""


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_context
def show(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Show a workflow: its state and its tasks, parents first (as GET /api/workflows/ID)."""

    async def body(client: Client) -> WorkflowView:
        return await client.workflow(workflow_id)

    view = with_client(state_of(ctx), body)
    if wants_json(ctx, as_json):
        output.print_json(view)
    else:
        output.show_workflow(view)


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_context
def cancel(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Cancel every unfinished task of a workflow (running ones stop at their worker)."""

    async def body(client: Client) -> WorkflowAction:
        return await client.cancel_workflow(workflow_id)

    _report(ctx, with_client(state_of(ctx), body), as_json, "cancelled", "nothing to cancel")


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_context
def replay(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Replay a workflow's dead and cancelled tasks, parents first."""

    async def body(client: Client) -> WorkflowAction:
        return await client.replay_workflow(workflow_id)

    _report(ctx, with_client(state_of(ctx), body), as_json, "replayed", "nothing to replay")


def _report(
    ctx: click.Context, action: WorkflowAction, as_json: bool, verb: str, idle: str
) -> None:
    """Print what the action did to each task; exit 1 if it did nothing."""
    if wants_json(ctx, as_json):
        output.print_json(action)
    else:
        for task_id, answer in action.tasks.items():
            click.echo(f"{task_id}: {answer}")
    if not any(answer in (verb, "requested") for answer in action.tasks.values()):
        if not wants_json(ctx, as_json):
            click.echo(f"workflow {action.id}: {idle}", err=True)
        raise click.exceptions.Exit(EXIT_FAILURE)
