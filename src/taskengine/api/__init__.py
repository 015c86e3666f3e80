"""The HTTP API: a Starlette app over an App (and its worker, when this process runs one)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route

from taskengine.api import admin, dashboard, live, operator, tasks, workflows
from taskengine.api.context import ApiContext
from taskengine.api.errors import (
    ApiError,
    handle_api_error,
    handle_engine_error,
    handle_unexpected,
)
from taskengine.api.hosts import HostCheckMiddleware
from taskengine.api.middleware import (
    RequestLogMiddleware,
    SecurityHeadersMiddleware,
    UnexpectedErrorMiddleware,
)
from taskengine.api.openapi import DOCS_PAGE, DOCS_SCRIPT, openapi_document
from taskengine.errors import TaskEngineError

__all__ = ["ApiContext", "build_api"]


def build_api(ctx: ApiContext) -> Starlette:
    """The ASGI application serving the API of `ctx`."""

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def docs(request: Request) -> Response:
        return Response(DOCS_PAGE, media_type="text/html")

    async def docs_js(request: Request) -> Response:
        return Response(DOCS_SCRIPT, media_type="text/javascript")

    async def not_found(request: Request, exc: Exception) -> Response:
        return await handle_api_error(
            request, ApiError(404, "not_found", f"no route {request.url.path}")
        )

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        response = await handle_api_error(
            request, ApiError(405, "method_not_allowed", f"{request.method} is not allowed here")
        )
        response.headers["Allow"] = ", ".join(_allowed_methods(request, routes))
        return response

    routes: list[BaseRoute] = [
        *operator.routes(ctx),
        *tasks.routes(ctx),
        *workflows.routes(ctx),
        *admin.routes(ctx),
        *live.routes(ctx),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/docs.js", docs_js, methods=["GET"]),
        *dashboard.routes(),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: handle_api_error,
            TaskEngineError: handle_engine_error,
            404: not_found,
            405: method_not_allowed,
            Exception: handle_unexpected,
        },
    )
    # The last added runs first: log -> headers -> Host check -> the 500 of an error -> routes.
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(HostCheckMiddleware, allowed=ctx.allowed_hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestLogMiddleware)
    return app


def _allowed_methods(request: Request, routes: list[BaseRoute]) -> list[str]:
    """The methods some route serves at the request's path (one Route per method here)."""
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE and isinstance(route, Route) and route.methods:
            methods |= route.methods
    return sorted(methods)
