"""`taskengine worker`: run a worker pool until SIGINT/SIGTERM, or supervise N worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from taskengine.cli.client import connected
from taskengine.cli.errors import EXIT_FAILURE, EXIT_OK
from taskengine.cli.forked import Child, can_fork, fork_worker, preload
from taskengine.cli.loading import CliState, load_app, run, state_of
from taskengine.cli.pool_options import PoolOptions, log_level_option, pool_options
from taskengine.logging import redact_url

if TYPE_CHECKING:
    from taskengine.api.probe import Probe
    from taskengine.app import App

SIGNALS = (signal.SIGINT, signal.SIGTERM)
C = TypeVar("C", bound=Child)


@click.command()
@pool_options
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Engine processes to start, each with its own pool of workers (and process pool).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics, /healthz and /readyz on this port ($TASKENGINE_METRICS_PORT); with "
    "--processes N, child k listens on port + k.",
)
@log_level_option
@click.option(
    "--watch-fd",
    type=click.IntRange(min=0),
    hidden=True,
    help="Supervisor's pipe: EOF on it means the supervisor died (set by --processes).",
)
@click.pass_context
def worker(
    ctx: click.Context,
    pool: PoolOptions,
    processes: int,
    metrics_port: int | None,
    log_level: str | None,
    watch_fd: int | None,
) -> None:
    """Run workers until SIGINT or SIGTERM (a second signal skips the grace period)."""
    state = state_of(ctx)
    pool.check()  # before any child starts
    if processes > 1:
        args = [*pool.args(), *(["--log-level", log_level] if log_level else [])]
        if metrics_port is None:
            from taskengine.settings import Settings

            metrics_port = Settings.from_env().metrics_port
        ports = child_ports(metrics_port, processes)
        raise click.exceptions.Exit(supervise(state, [*args, "--processes", "1"], processes, ports))
    app = load_app(state)
    configure_logging(log_level or app.settings.log_level)
    changes = pool.changes(app.settings)
    if metrics_port is not None:
        changes["metrics_port"] = metrics_port
    run(serve(app, changes, watch_fd=watch_fd))
    raise click.exceptions.Exit(EXIT_OK)


def child_ports(base: int | None, count: int) -> list[int | None]:
    """The metrics port of each of `count` children: `base + k` (0: each its own free port)."""
    if base is None:
        return [None] * count
    if base and base + count - 1 > 65535:
        raise click.BadParameter(
            f"ports {base}-{base + count - 1} do not fit below 65536", param_hint="--metrics-port"
        )
    return [base + k if base else 0 for k in range(count)]


async def serve(app: App, overrides: dict[str, Any], *, watch_fd: int | None = None) -> None:
    """Start the worker, wait for a signal, stop gracefully (or at once on a second one).

    With `watch_fd` (a child of `--processes`), EOF on that pipe means the supervisor died:
    the worker stops gracefully as on a first SIGTERM.
    """
    pool = app.engine(**overrides)
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    stopping: list[asyncio.Task[None]] = []

    async def stop_when_started() -> None:
        await started.wait()
        await pool.stop()

    def on_signal(signum: signal.Signals) -> None:
        if not stopping:
            say(f"{signum.name}: stopping gracefully (Ctrl-C again to skip the wait)")
            stopping.append(loop.create_task(stop_when_started()))
        else:
            say(f"{signum.name}: stopping now, interrupting running tasks")
            pool.force_stop()

    def on_parent_gone() -> None:
        if watch_fd is None or os.read(watch_fd, 1):
            return  # the supervisor never writes: anything but EOF is ignored
        loop.remove_reader(watch_fd)  # EOF stays readable: watch it once
        if not stopping:
            with contextlib.suppress(OSError):  # its terminal or pipe may have gone with it
                say("supervisor is gone: stopping gracefully")
            stopping.append(loop.create_task(stop_when_started()))

    for signum in SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    if watch_fd is not None:
        loop.add_reader(watch_fd, on_parent_gone)
    probe: Probe | None = None
    try:
        async with connected(app):
            await pool.start()
            started.set()
            port = pool.settings.metrics_port
            if port is not None:
                from taskengine.api.probe import Probe

                probe = Probe(app, pool, pool.settings.metrics_host, port)
                await probe.start()
                say(f"metrics at http://{probe.address}/metrics")
            say(
                start_line(
                    app,
                    pool.instance,
                    pool.settings.workers,
                    pool.settings.scale_bounds,
                    pool.settings.queues,
                )
            )
            await pool.wait_stopped()
            for task in stopping:
                await task
            say(f"worker {pool.instance} stopped")
    finally:
        if probe is not None:
            await probe.stop()
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
        if watch_fd is not None:
            loop.remove_reader(watch_fd)
        for task in stopping:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def start_line(
    app: App, instance: str, workers: int, bounds: tuple[int, int], queues: tuple[str, ...] | None
) -> str:
    """What a started worker prints: instance, broker, pool size, queues and task types."""
    low, high = bounds
    size = f"{workers} workers" + (f" (autoscaling {low}-{high})" if low != high else "")
    return (
        f"worker {instance} started: broker {redact_url(app.settings.broker_url)}, {size}, "
        f"queues {','.join(queues) if queues else 'all'}, "
        f"task types {', '.join(app.registry.names()) or 'none'}"
    )


def say(message: str) -> None:
    """A worker status line on stdout, flushed at once."""
    click.echo(message)


def configure_logging(level: str) -> None:
    """Structured log lines on stderr, unless the user's app configured logging already; a
    fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL) dumps every thread's stack there."""
    import faulthandler

    # SQLite maps its -shm file: a store made unwritable under it may still be SIGBUS (ADR 0016).
    # A stderr without a file descriptor (a test runner's) cannot take the dump: nothing to do.
    with contextlib.suppress(ValueError, OSError, RuntimeError):
        faulthandler.enable(file=sys.stderr)
    if not logging.getLogger().handlers:
        from taskengine.logging import configure_logging as configure

        configure(level)


