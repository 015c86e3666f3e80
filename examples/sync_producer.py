"""Submitting from synchronous code (a Django or Flask view, a management command, a script).

    taskengine --app sync_producer:app worker      # in one shell, from this directory
    python sync_producer.py                        # in another

`app.submit_sync(...)` submits from code without an event loop. Every call goes through
`app.sync()`, one client holding one broker connection (opened at the first call, on a
background thread) that all of the process's threads share: a view pays one round trip per
submission, not a new connection. `app.sync().submit_many([...])` stores a batch in one round
trip, and `app.sync().result(id, timeout)` blocks until a task is finished. (In async code,
await `app.submit` and `app.result` instead: a blocking call there is refused.)
"""

from __future__ import annotations

import os
import threading

import msgspec

from taskengine import App, ResultStatus, TaskRequest

app = App(os.environ.get("TASKENGINE_BROKER_URL", "sqlite:///sync_example.db"))


class Welcome(msgspec.Struct):
    user_id: int
    email: str


@app.task("email.welcome", max_attempts=5)
async def send_welcome(message: Welcome) -> dict[str, object]:
    return {"user_id": message.user_id, "sent_to": message.email}


# -- what a view does ------------------------------------------------------------------------


def signup_view(user_id: int, email: str) -> dict[str, str]:
    """A Django-style view: save the user (not shown), queue the welcome e-mail, answer at once."""
    task_id = app.submit_sync("email.welcome", {"user_id": user_id, "email": email})
    return {"status": "created", "welcome_task": task_id}


def import_view(rows: list[tuple[int, str]]) -> dict[str, list[str]]:
    """A bulk import: one task per row, stored in one round trip (all validated first)."""
    requests = [
        TaskRequest(type="email.welcome", payload={"user_id": uid, "email": email}, priority="low")
        for uid, email in rows
    ]
    return {"queued": app.sync().submit_many(requests)}


def main() -> None:
    answers: list[dict[str, str]] = []

    def handle_requests(first: int) -> None:  # a WSGI server's request thread
        for user_id in range(first, first + 5):
            answers.append(signup_view(user_id, f"user{user_id}@example.com"))

    threads = [threading.Thread(target=handle_requests, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    imported = import_view([(1000 + n, f"import{n}@example.com") for n in range(50)])

    ids = [answer["welcome_task"] for answer in answers] + imported["queued"]
    client = app.sync()
    results = [client.result(task_id, timeout=60) for task_id in ids]
    sent = sum(1 for result in results if result.status is ResultStatus.SUCCESS)
    print(f"{len(answers)} signups and {len(imported['queued'])} imports: {sent} e-mails sent")
    client.close()


if __name__ == "__main__":
    main()
