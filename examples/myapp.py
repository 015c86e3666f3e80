# myapp.py
import asyncio

import msgspec

from taskengine import App, NoRetry
from taskengine.registry import TaskContext

app = App("sqlite:///tasks.db")  # your task types only (builtins=True adds cpu.*, io.*, time.*)


class Email(msgspec.Struct):
    to: str
    subject: str


@app.task("email.send", max_attempts=5, timeout=30)
async def send(email: Email) -> dict:
    # Payloads are validated against Email when submitted, and converted when run.
    if email.to.endswith(".invalid"):
        raise NoRetry("unknown domain")  # dead letter now, no retry
    return {"sent_to": email.to}


@app.task("report.render", executor="process")  # CPU-bound: runs in a child process
def render(payload: dict, ctx: TaskContext) -> dict:
    # A bare `dict` (list, str...) annotation costs one type check at submit, no conversion.
    for page in range(payload["pages"]):
        ctx.progress(page + 1, payload["pages"], f"page {page + 1}")  # shown live, cheap
    return {"pages": payload["pages"]}


async def main() -> None:
    async with app:
        engine = app.engine()  # workers in this process; or `taskengine --app myapp:app worker`
        await engine.start()
        try:
            # `send` is a typed handle: mypy checks the payload is an Email, msgspec at submit.
            task_id = await send.submit(Email(to="a@example.com", subject="hi"), priority="high")
            print(await app.result(task_id, timeout=60))
            # A batch is one broker round trip; keep_result=0: no record is kept once each succeeds.
            emails = [Email(to=f"user{n}@example.com", subject="hi") for n in range(3)]
            await send.submit_many(emails, keep_result=0)
        finally:
            await engine.stop()


if __name__ == "__main__":
    asyncio.run(main())
