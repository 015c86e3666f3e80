"""The App the chaos tests' engine processes load: `taskengine --app tests.chaos.app:app ...`.

One task type, `chaos.run`: sleeps `payload["seconds"]` on the event loop and appends
"start ID ATTEMPT PID" before and "finish ID ATTEMPT PID" after to the file named by
CHAOS_RUN_LOG (one `write` on an O_APPEND descriptor per line: lines from several processes
never interleave, and a SIGKILL cannot lose a line already written). No built-in types, so no
process pool is started and a SIGKILL leaves no orphan behind. Settings come from TASKENGINE_*.
"""

from __future__ import annotations

import asyncio
import os

from taskengine.app import App
from taskengine.registry import TaskContext

TASK_TYPE = "chaos.run"
RUN_LOG = "CHAOS_RUN_LOG"

app = App(builtins=False)
_log_fd: int | None = None


def note(event: str, ctx: TaskContext) -> None:
    """Append one run-log line (a no-op when CHAOS_RUN_LOG is unset)."""
    global _log_fd
    path = os.environ.get(RUN_LOG)
    if not path:
        return
    if _log_fd is None:
        _log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_log_fd, f"{event} {ctx.task_id} {ctx.attempt} {os.getpid()}\n".encode())


@app.task(TASK_TYPE, max_attempts=100)
async def run(payload: dict[str, float], ctx: TaskContext) -> dict[str, int]:
    note("start", ctx)
    await asyncio.sleep(payload.get("seconds", 0.0))
    note("finish", ctx)
    return {"pid": os.getpid(), "attempt": ctx.attempt}
