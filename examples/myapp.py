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
    for page in range(payload["pages"]):
        ctx.progress(page + 1, payload["pages"], f"page {page + 1}")  # shown live, cheap
    return {"pages": payload["pages"]}


async def main() -> None:
    async with app:
        engine = app.engine()  # workers in this process; or `taskengine --app myapp:app worker`
        await engine.start()
        try:
            task_id = await app.submit("email.send", {"to": "a@example.com", "subject": "hi"})
            print(await app.result(task_id, timeout=60))
        finally:
            await engine.stop()


if __name__ == "__main__":
    asyncio.run(main())
