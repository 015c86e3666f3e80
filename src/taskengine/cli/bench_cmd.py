"""`taskengine bench`: measure submit, drain and end-to-end rates on this machine."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from taskengine.cli.errors import EXIT_USAGE, fail
from taskengine.cli.loading import json_option, state_of, wants_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.progress import Progress, TaskID

    from taskengine.benchmark import Figure, Plan

WORKLOAD_CHOICES = ("noop", "io", "all")


@click.command()
@click.option(
    "--workload",
    type=click.Choice(WORKLOAD_CHOICES),
    default="all",
    show_default=True,
    help="noop: tasks that do nothing; io: tasks that sleep 10 ms; all: both.",
)
@click.option(
    "--tasks",
    type=click.IntRange(min=1),
    help="Tasks per run and figure (default: 20,000 for noop, 2,000 for io).",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Runs per figure; the median, min and max are shown.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Worker coroutines in the pool.",
)
@click.option(
    "--yes",
    is_flag=True,
    help="Allow a broker other than memory:// or sqlite:/// (tasks are written into it).",
)
@json_option
@click.pass_context
def bench(
    ctx: click.Context,
    workload: str,
    tasks: int | None,
    runs: int,
    workers: int,
    yes: bool,
    as_json: bool,
) -> None:
    """Measure how fast the engine runs tasks here, on the broker of --broker.

    For each workload and run: the submit rate (N tasks submitted in batches of 100, no worker
    running), the drain rate (the workers started on that full queue, until every task
    succeeded) and the end-to-end rate (N tasks submitted while the workers run). Each figure
    is the median of the runs, with min and max, in tasks/s.

    What it writes: on memory:// nothing outlives the command. On sqlite:/// each run uses a
    new database in a temporary directory next to the given file, removed afterwards; the file
    itself is not opened. Any other broker (Redis, PostgreSQL) is used as is and needs --yes:
    each run writes its tasks into a queue of its own (bench-...), where they stay as succeeded
    until retention removes them (finished_ttl, 24 h by default). Workers of other processes
    that take every queue would take them too: run it where none is running.
    """
    from taskengine.benchmark import FRESH_SCHEMES, WORKLOADS, Plan, measure
    from taskengine.cli.client import connected
    from taskengine.cli.loading import run
    from taskengine.logging import redact_url
    from taskengine.settings import Settings

    state = state_of(ctx)
    if state.app_path is not None:
        fail("bench runs task types of its own: it does not take --app", EXIT_USAGE)
    url = state.broker or Settings.from_env().broker_url
    if urlsplit(url).scheme not in FRESH_SCHEMES and not yes:
        fail(
            f"bench writes tasks into {redact_url(url)}: give --yes to run it there anyway, "
            "or use --broker memory:// or sqlite:///PATH",
            EXIT_USAGE,
        )
    names = ("noop", "io") if workload == "all" else (workload,)
    plan = Plan(
        broker_url=url,
        workloads=tuple(WORKLOADS[name] for name in names),
        tasks=tasks,
        runs=runs,
        workers=workers,
    )
    with progress_bar(plan.total_tasks) as progress:
        figures = run(measure(plan, progress, connect=connected))
    if wants_json(ctx, as_json):
        from taskengine.cli.output import print_json

        print_json(report(plan, figures, redact_url(url)))
    else:
        show_figures(plan, figures, redact_url(url))


def report(plan: Plan, figures: list[Figure], broker: str) -> dict[str, Any]:
    """The figures, the broker, the machine and the settings, as one JSON object."""
    return {
        "broker": broker,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "workloads": [workload.name for workload in plan.workloads],
            "tasks": {workload.name: plan.count(workload) for workload in plan.workloads},
            "runs": plan.runs,
            "workers": plan.workers,
        },
        "figures": [figure.as_dict() for figure in figures],
    }


def show_figures(plan: Plan, figures: list[Figure], broker: str) -> None:
    """The figures as a table: median, min and max of each."""
    from taskengine.cli.output import console, table

    sizes = ", ".join(f"{w.name} {plan.count(w):,} tasks" for w in plan.workloads)
    out = console()
    out.print(f"{broker}, {plan.workers} workers, {sizes}, median of {plan.runs} run(s)")
    grid = table("figure", "median", "min", "max", "unit")
    for column in grid.columns[1:4]:
        column.justify = "right"
    for figure in figures:
        found = figure.as_dict()
        grid.add_row(
            figure.label,
            *(f"{found[key]:,.0f}" for key in ("median", "min", "max")),
            figure.unit,
        )
    out.print(grid)


@contextlib.contextmanager
def progress_bar(total: int) -> Iterator[RichProgress | None]:
    """A progress bar on stderr while the body runs, if stderr is a terminal; else None."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from taskengine.cli.output import console

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns, TimeElapsedColumn(), console=console(stderr=True), transient=True
    ) as bar:
        yield RichProgress(bar, bar.add_task("starting", total=total))


class RichProgress:
    """The benchmark's progress reports, shown on a rich progress bar."""

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar = bar
        self.task = task

    def begin(self, label: str) -> None:
        """Show the phase."""
        self.bar.update(self.task, description=label)

    def advance(self, tasks: int) -> None:
        """Move the bar."""
        self.bar.advance(self.task, tasks)
