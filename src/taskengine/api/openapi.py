"""The OpenAPI document, generated from the msgspec request/response types, and a docs page."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from taskengine.api.endpoints import DOCUMENTED
from taskengine.api.query import FILTERS, MAX_PAGE, NAME, TIME_SCHEMA
from taskengine.api.schemas import (
    API_VERSION,
    BulkAnswer,
    BulkRequest,
    CancelView,
    ControlRequest,
    ControlView,
    ErrorView,
    HealthView,
    InstanceView,
    LimitBody,
    LimitView,
    PeriodicToggled,
    PeriodicView,
    PurgeAnswer,
    PurgeRequest,
    QueueView,
    SubmitBatch,
    SubmitTask,
    Submitted,
    SubmittedBatch,
    SubmitWorkflow,
    TaskPage,
    TaskView,
    TypeView,
    WorkerView,
    WorkflowAction,
    WorkflowSubmitted,
    WorkflowView,
)
from taskengine.feed import HISTORY_RANGES
from taskengine.model.ids import TASK_ID_PATTERN

REF = "#/components/schemas/{name}"
_ERRORS = {
    "400": "malformed JSON or body",
    "401": "missing or invalid token",
    "403": "token scope too narrow, or a cross-site request",
    "404": "no such task or workflow (an id none can have included)",
    "409": "conflict with the task's state",
    "413": "body over 1 MiB",
    "415": "a body that is not declared as JSON",
    "422": "invalid field values",
    "429": "queue full (see Retry-After)",
    "503": "broker unavailable",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, Any], errors: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    responses = dict(ok)
    for code in errors:
        responses[code] = _json(_ref("ErrorView"), _ERRORS[code])
    return {"summary": summary, "responses": responses, **extra}


def _linked(answer: dict[str, Any], pointer: str, *operations: str) -> dict[str, Any]:
    """`answer` with links: the task id at `pointer` in its body feeds each of `operations`."""
    links = {
        operation: {
            "operationId": operation,
            "parameters": {"task_id": f"$response.body#{pointer}"},
        }
        for operation in operations
    }
    return {**answer, "links": links}


def _param(name: str, where: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema}


TASK_ID = _param("task_id", "path", {"type": "string", "pattern": TASK_ID_PATTERN}, True)
WORKFLOW_ID = _param("workflow_id", "path", {"type": "string", "pattern": TASK_ID_PATTERN}, True)
PERIODIC = _param("name", "path", {"type": "string", "minLength": 1, "maxLength": 128}, True)
INSTANCE = _param("instance", "path", {"type": "string", "minLength": 1, "maxLength": 200}, True)
QUEUE = _param("queue", "path", {"type": "string", "pattern": f"^{NAME}$"}, True)
LIST_PARAMS = [
    *(
        _param(name, "query", {"type": "array", "items": {"type": "string", "pattern": pattern}})
        for name, pattern in FILTERS.items()
    ),
    _param("created_after", "query", TIME_SCHEMA),
    _param("created_before", "query", TIME_SCHEMA),
    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    _param("cursor", "query", {"type": "string", "pattern": TASK_ID_PATTERN}),
]
# Server-Sent Events: OpenAPI 3.1 has `schema` describe one event (as schemathesis reads it).
EVENT = {
    "oneOf": [
        {
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"const": name},
                "data": {"type": "string", "contentMediaType": "application/json"},
            },
            "description": description,
        }
        for name, description in (
            ("history", "once, first: the body of /api/metrics/history"),
            ("tick", "every second: {point, metrics (the /api/metrics body), workers}"),
        )
    ]
}
# `delay` and `run_at` both set (not null) is refused: they are two ways to say one thing.
ONE_TASK = ("getTask", "cancelTask", "retryTask")
TOGGLED = {
    "type": "object",
    "properties": {"queue": {"type": "string"}, "paused": {"type": "boolean"}},
    "required": ["queue", "paused"],
}
# `size` is required by a resize and refused with any other command.
SIZE_FOR_RESIZE = {
    "if": {"properties": {"command": {"const": "resize"}}},
    "then": {"required": ["size"], "properties": {"size": {"type": "integer"}}},
    "else": {"properties": {"size": {"type": "null"}}},
}
# A bulk action names its tasks by `ids` or by `filter`: one of the two.
IDS_OR_FILTER = {"oneOf": [{"required": ["ids"]}, {"required": ["filter"]}]}
ONE_SCHEDULE = {
    "not": {
        "required": ["delay", "run_at"],
        "properties": {"delay": {"not": {"type": "null"}}, "run_at": {"not": {"type": "null"}}},
    }
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API."""
    _, components = msgspec.json.schema_components(
        [
            SubmitTask,
            SubmitBatch,
            Submitted,
            SubmittedBatch,
            TaskView,
            TaskPage,
            CancelView,
            WorkerView,
            QueueView,
            LimitBody,
            LimitView,
            HealthView,
            ErrorView,
            SubmitWorkflow,
            WorkflowSubmitted,
            WorkflowView,
            WorkflowAction,
            InstanceView,
            ControlRequest,
            ControlView,
            BulkRequest,
            BulkAnswer,
            PurgeRequest,
            PurgeAnswer,
            TypeView,
            PeriodicView,
            PeriodicToggled,
        ],
        ref_template=REF,
    )
    components["SubmitTask"] = {**components["SubmitTask"], **ONE_SCHEDULE}
    components["ControlRequest"] = {**components["ControlRequest"], **SIZE_FOR_RESIZE}
    components["BulkRequest"] = {**components["BulkRequest"], **IDS_OR_FILTER}
    submit_body = {"oneOf": [_ref("SubmitTask"), _ref("SubmitBatch")]}
    submitted = {"oneOf": [_ref("Submitted"), _ref("SubmittedBatch")]}
    operations = [
        _op(
            "Submit one task, or {tasks: [...]} as a batch",
            {
                "201": _linked(_json(submitted, "created"), "/id", *ONE_TASK),
                "200": _linked(
                    _json(_ref("Submitted"), "already submitted with this idempotency key"),
                    "/id",
                    *ONE_TASK,
                ),
            },
            ("400", "401", "403", "409", "413", "415", "422", "429", "503"),
            operationId="submitTasks",
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": submit_body}},
            },
            parameters=[
                {
                    **_param(
                        "Idempotency-Key",
                        "header",
                        {"type": "string", "minLength": 1, "maxLength": 256},
                    ),
                    "description": "one task only: with a batch body, or with a body "
                    "idempotency_key that differs, it is a 422",
                }
            ],
        ),
        _op(
            "List tasks, newest first",
            {"200": _linked(_json(_ref("TaskPage"), "a page"), "/items/0/id", *ONE_TASK)},
            ("401", "422"),
            parameters=LIST_PARAMS,
            operationId="listTasks",
        ),
        _op(
            "A task with its result and history",
            {"200": _json(_ref("TaskView"), "the task")},
            ("401", "404"),
            parameters=[TASK_ID],
            operationId="getTask",
        ),
        _op(
            "Cancel a queued or running task",
            {
                "200": _linked(
                    _json(_ref("CancelView"), "cancelled"), "/id", "getTask", "retryTask"
                ),
                "202": _linked(
                    _json(_ref("CancelView"), "cancel requested from its worker"),
                    "/id",
                    "getTask",
                ),
            },
            ("401", "403", "404", "409"),
            parameters=[TASK_ID],
            operationId="cancelTask",
        ),
        _op(
            "Queue a dead or cancelled task again",
            {
                "200": _linked(
                    _json(_ref("TaskView"), "queued again"), "/id", "getTask", "cancelTask"
                )
            },
            ("401", "403", "404", "409"),
            parameters=[TASK_ID],
            operationId="retryTask",
        ),
        _op(
            "Submit a workflow: a DAG of tasks (a chain, group or chord) in one batch",
            {"201": _json(_ref("WorkflowSubmitted"), "created")},
            ("400", "401", "403", "413", "415", "422", "429", "503"),
            operationId="submitWorkflow",
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("SubmitWorkflow")}},
            },
        ),
        _op(
            "A workflow: its state, its tasks parents first, and its edges",
            {"200": _json(_ref("WorkflowView"), "the workflow")},
            ("401", "404"),
            parameters=[WORKFLOW_ID],
            operationId="getWorkflow",
        ),
        _op(
            "Cancel every unfinished task of a workflow",
            {"200": _json(_ref("WorkflowAction"), "each task's answer")},
            ("401", "403", "404"),
            parameters=[WORKFLOW_ID],
            operationId="cancelWorkflow",
        ),
        _op(
            "Replay every dead or cancelled task of a workflow, parents first",
            {"200": _json(_ref("WorkflowAction"), "each task's answer")},
            ("401", "403", "404"),
            parameters=[WORKFLOW_ID],
            operationId="replayWorkflow",
        ),
        _op(
            "Every worker of every instance",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"workers": {"type": "array", "items": _ref("WorkerView")}},
                    },
                    "workers",
                )
            },
            ("401",),
            operationId="listWorkers",
        ),
        _op(
            "Every live engine instance: host, pid, workers, busy, draining, task types",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "instances": {"type": "array", "items": _ref("InstanceView")}
                        },
                    },
                    "instances",
                )
            },
            ("401",),
            operationId="listInstances",
        ),
        _op(
            "Remote control: drain, resume, resize or shut down an instance (within a second)",
            {"202": _json(_ref("ControlView"), "sent; the instance applies it")},
            ("400", "401", "403", "404", "413", "415", "422"),
            parameters=[INSTANCE],
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("ControlRequest")}},
            },
            operationId="controlInstance",
        ),
        _op(
            "Queues with counts and paused flags",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"queues": {"type": "array", "items": _ref("QueueView")}},
                    },
                    "queues",
                )
            },
            ("401",),
            operationId="listQueues",
        ),
        _op(
            "Pause a queue",
            {"200": _json(TOGGLED, "paused")},
            ("401", "403", "422"),
            parameters=[QUEUE],
            operationId="pauseQueue",
        ),
        _op(
            "Resume a queue",
            {"200": _json(TOGGLED, "resumed")},
            ("401", "403", "422"),
            parameters=[QUEUE],
            operationId="resumeQueue",
        ),
        _op(
            "Delete every queued task of a queue (the body confirms: {confirm: true})",
            {"200": _json(_ref("PurgeAnswer"), "how many were deleted")},
            ("400", "401", "403", "413", "415", "422"),
            parameters=[QUEUE],
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("PurgeRequest")}},
            },
            operationId="purgeQueue",
        ),
        _op(
            "Cancel, replay or delete the tasks `ids` names or every task `filter` matches",
            {"200": _json(_ref("BulkAnswer"), "how many tasks it changed")},
            ("400", "401", "403", "413", "415", "422"),
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("BulkRequest")}},
            },
            operationId="bulkTasks",
        ),
        _op(
            "Queued tasks due later (a future run_at), newest first",
            {"200": _json(_ref("TaskPage"), "a page (may hold fewer than limit, with a cursor)")},
            ("401", "422"),
            parameters=LIST_PARAMS[1:],
            operationId="listScheduled",
        ),
        _op(
            "Queued tasks that already ran an attempt (retrying), newest first",
            {"200": _json(_ref("TaskPage"), "a page (may hold fewer than limit, with a cursor)")},
            ("401", "422"),
            parameters=LIST_PARAMS[1:],
            operationId="listRetrying",
        ),
        _op(
            "The scope of the caller's token (the dashboard hides what it may not do)",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"scope": {"enum": ["admin", "read"]}},
                        "required": ["scope"],
                    },
                    "the scope",
                )
            },
            ("401",),
            operationId="getSession",
        ),
        _op(
            "Every task type of a live instance or of this server, with executor and limits",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"types": {"type": "array", "items": _ref("TypeView")}},
                    },
                    "task types",
                )
            },
            ("401",),
            operationId="listTaskTypes",
        ),
        _op(
            "Periodic tasks: cron, next slot, last fired, the scheduler's leader, enabled",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "periodic": {"type": "array", "items": _ref("PeriodicView")}
                        },
                    },
                    "periodic tasks",
                )
            },
            ("401",),
            operationId="listPeriodic",
        ),
        _op(
            "Enable a periodic task on every instance",
            {"200": _json(_ref("PeriodicToggled"), "enabled")},
            ("401", "403", "404"),
            parameters=[PERIODIC],
            operationId="enablePeriodic",
        ),
        _op(
            "Disable a periodic task on every instance (its slots are skipped, not caught up)",
            {"200": _json(_ref("PeriodicToggled"), "disabled")},
            ("401", "403", "404"),
            parameters=[PERIODIC],
            operationId="disablePeriodic",
        ),
        _op(
            "Rate and concurrency limits stored in the broker (ADR 0038)",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"limits": {"type": "array", "items": _ref("LimitView")}},
                    },
                    "limits, by scope and name",
                )
            },
            ("401",),
            operationId="listLimits",
        ),
        _op(
            "Set (or, with no field, remove) the limits of a task type or a queue",
            {"200": _json(_ref("LimitView"), "the limit now stored")},
            ("400", "401", "403", "413", "415", "422"),
            parameters=[
                _param("scope", "path", {"type": "string", "enum": ["type", "queue"]}, True),
                _param("name", "path", {"type": "string", "pattern": f"^{NAME}$"}, True),
            ],
            operationId="setLimit",
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("LimitBody")}},
            },
        ),
        _op(
            "Dead tasks, newest first",
            {"200": _json(_ref("TaskPage"), "a page")},
            ("401", "422"),
            parameters=LIST_PARAMS[1:],
            operationId="listDeadLetters",
        ),
        _op(
            "A JSON metrics snapshot",
            {"200": _json({"type": "object"}, "metrics")},
            ("401",),
            operationId="getMetrics",
        ),
        _op(
            "The metric history: the last five minutes or hour per second, the last day per minute",
            {"200": _json({"type": "object"}, "history points, oldest first, and their step")},
            ("401", "422"),
            parameters=[_param("range", "query", {"type": "string", "enum": list(HISTORY_RANGES)})],
            operationId="getMetricsHistory",
        ),
        _op(
            "Live feed (Server-Sent Events): `history` once, then a `tick` every second",
            {
                "200": {
                    "description": "an endless event stream",
                    "content": {"text/event-stream": {"schema": EVENT}},
                }
            },
            ("401",),
            operationId="streamEvents",
        ),
        _op(
            "Prometheus metrics (text exposition format)",
            {
                "200": {
                    "description": "metric families",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
            ("401",),
            operationId="getPrometheusMetrics",
        ),
        _op("Alive", {"200": _json(_ref("HealthView"), "alive")}, (), operationId="healthz"),
        _op(
            "Ready: broker reachable and pool running",
            {
                "200": _json(_ref("HealthView"), "ready"),
                "503": _json(_ref("HealthView"), "not ready"),
            },
            (),
            operationId="readyz",
        ),
    ]
    by_id = {operation["operationId"]: operation for operation in operations}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in DOCUMENTED:  # the router's table: a route without an operation fails here
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = by_id.pop(endpoint.operation)
    if by_id:
        raise ValueError(f"operations with no route: {sorted(by_id)}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Task Engine API", "version": API_VERSION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Task Engine API</title>
<link rel="icon" href="/favicon.ico"><link rel="stylesheet" href="/static/docs.css"></head>
<body><h1>Task Engine API</h1><p>The machine-readable document is at
<a href="/openapi.json"><code>/openapi.json</code></a>.</p><ul id="ops"></ul>
<script src="/docs.js"></script></body></html>
"""

DOCS_SCRIPT = """fetch('/openapi.json').then(r => r.json()).then(doc => {
  const list = document.getElementById('ops');
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const li = document.createElement('li');
      const code = document.createElement('code');
      code.textContent = method.toUpperCase() + ' ' + path;
      li.append(code, ' ' + op.summary + ' (' + Object.keys(op.responses).join(', ') + ')');
      list.append(li);
    }
  }
});
"""
