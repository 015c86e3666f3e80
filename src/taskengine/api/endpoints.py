"""The route table: every documented endpoint's method, path and operation id, in one place.

The router binds each entry to its handler (`bind`) and the OpenAPI document describes each
entry by its operation id, so neither can name an endpoint the other lacks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]


class Endpoint(NamedTuple):
    """One method on one path, named by its OpenAPI operation id."""

    method: str
    path: str
    operation: str


TASKS = (
    Endpoint("POST", "/api/tasks", "submitTasks"),
    Endpoint("GET", "/api/tasks", "listTasks"),
    Endpoint("GET", "/api/tasks/{task_id}", "getTask"),
    Endpoint("DELETE", "/api/tasks/{task_id}", "cancelTask"),
    Endpoint("POST", "/api/tasks/{task_id}/retry", "retryTask"),
)
WORKFLOWS = (
    Endpoint("POST", "/api/workflows", "submitWorkflow"),
    Endpoint("GET", "/api/workflows/{workflow_id}", "getWorkflow"),
    Endpoint("POST", "/api/workflows/{workflow_id}/cancel", "cancelWorkflow"),
    Endpoint("POST", "/api/workflows/{workflow_id}/replay", "replayWorkflow"),
)
ADMIN = (
    Endpoint("GET", "/api/workers", "listWorkers"),
    Endpoint("GET", "/api/instances", "listInstances"),
    Endpoint("POST", "/api/instances/{instance}/control", "controlInstance"),
    Endpoint("GET", "/api/queues", "listQueues"),
    Endpoint("POST", "/api/queues/{queue}/pause", "pauseQueue"),
    Endpoint("POST", "/api/queues/{queue}/resume", "resumeQueue"),
    Endpoint("GET", "/api/limits", "listLimits"),
    Endpoint("PUT", "/api/limits/{scope}/{name}", "setLimit"),
    Endpoint("GET", "/api/dead-letters", "listDeadLetters"),
    Endpoint("GET", "/healthz", "healthz"),
    Endpoint("GET", "/readyz", "readyz"),
)
OPERATOR = (
    Endpoint("POST", "/api/queues/{queue}/purge", "purgeQueue"),
    Endpoint("POST", "/api/bulk", "bulkTasks"),
    Endpoint("GET", "/api/scheduled", "listScheduled"),
    Endpoint("GET", "/api/retrying", "listRetrying"),
    Endpoint("GET", "/api/me", "getSession"),
    Endpoint("GET", "/api/types", "listTaskTypes"),
    Endpoint("GET", "/api/periodic", "listPeriodic"),
    Endpoint("POST", "/api/periodic/{name}/enable", "enablePeriodic"),
    Endpoint("POST", "/api/periodic/{name}/disable", "disablePeriodic"),
)
LIVE = (
    Endpoint("GET", "/api/metrics", "getMetrics"),
    Endpoint("GET", "/api/metrics/history", "getMetricsHistory"),
    Endpoint("GET", "/api/events", "streamEvents"),
    Endpoint("GET", "/metrics", "getPrometheusMetrics"),
)
DOCUMENTED = (
    TASKS + WORKFLOWS + ADMIN + OPERATOR + LIVE
)  # what /openapi.json describes (not the docs and dashboard)


def bind(endpoints: Sequence[Endpoint], handlers: Mapping[str, Handler]) -> list[Route]:
    """One Route per endpoint, to the handler of its operation id; every handler is used."""
    unused = set(handlers) - {endpoint.operation for endpoint in endpoints}
    if unused:
        raise ValueError(f"handlers for no endpoint: {sorted(unused)}")
    return [
        Route(endpoint.path, handlers[endpoint.operation], methods=[endpoint.method])
        for endpoint in endpoints
    ]
