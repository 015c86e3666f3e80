"""The engine processes of `worker --processes N`, forked from a supervisor that loaded the engine.

A child started as `python -m taskengine worker` pays the interpreter's start and every import
again (a third of a second of CPU, more on a busy machine), N times over. The supervisor instead
imports what every child needs (the engine and the broker's client library, never the user's
app, whose import may open connections or start threads a fork would share) and forks: each
child begins with those modules loaded and runs the same `worker` command line. Where fork is
missing, or a thread already runs in the supervisor, children are started as new interpreters.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import NoReturn, Protocol

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Child(Protocol):
    """What the supervisor needs of a child process: `subprocess.Popen` has it too."""

    @property
    def pid(self) -> int:
        """The child's process id."""
        ...

    def poll(self) -> int | None:
        """The exit code once the child has exited (negative: the signal that ended it)."""
        ...

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the child, unless it has exited."""
        ...


class ForkedChild:
    """A child made by `fork_worker`: polled and signalled like a `subprocess.Popen`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the child has exited (negative: the signal that ended it)."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the child, unless it has exited (and been waited for)."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


def can_fork() -> bool:
    """Whether children may be forked: the platform forks and only this thread runs."""
    return hasattr(os, "fork") and threading.active_count() == 1


def preload(broker_url: str | None) -> None:
    """Import what every engine process imports: the engine, uvloop, the broker's client."""
    with contextlib.suppress(Exception):  # a bad setting is each child's to report, as before
        from taskengine.app import App
        from taskengine.cli.loading import _uvloop_factory

        _uvloop_factory()
        App(broker_url).broker  # noqa: B018 (built, not started: its client library loads)


def fork_worker(argv: Sequence[str], *, close_fds: Sequence[int] = ()) -> ForkedChild:
    """Fork a child that runs `taskengine <argv>` in its own process group and exits with its
    code; `close_fds` are closed in the child (the supervisor's end of the lifeline)."""
    sys.stdout.flush()
    sys.stderr.flush()
    # blocked across the fork: a signal must not reach the supervisor's handlers in the child
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            _child(argv, close_fds, blocked)
        with contextlib.suppress(OSError):  # here too, so the group is set when we return
            os.setpgid(pid, pid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return ForkedChild(pid)


def _child(
    argv: Sequence[str], close_fds: Sequence[int], mask: set[int | signal.Signals]
) -> NoReturn:
    code = 1
    try:
        os.setpgid(0, 0)  # like Popen(process_group=0): a terminal's Ctrl-C reaches us once
        for fd in close_fds:
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a new interpreter has
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        from taskengine.cli import cli

        try:
            cli.main(args=list(argv), prog_name="taskengine")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:  # what a normal interpreter exit runs (as multiprocessing's forked children do),
            # then no unwinding into the supervisor's frames
            getattr(threading, "_shutdown", lambda: None)()  # joins non-daemon threads
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
