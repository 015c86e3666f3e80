"""A FastAPI app that submits tasks and awaits their results, the engine living in its lifespan.

    pip install fastapi uvicorn
    uvicorn fastapi_app:api --port 8000          # from this directory
    curl -s -X POST localhost:8000/thumbnails -H 'content-type: application/json' \\
         -d '{"url": "https://example.com/cat.png", "width": 128}'

The lifespan opens the App and starts its worker pool with the web server, and stops both
(gracefully: running tasks finish or are handed back) when the server stops. In production
the workers usually run apart (`taskengine --app fastapi_app:app worker`), and the web app
only submits: set THUMBNAIL_WORKERS=0 for that.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from fastapi import FastAPI, HTTPException

from taskengine import App, QueueFull, ResultStatus, TaskNotFound, ValidationError

app = App(os.environ.get("TASKENGINE_BROKER_URL", "sqlite:///fastapi_example.db"))


class Thumbnail(msgspec.Struct):
    url: str
    width: int = 256


@app.task("thumbnail.make", timeout=60, max_attempts=3)
async def make_thumbnail(job: Thumbnail) -> dict[str, object]:
    # A real handler would fetch and resize the image; this one answers what it would make.
    return {"url": job.url, "width": job.width, "path": f"thumbs/{job.width}/{_name(job.url)}.png"}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    workers = int(os.environ.get("THUMBNAIL_WORKERS", "4"))
    async with app:  # connect to the broker (and close it after the server stops)
        if workers == 0:
            yield  # submit only; workers run elsewhere
            return
        engine = app.engine(workers=workers)
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()  # hand back what is not done; nothing is lost


api = FastAPI(lifespan=lifespan)


@api.post("/thumbnails")
async def create_thumbnail(body: dict[str, object]) -> dict[str, object]:
    """Submit a task and wait (up to 10 s) for its result."""
    task_id = await _submit(body)
    result = await app.result(task_id, timeout=10)
    if result.status is not ResultStatus.SUCCESS:
        raise HTTPException(502, result.error or str(result.status))
    return {"task_id": task_id, "result": result.data}


@api.post("/thumbnails/later", status_code=202)
async def create_thumbnail_later(body: dict[str, object]) -> dict[str, str]:
    """Submit and answer at once; GET /tasks/{id} tells how it went."""
    return {"task_id": await _submit(body)}


@api.get("/tasks/{task_id}")
async def task_state(task_id: str) -> dict[str, object]:
    """The task's state, and its result once it has one."""
    try:
        record = await app.get(task_id)
    except TaskNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    return {"state": str(record.state), "result": record.result.data if record.result else None}


async def _submit(body: dict[str, object]) -> str:
    """Submit a thumbnail task: a bad payload is a 422, a full queue a 429 (never dropped)."""
    try:
        return await app.submit("thumbnail.make", body)
    except ValidationError as exc:
        raise HTTPException(422, str(exc)) from exc
    except QueueFull as exc:
        raise HTTPException(429, str(exc)) from exc


def _name(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]