# -- several processes ------------------------------------------------------------------------


def supervise(
    state: CliState, args: list[str], count: int, ports: list[int | None] | None = None
) -> int:
    """Start `count` worker processes, forward SIGINT/SIGTERM to them, wait for all.

    The children are forked once the engine is imported here (`cli/forked.py`), or, where that
    cannot be, started as `python -m taskengine worker`.

    The children run in their own process group so a terminal's Ctrl-C reaches them once,
    through us; the second signal is forwarded too and skips their grace period.
    Each child holds the read end of a pipe whose write end only we hold: when we die, however
    (even SIGKILL), the kernel closes it and the children see EOF and stop gracefully.
    A child ended by its watchdog (EXIT_WATCHDOG) or killed by a signal is replaced unless we
    are stopping; one that exits with an error code (a bad setting, say) is not.
    Child k gets `--metrics-port ports[k]` (its replacement the same).
    Returns 0 if every child exited 0.
    """
    watch, lifeline = os.pipe()  # both non-inheritable: only pass_fds hands `watch` on
    argv = [*state.global_args(), "worker", *args, "--watch-fd", str(watch)]
    forking = can_fork()
    if forking:
        preload(state.broker)
        forking = can_fork()  # the imports started no thread
    children: list[Child] = []
    received: list[int] = []

    ports = ports or [None] * count

    def spawn(index: int) -> Child:
        port = ports[index]
        extra = ["--metrics-port", str(port)] if port is not None else []
        if forking:
            return fork_worker([*argv, *extra], close_fds=(lifeline,))
        command = [sys.executable, "-m", "taskengine", *argv, *extra]
        return subprocess.Popen(command, process_group=0, pass_fds=(watch,))

    def restart(index: int) -> Child | None:
        return None if received else spawn(index)

    def forward(signum: int, frame: object) -> None:
        if not received:
            say(
                f"{signal.Signals(signum).name}: stopping {len(children)} worker processes "
                "gracefully (Ctrl-C again to skip the wait)"
            )
        received.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in SIGNALS}
    try:
        for index in range(count):
            children.append(spawn(index))
        say(
            f"started {count} worker processes: pids "
            + ", ".join(str(child.pid) for child in children)
        )
        codes = wait_all(children, restart)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(lifeline)
        os.close(watch)  # kept for replacements; only `lifeline` decides the children's EOF
    failed = [(child.pid, code) for child, code in zip(children, codes, strict=True) if code]
    return EXIT_FAILURE if failed else EXIT_OK


def wait_all(children: list[C], restart: Callable[[int], C | None] | None = None) -> list[int]:
    """Wait for every child; say so as soon as one exits with an error. A child ended by its
    watchdog or killed by a signal (a crash, the OOM killer) is replaced in `children` by what
    `restart` starts for its index (None: not replaced, as while stopping)."""
    from taskengine.runtime.watchdog import EXIT_WATCHDOG  # the runtime loads only here

    codes: dict[int, int] = {}
    while len(codes) < len(children):
        for index, child in enumerate(children):
            if child.pid in codes or (code := child.poll()) is None:
                continue
            lost = code == EXIT_WATCHDOG or code < 0  # its watchdog, a crash, the OOM killer
            if lost and restart is not None and (new := restart(index)) is not None:
                children[index] = new
                why = "watchdog" if code == EXIT_WATCHDOG else signal.Signals(-code).name
                click.echo(
                    f"error: worker process {child.pid} exited with {code} ({why}); "
                    f"restarted as pid {new.pid}",
                    err=True,
                )
                continue
            codes[child.pid] = code
            if code:
                click.echo(f"error: worker process {child.pid} exited with {code}", err=True)
        time.sleep(0.1)
    return [codes[child.pid] for child in children]
