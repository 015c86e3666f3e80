"""The worker pool's options, shared by `worker` and `serve`, and the Settings changes they ask for.

Short flags are Celery's where they mean the same thing here: `-c` (tasks run at once: our
worker coroutines), `-Q` (queues), `-l` (log level). Each option names its TASKENGINE_* variable
in its help; an option given wins over the variable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import click

from taskengine.cli.loading import check_queue_names

if TYPE_CHECKING:
    from taskengine.settings import Settings

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)
POSITIVE = click.IntRange(min=1)


@dataclass(frozen=True)
class PoolOptions:
    """The pool options as given (None: not given, the setting applies)."""

    workers: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    queues: str | None = None
    prefetch: int | None = None
    threads: int | None = None
    process_pool: int | None = None
    grace: float | None = None

    def check(self) -> None:
        """Refuse bad values the options' types cannot (queue names), before any I/O."""
        check_queue_names(queue_names(self.queues))

    def changes(self, settings: Settings) -> dict[str, Any]:
        """The Settings changes these options ask for (validated when the worker is built)."""
        changes: dict[str, Any] = {
            name: value
            for name, value in asdict(self).items()
            if value is not None and name not in ("workers", "queues", "grace")
        }
        if self.workers is not None:
            changes["workers"] = self.workers
        elif self.min_workers is not None or self.max_workers is not None:
            # Start inside the autoscaling bounds when only the bounds were given.
            size = max(settings.workers, self.min_workers or settings.workers)
            changes["workers"] = min(size, self.max_workers or size)
        if self.queues is not None:
            self.check()
            changes["queues"] = queue_names(self.queues) or None
        if self.grace is not None:
            changes["shutdown_grace"] = self.grace
        return changes

    def args(self) -> list[str]:
        """The options again, as arguments for a child `taskengine worker`."""
        found: list[str] = []
        for name, value in asdict(self).items():
            if value is not None:
                found += [f"--{name.replace('_', '-')}", str(value)]
        return found


def queue_names(queues: str | None) -> tuple[str, ...]:
    """The names of a comma-separated --queues value."""
    return tuple(name.strip() for name in (queues or "").split(",") if name.strip())


def pool_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the pool options; the command receives them as one `pool: PoolOptions` argument."""
    options = [
        click.option(
            "-c",
            "--workers",
            type=POSITIVE,
            help="Worker coroutines: tasks run at once per process ($TASKENGINE_WORKERS, 5).",
        ),
        click.option("--min-workers", type=POSITIVE, help="Autoscaling floor."),
        click.option("--max-workers", type=POSITIVE, help="Autoscaling ceiling."),
        click.option(
            "-Q",
            "--queues",
            help="Comma-separated queues to take tasks from ($TASKENGINE_QUEUES; default: all).",
        ),
        click.option(
            "--prefetch",
            type=click.IntRange(min=0),
            help="Leases buffered beyond one per busy worker ($TASKENGINE_PREFETCH; "
            "default: adaptive).",
        ),
        click.option(
            "--threads",
            type=POSITIVE,
            help="Threads for synchronous handlers ($TASKENGINE_THREADS, 32).",
        ),
        click.option(
            "--process-pool",
            type=POSITIVE,
            help='Processes for executor="process" handlers ($TASKENGINE_PROCESS_POOL; '
            "default: the core count).",
        ),
        click.option(
            "--grace",
            type=click.FloatRange(min=0),
            help="Seconds running tasks get to finish at shutdown "
            "($TASKENGINE_SHUTDOWN_GRACE, 25).",
        ),
    ]
    names = list(PoolOptions.__dataclass_fields__)

    def command(*args: Any, **kwargs: Any) -> Any:
        kwargs["pool"] = PoolOptions(**{name: kwargs.pop(name) for name in names})
        return fn(*args, **kwargs)

    functools.update_wrapper(command, fn)  # the name, help text and options declared below
    for option in reversed(options):
        command = option(command)
    return command


def log_level_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add `-l/--log-level` (default: $TASKENGINE_LOG_LEVEL, info)."""
    return click.option(
        "-l",
        "--log-level",
        type=LOG_LEVELS,
        help="debug, info, warning or error ($TASKENGINE_LOG_LEVEL, info).",
    )(fn)
