"""The `taskengine` command line: a worker command and client commands over the Python API.

Only click is imported up front; the engine, its brokers and rich load inside the commands, so
`taskengine --help` stays fast. Every engine error ends as one line on stderr (see errors.py).
"""

from __future__ import annotations

import click

from taskengine.cli.admin_cmds import dlq, queues, workers
from taskengine.cli.errors import EngineGroup
from taskengine.cli.loading import CliState
from taskengine.cli.serve_cmd import serve
from taskengine.cli.task_cmds import cancel, list_tasks, retry, status, submit
from taskengine.cli.worker_cmd import worker

__all__ = ["cli", "main"]


@click.group(cls=EngineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--broker",
    metavar="URL",
    help="Broker URL (default: $TASKENGINE_BROKER_URL or sqlite:///taskengine.db).",
)
@click.option(
    "--app",
    "app_path",
    metavar="MODULE:ATTR",
    help="Your App (or a factory returning one); default: the built-in task types.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (client commands).")
@click.option("--traceback", is_flag=True, hidden=True, help="Show tracebacks of internal errors.")
@click.version_option(package_name="task-engine", prog_name="taskengine")
@click.pass_context
def cli(
    ctx: click.Context, broker: str | None, app_path: str | None, as_json: bool, traceback: bool
) -> None:
    """Task Engine: submit, inspect and run tasks."""
    ctx.obj = CliState(broker=broker, app_path=app_path, json=as_json, traceback=traceback)


for command in (worker, serve, submit, status, list_tasks, cancel, retry, dlq, workers, queues):
    cli.add_command(command)


def main() -> None:
    """Console script entry point."""
    cli(prog_name="taskengine")
