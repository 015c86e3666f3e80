"""Output: JSON for scripts (msgspec), rich tables for people. rich is imported only here, late."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
import msgspec

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from taskengine.brokers import CountRow
    from taskengine.model import TaskRecord, TaskResult, WorkerInfo

STATES = ("queued", "running", "succeeded", "dead", "cancelled")
WIDE = 200  # columns when stdout is not a terminal, so ids are never cut in pipes and tests


def print_json(value: Any) -> None:
    """Write `value` as one line of JSON to stdout."""
    click.echo(msgspec.json.encode(value).decode())


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else WIDE
    return Console(file=stream, width=width, soft_wrap=False, highlight=False)


def table(*columns: str, title: str | None = None) -> Table:
    """A table with these column headers; ids never wrap."""
    from rich.table import Table

    grid = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        grid.add_column(name, no_wrap=name in ("id", "task", "worker", "current task"))
    return grid


def when(timestamp: float | None) -> str:
    """A local date and time to the millisecond, or '-'."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="milliseconds")


def ago(timestamp: float | None, now: float | None = None) -> str:
    """How long ago, e.g. '3.2s ago', '5m ago'."""
    if timestamp is None:
        return "-"
    delta = (time.time() if now is None else now) - timestamp
    sign, delta = ("in ", -delta) if delta < 0 else ("", delta)
    if delta < 60:
        text = f"{delta:.1f}s"
    elif delta < 3600:
        text = f"{delta / 60:.0f}m"
    elif delta < 86400:
        text = f"{delta / 3600:.1f}h"
    else:
        text = f"{delta / 86400:.1f}d"
    return f"{sign}{text}" if sign else f"{text} ago"


def short(value: Any, limit: int = 80) -> str:
    """A value as compact JSON, cut to `limit` characters."""
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def state_style(state: str) -> str:
    """The rich style of a task state or result status."""
    return {
        "succeeded": "green",
        "success": "green",
        "running": "cyan",
        "queued": "yellow",
        "dead": "red",
        "failure": "red",
        "timeout": "red",
        "cancelled": "magenta",
    }.get(state.lower(), "")


def styled(state: str) -> str:
    """A state with its colour markup."""
    style = state_style(state)
    return f"[{style}]{state}[/{style}]" if style else state


def show_record(record: TaskRecord) -> None:
    """A task's record: fields, last result and attempt history."""
    from rich.markup import escape

    out = console()
    grid = table("field", "value", title=f"task {record.id}")
    rows: list[tuple[str, str]] = [
        ("type", record.type),
        ("state", styled(record.state.value)),
        ("attempt", f"{record.attempt}/{record.max_attempts}"),
        ("priority", record.priority.name.lower()),
        ("queue", record.queue),
        ("payload", escape(short(record.payload, 200))),
        ("created", when(record.created_at)),
        ("run at", when(record.run_at)),
        ("started", when(record.started_at)),
        ("finished", when(record.finished_at)),
        ("timeout", f"{record.timeout:g}s"),
    ]
    if record.worker_id:
        rows.append(("worker", record.worker_id))
    if record.cancel_requested:
        rows.append(("cancel", "requested"))
    if record.idempotency_key:
        rows.append(("idempotency key", escape(record.idempotency_key)))
    for name, value in rows:
        grid.add_row(name, value)
    out.print(grid)
    if record.result is not None:
        show_result(record.result, out)
    if record.history:
        history = table("#", "status", "worker", "finished", "duration", "error", title="history")
        for line in record.history:
            history.add_row(
                str(line.attempt),
                styled(line.status.value),
                line.worker_id or "-",
                when(line.finished_at),
                f"{line.duration:.3f}s",
                escape(short(line.error or "", 100)),
            )
        out.print(history)


def show_result(result: TaskResult, out: Console | None = None) -> None:
    """A TaskResult as a small table."""
    from rich.markup import escape

    out = out or console()
    grid = table("result", "value")
    grid.add_row("status", styled(result.status.value))
    grid.add_row("attempt", str(result.attempt))
    grid.add_row("duration", f"{result.duration:.3f}s")
    grid.add_row("completed", when(result.completed_at))
    grid.add_row("worker", result.worker_id or "-")
    if result.error:
        grid.add_row("error", escape(result.error))
    grid.add_row("data", escape(short(result.data, 500)))
    out.print(grid)


