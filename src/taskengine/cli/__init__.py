"""The `taskengine` command line: a worker command and client commands over the Python API.

Client commands open the broker directly, or with `--api URL` drive a remote `taskengine serve`
through its REST API (see loading.Client). Only click is imported up front; the engine, its
brokers, rich and httpx load inside the commands, so `taskengine --help` stays fast. Every
engine error ends as one line on stderr (see errors.py).
"""

from __future__ import annotations

import click

from taskengine.cli.admin_cmds import dlq, limits, metrics, migrate, queues, workers
from taskengine.cli.bench_cmd import bench
from taskengine.cli.errors import EXIT_USAGE, EngineGroup, fail
from taskengine.cli.instance_cmds import instances
from taskengine.cli.loading import CliState
from taskengine.cli.operator_cmds import (
    bulk,
    periodic,
    purge_command,
    retrying,
    scheduled,
    task_types,
)
from taskengine.cli.serve_cmd import serve
from taskengine.cli.task_cmds import cancel, list_tasks, retry, status, submit
from taskengine.cli.worker_cmd import worker
from taskengine.cli.workflow_cmds import workflow

__all__ = ["cli", "main"]


@click.group(cls=EngineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-b",
    "--broker",
    metavar="URL",
    help="Broker URL (default: $TASKENGINE_BROKER_URL or sqlite:///taskengine.db).",
)
@click.option(
    "-A",
    "--app",
    "app_path",
    metavar="MODULE:ATTR",
    help="Your App (or a factory returning one); default: the built-in task types.",
)
@click.option(
    "--api",
    metavar="URL",
    envvar="TASKENGINE_API_URL",
    help="Drive a remote `taskengine serve` at URL instead of opening the broker "
    "(client commands; default: $TASKENGINE_API_URL).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="TASKENGINE_API_TOKEN",
    help="Bearer token for --api (default: $TASKENGINE_API_TOKEN).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (client commands).")
@click.option("--traceback", is_flag=True, hidden=True, help="Show tracebacks of internal errors.")
@click.version_option(package_name="task-engine", prog_name="taskengine")
@click.pass_context
def cli(
    ctx: click.Context,
    broker: str | None,
    app_path: str | None,
    api: str | None,
    token: str | None,
    as_json: bool,
    traceback: bool,
) -> None:
    """Task Engine: submit, inspect and run tasks."""
    from taskengine.settings import warn_unknown_env

    warn_unknown_env(say=lambda message: click.echo(f"warning: {message}", err=True))
    api = remote_target(ctx, api, broker=broker, app_path=app_path)
    ctx.obj = CliState(
        broker=broker,
        app_path=app_path,
        json=as_json,
        traceback=traceback,
        api=api,
        token=token if api is not None else None,
    )


LOCAL_COMMANDS = ("worker", "serve", "migrate", "bench")  # they run the engine here: no --api


def remote_target(
    ctx: click.Context, api: str | None, *, broker: str | None, app_path: str | None
) -> str | None:
    """The --api URL to use, if any. Options win over the environment: $TASKENGINE_API_URL
    gives way to --broker/--app, and the worker and serve commands ignore it."""
    source = ctx.get_parameter_source("api")
    given = source is click.core.ParameterSource.COMMANDLINE
    if not api:
        if ctx.get_parameter_source("token") is click.core.ParameterSource.COMMANDLINE:
            fail("--token needs --api (or $TASKENGINE_API_URL)", EXIT_USAGE)
        return None
    if ctx.invoked_subcommand in LOCAL_COMMANDS:
        if given:
            fail(
                f"{ctx.invoked_subcommand} runs the engine here: it does not take --api", EXIT_USAGE
            )
        return None
    if broker is not None or app_path is not None:
        if given:
            fail("give --api or --broker/--app, not both", EXIT_USAGE)
        return None
    return api


for command in (
    worker,
    serve,
    submit,
    status,
    list_tasks,
    cancel,
    retry,
    workflow,
    dlq,
    scheduled,
    retrying,
    bulk,
    task_types,
    periodic,
    workers,
    instances,
    queues,
    limits,
    metrics,
    migrate,
    bench,
):
    cli.add_command(command)


purge_command(queues)


def main() -> None:
    """Console script entry point."""
    cli(prog_name="taskengine")
