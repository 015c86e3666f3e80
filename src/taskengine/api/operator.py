"""The operator's actions and views: purge a queue, bulk actions on tasks, the scheduled and
retrying tasks (issue 16 item 6; the remote control of instances is in admin.py)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskengine.api.auth import check_same_origin
from taskengine.api.body import check_json_content, convert, parse_json, read_body
from taskengine.api.context import ApiContext
from taskengine.api.endpoints import OPERATOR, bind
from taskengine.api.errors import ApiError
from taskengine.api.query import cursor, page_limit, task_filter
from taskengine.api.schemas import (
    BulkAnswer,
    BulkFilter,
    BulkRequest,
    PeriodicToggled,
    PurgeAnswer,
    PurgeRequest,
)
from taskengine.api.tasks import json_response
from taskengine.brokers import TaskFilter
from taskengine.errors import ValidationError
from taskengine.model import Priority, TaskState
from taskengine.model.task import validate_name
from taskengine.views import task_page


def routes(ctx: ApiContext) -> list[Route]:
    """The operator's routes bound to `ctx`."""
    inspector = ctx.app.inspector

    async def body_of(request: Request, kind: type[Any]) -> Any:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        check_json_content(request)
        return convert(parse_json(await read_body(request, ctx.max_body), ctx.max_depth), kind)

    async def purge(request: Request) -> Response:
        name = request.path_params["queue"]
        await body_of(request, PurgeRequest)  # `confirm: true`, or 422
        try:
            validate_name("queue", name)
        except ValidationError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        purged = await inspector.purge_queue(name)
        return json_response(PurgeAnswer(name, purged))

    async def bulk(request: Request) -> Response:
        wanted: BulkRequest = await body_of(request, BulkRequest)
        has_ids = wanted.ids is not msgspec.UNSET
        if has_ids == (wanted.filter is not msgspec.UNSET):
            raise ApiError(422, "validation_error", "give ids or filter (not both)")
        if has_ids:
            assert isinstance(wanted.ids, list)
            touched = await inspector.bulk(wanted.action, ids=wanted.ids)
        else:
            assert isinstance(wanted.filter, BulkFilter)
            touched = await inspector.bulk(wanted.action, task_filter=filter_of(wanted.filter))
        return json_response(BulkAnswer(wanted.action, touched))

    async def scheduled(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        params = request.query_params
        page = await inspector.scheduled(
            task_filter(params, states=frozenset()), page_limit(params), cursor(params)
        )
        return json_response(task_page(page))

    async def retrying(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        params = request.query_params
        page = await inspector.retrying(
            task_filter(params, states=frozenset()), page_limit(params), cursor(params)
        )
        return json_response(task_page(page))

    async def me(request: Request) -> Response:
        return json_response({"scope": ctx.tokens.scope(request)})

    async def types(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        return json_response({"types": await inspector.task_types(ctx.app.clock.now())})

    async def periodic(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        return json_response({"periodic": await inspector.periodic(ctx.app.clock.now())})

    async def toggle(request: Request, *, enabled: bool) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        name = request.path_params["name"]
        known = {view.name for view in await inspector.periodic(ctx.app.clock.now())}
        if name not in known:
            raise ApiError(404, "periodic_not_found", f"no periodic task {name!r}")
        await inspector.set_periodic(name, enabled=enabled)
        return json_response(PeriodicToggled(name, enabled))

    async def enable(request: Request) -> Response:
        return await toggle(request, enabled=True)

    async def disable(request: Request) -> Response:
        return await toggle(request, enabled=False)

    return bind(
        OPERATOR,
        {
            "purgeQueue": purge,
            "bulkTasks": bulk,
            "listScheduled": scheduled,
            "listRetrying": retrying,
            "getSession": me,
            "listTaskTypes": types,
            "listPeriodic": periodic,
            "enablePeriodic": enable,
            "disablePeriodic": disable,
        },
    )


def filter_of(given: BulkFilter) -> TaskFilter:
    """The TaskFilter a bulk request's filter names."""

    def some(values: Any) -> list[Any] | None:
        return None if values is msgspec.UNSET or not values else list(values)

    states, types, queues, priorities = (
        some(given.state),
        some(given.type),
        some(given.queue),
        some(given.priority),
    )
    after, before = given.created_after, given.created_before
    return TaskFilter(
        states=None if states is None else frozenset(TaskState(s) for s in states),
        types=None if types is None else frozenset(types),
        queues=None if queues is None else frozenset(queues),
        priorities=None
        if priorities is None
        else frozenset(Priority[p.upper()] for p in priorities),
        created_after=None if after is msgspec.UNSET else float(after),
        created_before=None if before is msgspec.UNSET else float(before),
    )
