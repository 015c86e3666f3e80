"""Type-checked by tests/typing/test_handle_types.py, never run: each `# E:` line must be an
error mypy reports on that line, and each `reveal_type` must show the type after `# R:`."""

from __future__ import annotations

from typing import reveal_type

import msgspec

from taskengine.app import App
from taskengine.registry import TaskContext


class Email(msgspec.Struct):
    to: str


class Sms(msgspec.Struct):
    number: str


app = App("memory://")


@app.task("email.send")
async def send(email: Email) -> str:
    return email.to


@app.task("email.ctx")
def with_context(email: Email, ctx: TaskContext) -> int:
    return ctx.attempt


async def producer() -> None:
    reveal_type(await send.submit(Email(to="a")))  # R: str
    reveal_type(await send.submit_many([Email(to="a")], priority="high"))  # R: list[str]
    sig = send.signature(Email(to="a"), delay=5)
    reveal_type(sig)  # R: taskengine.handles.Signature[tests.typing.handles_snippet.Email]
    reveal_type(await send(Email(to="a")))  # R: str
    reveal_type(with_context(Email(to="a"), TaskContext("id", 1, "w")))  # R: int
    reveal_type(send.sync.submit(Email(to="a")))  # R: str
    await send.submit(Sms(number="1"))  # E: arg-type
    await send.submit({"to": "a"})  # E: arg-type
    await send.submit_many([Sms(number="1")])  # E: list-item
    send.signature(Sms(number="1"))  # E: arg-type
    await send.submit(Email(to="a"), priority=1.5)  # E: arg-type
    await send.submit(Email(to="a"), delay_seconds=5)  # E: call-arg
    send.sync.submit(Sms(number="1"))  # E: arg-type
    with_context(Email(to="a"))  # E: call-arg
