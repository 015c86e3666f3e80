"""Handlers that never yield, for the watchdog tests: `taskengine --app tests.e2e.stuck_app:app`.

`stuck.loop` spins on the event loop (an async handler that never awaits); `stuck.thread`
spins in its thread. Both have a 1 s timeout and two attempts.
"""

from __future__ import annotations

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
