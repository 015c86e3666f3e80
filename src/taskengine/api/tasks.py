"""/api/tasks: submit (one or a batch), look up, list, cancel, retry."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskengine.api.auth import check_same_origin
from taskengine.api.body import check_json_content, convert, parse_json, read_body
from taskengine.api.context import ApiContext
from taskengine.api.endpoints import TASKS, bind
from taskengine.api.errors import ApiError
from taskengine.api.paging import bounded_page
from taskengine.api.query import cursor, page_limit, task_filter
from taskengine.api.schemas import (
    CancelView,
    SubmitBatch,
    SubmitTask,
    Submitted,
    SubmittedBatch,
    task_view,
)
from taskengine.app import TaskRequest, unique_locks
from taskengine.brokers import CancelResult, ReplayResult
from taskengine.errors import ValidationError
from taskengine.model import Task
from taskengine.model.ids import is_task_id
from taskengine.model.unique import UniqueLock

_encoder = msgspec.json.Encoder()
_INTEGER_FIELDS = ("priority", "max_attempts")


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Encode `value` (structs included) as a JSON response."""
    return Response(
        _encoder.encode(value), status_code=status, media_type="application/json", headers=headers
    )


def routes(ctx: ApiContext) -> list[Route]:
    """The /api/tasks routes bound to `ctx`."""

    async def submit(request: Request) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        check_json_content(request)
        raw = parse_json(await read_body(request, ctx.max_body), ctx.max_depth)
        header_key = request.headers.get("idempotency-key")
        is_batch = isinstance(raw, dict) and "tasks" in raw
        if is_batch:
            if header_key is not None:
                raise ApiError(
                    422,
                    "validation_error",
                    "the Idempotency-Key header applies to one task; in a batch set "
                    "idempotency_key on each task",
                )
            if isinstance(raw["tasks"], list):
                raw["tasks"] = [whole_numbers_as_int(item) for item in raw["tasks"]]
            items = convert(raw, SubmitBatch).tasks
        else:
            items = [convert(whole_numbers_as_int(raw), SubmitTask)]
            if header_key is not None:
                if not 0 < len(header_key) <= 256:
                    raise ApiError(422, "validation_error", "Idempotency-Key is 1-256 characters")
                body_key = items[0].idempotency_key
                if body_key is not None and body_key != header_key:
                    raise ApiError(
                        422,
                        "ambiguous_idempotency_key",
                        f"the Idempotency-Key header ({header_key!r}) and the body's "
                        f"idempotency_key ({body_key!r}) differ: send one",
                    )
                items[0].idempotency_key = header_key
        tasks = [_build(ctx, item, index, len(items)) for index, item in enumerate(items)]
        results = await ctx.app.enqueue_tasks(tasks, _locks(items))
        if not is_batch:
            result = results[0]
            location = f"/api/tasks/{result.id}"
            return json_response(
                Submitted(result.id, result.created, location),
                201 if result.created else 200,
                {"Location": location},
            )
        return json_response(
            SubmittedBatch([Submitted(r.id, r.created, f"/api/tasks/{r.id}") for r in results]),
            201,
        )

    async def get_task(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        return json_response(task_view(await ctx.app.get(_task_id(request))))

    async def list_tasks(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        params = request.query_params
        body = await bounded_page(
            ctx.app.inspector,
            task_filter(params),
            page_limit(params),
            cursor(params),
            ctx.max_list_bytes,
        )
        return Response(body, media_type="application/json")

    async def cancel(request: Request) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        task_id = _task_id(request)
        result = await ctx.app.cancel(task_id)
        if result is CancelResult.NOT_FOUND:
            raise ApiError(404, "task_not_found", f"no task {task_id!r}")
        if result is CancelResult.FINISHED:
            raise ApiError(409, "task_finished", f"task {task_id} has already finished")
        status = 200 if result is CancelResult.CANCELLED else 202
        return json_response(CancelView(task_id, str(result)), status)

    async def retry(request: Request) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        task_id = _task_id(request)
        result = await ctx.app.retry(task_id)
        if result is ReplayResult.NOT_FOUND:
            raise ApiError(404, "task_not_found", f"no task {task_id!r}")
        if result is ReplayResult.NOT_REPLAYABLE:
            raise ApiError(409, "not_replayable", f"task {task_id} is not dead or cancelled")
        return json_response(task_view(await ctx.app.get(task_id)))

    return bind(
        TASKS,
        {
            "submitTasks": submit,
            "listTasks": list_tasks,
            "getTask": get_task,
            "cancelTask": cancel,
            "retryTask": retry,
        },
    )


def _locks(items: list[SubmitTask]) -> list[UniqueLock | None] | None:
    """Each item's unique lock (ADR 0038), aligned; None when none asks for one."""
    try:
        return unique_locks(
            [
                TaskRequest(
                    type=item.type,
                    payload=item.payload,
                    unique_for=item.unique_for,
                    unique_while=item.unique_while,
                    unique_key=item.unique_key,
                )
                for item in items
            ]
        )
    except ValidationError as exc:
        raise ApiError(422, exc.code, str(exc)) from None


def whole_numbers_as_int(item: Any) -> Any:
    """JSON Schema counts 1.0 as an integer, as the document does: msgspec wants an int."""
    if isinstance(item, dict):
        for name in _INTEGER_FIELDS:
            value = item.get(name)
            if isinstance(value, float) and value.is_integer():
                item[name] = int(value)
    return item


def _task_id(request: Request) -> str:
    """The path's task id; 404 at once for one no task can have (never sent to the broker)."""
    task_id: str = request.path_params["task_id"]
    if not is_task_id(task_id):
        raise ApiError(404, "task_not_found", f"no task {task_id!r}")
    return task_id


def request_of(item: SubmitTask) -> TaskRequest:
    """The TaskRequest a submitted item stands for."""
    return TaskRequest(
        type=item.type,
        payload=item.payload,
        priority=item.priority,
        queue=item.queue,
        delay=item.delay,
        run_at=item.run_at_epoch(),
        timeout=item.timeout,
        max_attempts=item.max_attempts,
        idempotency_key=item.idempotency_key,
        keep_result=item.keep_result,
        depends_on=item.depends_on,
        on_parent_failure=item.on_parent_failure,
        unique_for=item.unique_for,
        unique_while=item.unique_while,
        unique_key=item.unique_key,
    )


def _build(ctx: ApiContext, item: SubmitTask, index: int, count: int) -> Task:
    try:
        return ctx.app.build(request_of(item))
    except ValidationError as exc:
        where = f"tasks[{index}]: " if count > 1 else ""
        raise ApiError(422, exc.code, f"{where}{exc}") from None
