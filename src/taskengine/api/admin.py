"""Workers, queues (pause/resume), limits (ADR 0038), dead letters and health checks."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskengine.api.auth import check_same_origin
from taskengine.api.body import check_json_content, convert, parse_json, read_body
from taskengine.api.context import ApiContext
from taskengine.api.endpoints import ADMIN, bind
from taskengine.api.errors import ApiError
from taskengine.api.paging import bounded_page
from taskengine.api.probe import readiness
from taskengine.api.query import cursor, page_limit, task_filter
from taskengine.api.schemas import (
    ControlRequest,
    ControlView,
    HealthView,
    LimitBody,
    instance_views,
    limit_view,
    worker_view,
)
from taskengine.api.tasks import json_response
from taskengine.brokers import ControlCommand
from taskengine.errors import ValidationError
from taskengine.model import TaskState
from taskengine.model.limits import Limit, LimitScope, check_limit_values, parse_rate
from taskengine.model.task import validate_name


def routes(ctx: ApiContext) -> list[Route]:
    """The admin and health routes bound to `ctx`."""
    inspector = ctx.app.inspector
    clock = ctx.app.clock

    async def workers(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        infos = await inspector.live_workers(clock.now())
        return json_response({"workers": [worker_view(info) for info in infos]})

    async def instances(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        now = clock.now()
        infos, reports = await asyncio.gather(inspector.live_workers(now), inspector.instances(now))
        return json_response({"instances": instance_views(infos, reports)})

    async def control(request: Request) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        check_json_content(request)
        instance = request.path_params["instance"]
        raw = parse_json(await read_body(request, ctx.max_body), ctx.max_depth)
        if (
            isinstance(raw, dict)
            and isinstance(raw.get("size"), float)
            and raw["size"].is_integer()
        ):
            raw["size"] = int(raw["size"])  # JSON Schema counts 1.0 as an integer
        body = convert(raw, ControlRequest)
        known = {info.instance for info in await inspector.live_workers(clock.now())}
        if instance not in known:
            raise ApiError(404, "instance_not_found", f"no live instance {instance!r}")
        command = ControlCommand(body.command)
        await inspector.control(instance, command, size=body.size)
        return json_response(ControlView(instance, command.value, body.size), 202)

    async def queues(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        views = await inspector.queues(clock.now(), ctx.live.own_instance())
        return json_response({"queues": views})

    async def pause(request: Request) -> Response:
        return await _toggle(request, pause=True)

    async def resume(request: Request) -> Response:
        return await _toggle(request, pause=False)

    async def _toggle(request: Request, *, pause: bool) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        name = request.path_params["queue"]
        try:
            validate_name("queue", name)
        except ValidationError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        await (inspector.pause([name]) if pause else inspector.resume([name]))
        return json_response({"queue": name, "paused": pause})

    async def list_limits(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        return json_response({"limits": [limit_view(lim) for lim in await inspector.limits()]})

    async def set_limit(request: Request) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        check_json_content(request)
        scope, name = request.path_params["scope"], request.path_params["name"]
        raw = parse_json(await read_body(request, ctx.max_body), ctx.max_depth)
        if isinstance(raw, dict):  # JSON Schema counts 3.0 as an integer, as the document does
            for field in ("max_concurrency", "burst"):
                value = raw.get(field)
                if isinstance(value, float) and value.is_integer():
                    raw[field] = int(value)
        body = convert(raw, LimitBody)
        try:
            if scope not in ("type", "queue"):
                raise ValidationError(f"scope must be 'type' or 'queue', got {scope!r}")
            validate_name(scope, name)
            rate = None if body.rate_limit is None else parse_rate(body.rate_limit)
            limit = check_limit_values(
                Limit(
                    scope=LimitScope(scope),
                    name=name,
                    max_concurrency=body.max_concurrency,
                    rate=rate,
                    burst=body.burst,
                )
            )
        except ValidationError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        await inspector.set_limits([limit])
        return json_response(limit_view(limit))

    async def dead_letters(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        params = request.query_params
        flt = task_filter(params, states=frozenset({TaskState.DEAD}))
        limit = page_limit(params)
        body = await bounded_page(inspector, flt, limit, cursor(params), ctx.max_list_bytes)
        return Response(body, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return json_response(HealthView("ok"))

    async def readyz(request: Request) -> Response:
        view, status = await readiness(ctx.app, ctx.worker)
        return json_response(view, status)

    return bind(
        ADMIN,
        {
            "listWorkers": workers,
            "listInstances": instances,
            "controlInstance": control,
            "listQueues": queues,
            "pauseQueue": pause,
            "resumeQueue": resume,
            "listLimits": list_limits,
            "setLimit": set_limit,
            "listDeadLetters": dead_letters,
            "healthz": healthz,
            "readyz": readyz,
        },
    )
