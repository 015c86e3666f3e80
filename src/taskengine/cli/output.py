"""Output: JSON for scripts (the API's own views), tables for people.

`--json` prints what the REST API answers for the same object (taskengine.views). Tables use
rich (imported late), except task lists: rich measures and renders every cell, and 10,000 tasks
took over 6 s of CPU, so a list is printed as plain aligned columns (0.4 s for the same list).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
import msgspec

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from taskengine.model import Progress, TaskRecord, TaskResult
    from taskengine.views import (
        InstanceView,
        LimitView,
        PeriodicView,
        QueueView,
        TypeView,
        WorkerView,
        WorkflowView,
    )

STATES = ("blocked", "queued", "running", "succeeded", "dead", "cancelled")
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
    """An ISO 8601 UTC time to the millisecond, as the JSON has it (`...T12:00:00.000Z`), or '-'."""
    if timestamp is None:
        return "-"
    text = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


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
    if record.depends_on:
        rows.append(("depends on", " ".join(record.depends_on)))
        rows.append(("on parent failure", record.on_parent_failure))
    if record.state.value == "blocked":
        rows.append(("waiting for", f"{record.waiting} parent(s)"))
    if record.workflow:
        rows.append(("workflow", record.workflow))
    if record.progress is not None:
        rows.append(("progress", escape(progress_text(record.progress))))
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
        failed = [line for line in record.history if line.traceback]
        if failed:  # the last one: earlier attempts usually failed the same way
            line = failed[-1]
            out.print(f"traceback of attempt {line.attempt}:", style="bold")
            out.print(escape(line.traceback or ""), highlight=False, soft_wrap=True)


def progress_text(progress: Progress) -> str:
    """`done/total (pct%)`, the note, and the attempt and time it was reported."""
    from taskengine.model.progress import fraction

    share = fraction(progress)
    text = f"{progress.done}/{progress.total}" if progress.total else f"{progress.done} done"
    if share is not None:
        text += f" ({share:.0%})"
    if progress.note:
        text += f" {progress.note}"
    return f"{text} · attempt {progress.attempt}, {when(progress.at)}"


def show_result(result: TaskResult, out: Console | None = None) -> None:
    """A TaskResult as a small table."""
    from rich.markup import escape

    out = out or console()
    grid = table("result", "value")
    grid.add_row("task", result.task_id)
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
    """A page of tasks as aligned columns, with how to get the next page."""
    if not records:
        click.echo("no tasks")
    else:
        header = ("id", "type", "state", "priority", "queue", "attempt", "created", "error")
        rows = [
            (
                record.id,
                record.type,
                record.state.value,
                record.priority.name.lower(),
                record.queue,
                f"{record.attempt}/{record.max_attempts}",
                when(record.created_at),
                short((record.result.error if record.result else None) or "", 60),
            )
            for record in records
        ]
        click.echo(click.style(f"{title} ({len(rows)})", bold=True))
        click.echo(columns(header, rows, styles={2: state_style}))
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


def show_workflow(view: WorkflowView) -> None:
    """A workflow: its state, then its tasks parents first with what each waits on."""
    click.echo(click.style(f"workflow {view.id}: {view.state}", bold=True))
    header = ("id", "type", "state", "after", "attempt", "error")
    rows = [
        (
            node.id,
            node.type,
            node.state,
            ",".join(node.depends_on) or "-",
            str(node.attempt),
            short(node.error or "", 60),
        )
        for node in view.nodes
    ]
    click.echo(columns(header, rows, styles={2: state_style}))


def columns(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    styles: dict[int, Callable[[str], str]] | None = None,
) -> str:
    """Rows as left-aligned columns under a bold header; `styles` colour a column by value.

    Colours are ANSI codes, which click.echo strips when stdout is not a terminal. Control
    characters in values are shown escaped, so a value cannot break the layout or the terminal.
    """
    from rich.cells import cell_len

    cells = [[_printable(value) for value in row] for row in rows]
    widths = [cell_len(name) for name in header]
    for row in cells:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], cell_len(value))
    last = len(header) - 1
    names = [name if i == last else name.ljust(widths[i]) for i, name in enumerate(header)]
    lines = ["  ".join(click.style(name, bold=True) for name in names)]
    for row in cells:
        parts = []
        for index, value in enumerate(row):
            padded = value if index == last else value + " " * (widths[index] - cell_len(value))
            colour = styles.get(index, _no_style)(value) if styles else ""
            parts.append(click.style(padded, fg=colour) if colour else padded)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _no_style(value: str) -> str:
    return ""


def _printable(value: str) -> str:
    """`value` with control characters escaped (a newline in an error would break the row)."""
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in value)


def show_workers(workers: Sequence[WorkerView], now: float) -> None:
    """The worker registry as a table."""
    out = console()
    if not workers:
        out.print("no workers seen recently")
        return
    grid = table("worker", "instance", "state", "current task", "processed", "busy %", "last seen")
    for view in workers:
        grid.add_row(
            view.id,
            view.instance,
            view.state,
            view.current_task or "-",
            str(view.processed),
            f"{100 * view.busy_ratio:.0f}",
            ago(view.last_heartbeat.timestamp(), now),
        )
    out.print(grid)


def show_live_instances(instances: Sequence[InstanceView], now: float) -> None:
    """The live engine instances as a table."""
    out = console()
    if not instances:
        out.print("no live instances")
        return
    grid = table(
        "instance",
        "host",
        "pid",
        "version",
        "workers",
        "busy",
        "processed",
        "RSS",
        "state",
        "started",
    )
    for view in instances:
        grid.add_row(
            view.instance,
            view.host,
            str(view.pid),
            view.version or "-",  # not reported yet
            str(view.workers),
            str(view.busy),
            str(view.processed),
            "-" if view.rss_bytes is None else f"{view.rss_bytes / 1048576:.0f} MiB",
            "draining" if view.draining else "taking tasks",
            ago(view.started_at.timestamp(), now),
        )
    out.print(grid)


def show_types(types: Sequence[TypeView]) -> None:
    """The task types as a table."""
    out = console()
    if not types:
        out.print("no task types")
        return
    grid = table("type", "executor", "timeout", "attempts", "queue", "priority", "instances")
    for view in types:
        grid.add_row(
            view.name,
            view.executor,
            f"{view.timeout:g} s",
            str(view.max_attempts),
            view.queue,
            view.priority,
            str(len(view.instances)),
        )
    out.print(grid)


def show_periodic(entries: Sequence[PeriodicView], now: float) -> None:
    """The periodic tasks as a table."""
    out = console()
    if not entries:
        out.print("no periodic tasks")
        return
    grid = table("name", "cron", "type", "enabled", "next slot", "last fired", "leader")
    for view in entries:
        grid.add_row(
            view.name,
            view.cron,
            view.type,
            "yes" if view.enabled else "no",
            "-" if view.next_slot is None else f"in {max(0.0, view.next_slot - now):.0f} s",
            "-" if view.last_fired is None else ago(view.last_fired, now),
            view.leader or "-",
        )
    out.print(grid)


def show_queues(queues: Sequence[QueueView], now: float) -> None:
    """The queues (the API's views) as a table."""
    out = console()
    if not queues:
        out.print("no queues")
        return
    grid = table("queue", *STATES, "queued h/n/l", "oldest queued", "rate/s", "paused")
    for view in queues:
        by = [view.queued_by_priority.get(name, 0) for name in ("HIGH", "NORMAL", "LOW")]
        oldest = view.oldest_queued_at
        grid.add_row(
            view.name,
            *(str(view.states.get(state, 0)) for state in STATES),
            "/".join(map(str, by)),
            ago(None if oldest is None else oldest.timestamp(), now),
            f"{view.rate_per_second:.2f}",
            "[red]yes[/red]" if view.paused else "no",
        )
    out.print(grid)


def show_limits(limits: Sequence[LimitView]) -> None:
    """The stored limits (the API's views) as a table."""
    from rich.markup import escape

    out = console()
    if not limits:
        out.print("no limits")
        return
    grid = table("scope", "name", "max concurrency", "rate /s", "burst")
    for view in limits:
        grid.add_row(
            view.scope,
            escape(view.name),
            "-" if view.max_concurrency is None else str(view.max_concurrency),
            "-" if view.rate is None else f"{view.rate:g}",
            "-" if view.burst is None else str(view.burst),
        )
    out.print(grid)


def show_metrics(figures: dict[str, Any]) -> None:
    """Print the metrics as one row per figure (nested ones as dotted names)."""
    grid = table("figure", "value", title=f"metrics ({figures.get('source', '?')})")
    for name, value in _flatten(figures):
        if name not in ("source", "instances"):
            grid.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    console().print(grid)
    instances = figures.get("instances") or []
    if instances:
        show_instances(instances)


def show_instances(instances: list[dict[str, Any]]) -> None:
    """Print the per-instance breakdown of the metrics: one row per engine process."""
    grid = table(
        "instance",
        "host",
        "pid",
        "workers",
        "busy",
        "succeeded",
        "failed",
        "rss",
        "cpu %",
        title=f"instances ({len(instances)})",
    )
    for item in instances:
        outcomes = item.get("outcomes", {})
        grid.add_row(
            str(item["instance"]) + (" (this server)" if item.get("local") else ""),
            str(item["host"]),
            str(item["pid"]),
            str(item["size"]),
            str(item["busy"]),
            str(outcomes.get("succeeded", 0)),
            str(outcomes.get("failed", 0) + outcomes.get("timed_out", 0)),
            f"{item['rss_bytes'] / 1048576:.0f} MiB",
            f"{item['cpu_percent']:.0f}",
        )
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
