"""API errors: one JSON shape with a stable code, and the status each engine error maps to."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from taskengine import logging as fields
from taskengine.errors import (
    BrokerUnavailable,
    ConfigurationError,
    IdempotencyConflict,
    QueueFull,
    TaskEngineError,
    TaskNotFound,
    ValidationError,
    WorkflowNotFound,
)
from taskengine.model.serializer import to_json

log = logging.getLogger("taskengine.api")


class ApiError(Exception):
    """An error answered as JSON: `{"error": {"code", "message"}}` with `status`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_response(error: ApiError) -> Response:
    """Render an ApiError."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details is not None:
        body["details"] = error.details
    return Response(
        to_json({"error": body}),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


def from_engine_error(exc: TaskEngineError) -> ApiError:
    """Map an engine error to its HTTP status, keeping its stable code."""
    if isinstance(exc, QueueFull):
        return ApiError(429, exc.code, str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, IdempotencyConflict):
        return ApiError(409, exc.code, str(exc))
    if isinstance(exc, TaskNotFound | WorkflowNotFound):
        return ApiError(404, exc.code, str(exc))
    if isinstance(exc, BrokerUnavailable):
        return ApiError(503, exc.code, str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, ValidationError):
        return ApiError(422, exc.code, str(exc))
    if isinstance(exc, ConfigurationError):
        return ApiError(500, exc.code, "the server is misconfigured")
    return ApiError(500, exc.code, str(exc))


async def handle_api_error(request: Request, exc: Exception) -> Response:
    """Starlette handler for ApiError."""
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def handle_engine_error(request: Request, exc: Exception) -> Response:
    """Starlette handler for TaskEngineError."""
    assert isinstance(exc, TaskEngineError)
    return error_response(from_engine_error(exc))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else: logged with its traceback, answered without one."""
    request_id = request.scope.get("state", {}).get(fields.REQUEST_ID)
    log.exception(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        extra={fields.REQUEST_ID: request_id},
    )
    if _is_broker_down(exc):
        return error_response(
            ApiError(
                503,
                "broker_unavailable",
                "the broker cannot be reached",
                headers={"Retry-After": "1"},
            )
        )
    return error_response(ApiError(500, "internal_error", "internal server error"))


def _is_broker_down(exc: BaseException) -> bool:
    import sqlite3

    return isinstance(exc, sqlite3.OperationalError | ConnectionError | OSError)
