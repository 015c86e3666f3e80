"""A module-level App whose task types are typed handles (the process executor imports it)."""

from __future__ import annotations

import msgspec

from taskengine.app import App
from taskengine.registry import TaskContext
from taskengine.settings import Settings


class Email(msgspec.Struct, forbid_unknown_fields=True):
    """A typed payload: submit refuses anything else."""

    to: str
    subject: str = ""


app = App(settings=Settings(broker_url="memory://", idle_wait=0.05))


@app.task("email.send", max_attempts=3)
async def send(email: Email) -> str:
    """Return who it was sent to."""
    return f"sent to {email.to}"


@app.task("email.count", executor="process")
def count(email: Email) -> int:
    """Run in a child process: the child finds this handle by name and calls it."""
    return len(email.to)


@app.task("email.attempt")
async def attempt(email: Email, ctx: TaskContext) -> int:
    """A handler that asks for its context as well."""
    return ctx.attempt


@app.task("email.log", keep_result=0)
async def log(email: Email) -> None:
    """A high-volume type whose results nobody reads: no record is kept once it succeeds."""
