"""Handlers that never yield, for the watchdog tests: `taskengine --app tests.e2e.stuck_app:app`.

`stuck.loop` spins on the event loop (an async handler that never awaits), `stuck.thread` in its
thread (1 s timeouts), `stuck.process` in a process-pool child after writing that child's pid to
payload["pid_file"].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from taskengine.app import App

app = App(builtins=False)


@app.task("stuck.loop", timeout=1, max_attempts=2)
async def spin_on_the_loop(payload: Any) -> None:
    while True:
        pass


@app.task("stuck.thread", executor="thread", timeout=1, max_attempts=1)
def spin_in_a_thread(payload: Any) -> None:
    while True:
        pass


@app.task("stuck.process", executor="process", timeout=600, max_attempts=1)
def spin_in_a_child(payload: dict[str, str]) -> None:
    Path(payload["pid_file"]).write_text(str(os.getpid()))
    while True:
        pass