def show_tasks(records: Sequence[TaskRecord], next_cursor: str | None, title: str) -> None:
    """A page of tasks as a table, with how to get the next page."""
    from rich.markup import escape

    out = console()
    grid = table(
        "id", "type", "state", "priority", "queue", "attempt", "created", "error", title=title
    )
    for record in records:
        error = record.result.error if record.result is not None else None
        grid.add_row(
            record.id,
            escape(record.type),
            styled(record.state.value),
            record.priority.name.lower(),
            escape(record.queue),
            f"{record.attempt}/{record.max_attempts}",
            when(record.created_at),
            escape(short(error or "", 60)),
        )
    out.print(grid if records else "no tasks")
    if next_cursor:
        out.print(f"more: --cursor {next_cursor}")


def show_workers(workers: Sequence[WorkerInfo], now: float) -> None:
    """The worker registry as a table."""
    out = console()
    if not workers:
        out.print("no workers seen recently")
        return
    grid = table("worker", "instance", "state", "current task", "processed", "busy %", "last seen")
    for info in workers:
        grid.add_row(
            info.id,
            info.instance,
            info.state,
            info.current_task or "-",
            str(info.processed),
            f"{busy_percent(info):.0f}",
            ago(info.last_seen, now),
        )
    out.print(grid)


def busy_percent(info: WorkerInfo) -> float:
    """Share of its lifetime a worker spent running tasks."""
    alive = info.last_seen - info.started_at
    return 0.0 if alive <= 0 else min(100.0, 100.0 * info.busy_seconds / alive)


def queue_summary(rows: Iterable[CountRow], paused: Iterable[str]) -> list[dict[str, Any]]:
    """Counts per queue: by state, queued by priority, oldest queued task, paused flag."""
    queues: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        return queues.setdefault(
            name,
            {
                "queue": name,
                "paused": False,
                "states": dict.fromkeys(STATES, 0),
                "queued_by_priority": {"high": 0, "normal": 0, "low": 0},
                "oldest_queued_at": None,
            },
        )

    for row in rows:
        item = entry(row.queue)
        item["states"][row.state.value] = item["states"].get(row.state.value, 0) + row.count
        if row.state.value == "queued":
            item["queued_by_priority"][row.priority.name.lower()] += row.count
            oldest = item["oldest_queued_at"]
            if row.oldest_created_at is None:
                continue
            if oldest is None or row.oldest_created_at < oldest:
                item["oldest_queued_at"] = row.oldest_created_at
    for name in paused:
        entry(name)["paused"] = True
    return [queues[name] for name in sorted(queues)]


def show_queues(summary: Sequence[dict[str, Any]], now: float) -> None:
    """The queue summary as a table."""
    out = console()
    if not summary:
        out.print("no queues")
        return
    grid = table("queue", *STATES, "queued h/n/l", "oldest queued", "paused")
    for item in summary:
        by = item["queued_by_priority"]
        grid.add_row(
            item["queue"],
            *(str(item["states"][state]) for state in STATES),
            f"{by['high']}/{by['normal']}/{by['low']}",
            ago(item["oldest_queued_at"], now),
            "[red]yes[/red]" if item["paused"] else "no",
        )
    out.print(grid)


def show_metrics(figures: dict[str, Any]) -> None:
    """Print the metrics as one row per figure (nested ones as dotted names)."""
    grid = table("figure", "value", title=f"metrics ({figures.get('source', '?')})")
    for name, value in _flatten(figures):
        if name != "source":
            grid.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    console().print(grid)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for key, item in value.items():
            rows.extend(_flatten(item, f"{prefix}{key}."))
        return rows
    if isinstance(value, list):
        return [(prefix.rstrip("."), f"{len(value)} item(s)")]
    return [(prefix.rstrip("."), value)]
