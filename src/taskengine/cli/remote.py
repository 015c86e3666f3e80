"""The Client over HTTP: drives a remote `taskengine serve` through its REST API (`--api URL`).

httpx is imported only when a command connects. Answers are converted back to the engine's own
types (TaskRecord) or kept as the views they are (workers, queues), so output and `--json` are
the same as in direct mode (and as the API's own JSON), and
HTTP errors become the same one-line messages and exit codes (see `http_error`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import quote, urlsplit

import msgspec

from taskengine.cli.errors import (
    EXIT_FAILURE,
    EXIT_QUEUE_FULL,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    fail,
)

if TYPE_CHECKING:
    import httpx

    from taskengine.app import TaskRequest
    from taskengine.brokers import CancelResult, Page, ReplayResult, TaskFilter
    from taskengine.model import TaskRecord
    from taskengine.model.limits import Limit
    from taskengine.views import (
        InstanceView,
        LimitView,
        PeriodicView,
        QueueView,
        Submitted,
        TaskView,
        TypeView,
        WorkerView,
        WorkflowAction,
        WorkflowView,
    )

T = TypeVar("T")
MAX_PAGE = 500  # the API's largest page; longer --limit values are fetched page by page
REPLAY_CONCURRENCY = 8
TIMEOUT = 10.0
TOKEN_HINT = "see --token or $TASKENGINE_API_TOKEN"


class HttpClient:
    """The Client interface (cli.client.Client) over the REST API of a `taskengine serve`."""

    def __init__(self, url: str, token: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            fail(f"--api {url!r}: use an http:// or https:// URL", EXIT_USAGE)
        self.url = url.rstrip("/")
        self.token = token or None
        self._http: httpx.AsyncClient | None = None

    def check(self, request: TaskRequest) -> None:
        """Nothing to check here: the server validates against its own task types."""

    async def start(self) -> None:
        """Open the connection pool (the first request shows whether the server answers)."""
        import httpx

        headers = {"Accept": "application/json", "User-Agent": "taskengine-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=TIMEOUT)

    async def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def now(self) -> float:
        """This machine's clock (the server's is not exposed)."""
        return time.time()

    # -- tasks ----------------------------------------------------------------------------------

    async def submit(self, request: TaskRequest) -> Submitted:
        """POST /api/tasks with the set fields of `request`."""
        from taskengine.views import Submitted

        body = {
            name: value
            for name, value in msgspec.structs.asdict(request).items()
            if value is not None
        }
        response = await self._request("POST", "/api/tasks", body=body)
        return self._decode(response, Submitted)

    async def get(self, task_id: str) -> TaskRecord:
        """GET /api/tasks/{id}; 404 -> TaskNotFound's message and exit code."""
        from taskengine.views import TaskView

        response = await self._request("GET", f"/api/tasks/{_quote(task_id)}")
        return record_of(self._decode(response, TaskView))

    async def list_tasks(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """GET /api/tasks, page by page up to `limit` tasks."""
        return await self._pages("/api/tasks", filter_params(task_filter), limit, cursor)

    async def cancel(self, task_id: str) -> CancelResult:
        """DELETE /api/tasks/{id}: 200 cancelled, 202 requested, 404 not found, 409 finished."""
        from taskengine.brokers import CancelResult
        from taskengine.views import CancelView

        response = await self._send("DELETE", f"/api/tasks/{_quote(task_id)}")
        refused = {"task_not_found": CancelResult.NOT_FOUND, "task_finished": CancelResult.FINISHED}
        if not response.is_success:
            return self._refusal(response, refused)
        return CancelResult(self._decode(response, CancelView).result)

    async def replay(self, task_ids: Sequence[str]) -> list[ReplayResult]:
        """POST /api/tasks/{id}/retry for each id, a few at a time."""
        from taskengine.brokers import ReplayResult

        limit = asyncio.Semaphore(REPLAY_CONCURRENCY)

        async def one(task_id: str) -> ReplayResult:
            async with limit:
                response = await self._send("POST", f"/api/tasks/{_quote(task_id)}/retry")
            if not response.is_success:
                return self._refusal(response, refused)
            return ReplayResult.REPLAYED

        refused = {
            "task_not_found": ReplayResult.NOT_FOUND,
            "not_replayable": ReplayResult.NOT_REPLAYABLE,
        }

        return list(await asyncio.gather(*(one(task_id) for task_id in task_ids)))

    # -- the system -----------------------------------------------------------------------------

    async def workflow(self, workflow_id: str) -> WorkflowView:
        """GET /api/workflows/{id}."""
        from taskengine.views import WorkflowView

        response = await self._request("GET", f"/api/workflows/{_quote(workflow_id)}")
        return self._decode(response, WorkflowView)

    async def cancel_workflow(self, workflow_id: str) -> WorkflowAction:
        """POST /api/workflows/{id}/cancel."""
        from taskengine.views import WorkflowAction

        path = f"/api/workflows/{_quote(workflow_id)}/cancel"
        return self._decode(await self._request("POST", path), WorkflowAction)

    async def replay_workflow(self, workflow_id: str) -> WorkflowAction:
        """POST /api/workflows/{id}/replay."""
        from taskengine.views import WorkflowAction

        path = f"/api/workflows/{_quote(workflow_id)}/replay"
        return self._decode(await self._request("POST", path), WorkflowAction)

    async def workers(self, since: float) -> list[WorkerView]:
        """GET /api/workers (the server lists workers seen within 3 heartbeats), then `since`."""
        from taskengine.views import WorkerView

        response = await self._request("GET", "/api/workers")
        views = self._decode(response, dict[str, list[WorkerView]]).get("workers", [])
        oldest = self.now() - since
        return [view for view in views if view.last_heartbeat.timestamp() >= oldest]

    async def queues(self) -> list[QueueView]:
        """GET /api/queues."""
        from taskengine.views import QueueView

        response = await self._request("GET", "/api/queues")
        return self._decode(response, dict[str, list[QueueView]]).get("queues", [])

    async def metrics(self) -> dict[str, Any]:
        """GET /api/metrics: the server's counters, rates, latency, pool and process."""
        response = await self._request("GET", "/api/metrics")
        body: dict[str, Any] = {"source": "server", **self._decode(response, dict[str, Any])}
        return body

    async def instances(self) -> list[InstanceView]:
        """GET /api/instances."""
        from taskengine.views import InstanceView

        response = await self._request("GET", "/api/instances")
        return self._decode(response, dict[str, list[InstanceView]]).get("instances", [])

    async def control(self, instance: str, command: str, size: int | None) -> None:
        """POST /api/instances/{instance}/control."""
        body: dict[str, Any] = {"command": command}
        if size is not None:
            body["size"] = size
        await self._request("POST", f"/api/instances/{_quote(instance)}/control", body=body)

    async def purge_queue(self, name: str) -> int:
        """POST /api/queues/{name}/purge."""
        path = f"/api/queues/{_quote(name)}/purge"
        response = await self._request("POST", path, body={"confirm": True})
        return int(self._decode(response, dict[str, Any])["purged"])

    async def bulk(
        self, action: str, ids: Sequence[str] | None, task_filter: TaskFilter | None
    ) -> int:
        """POST /api/bulk (ids in requests of at most 10,000)."""
        if task_filter is not None:
            bodies: list[dict[str, Any]] = [{"action": action, "filter": filter_body(task_filter)}]
        else:
            given = list(ids or [])
            bodies = [
                {"action": action, "ids": given[start : start + 10_000]}
                for start in range(0, len(given), 10_000)
            ]
        touched = 0
        for body in bodies:
            response = await self._request("POST", "/api/bulk", body=body)
            touched += int(self._decode(response, dict[str, Any])["touched"])
        return touched

    async def scheduled(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """GET /api/scheduled, page by page up to `limit` tasks."""
        return await self._pages("/api/scheduled", filter_params(task_filter), limit, cursor)

    async def retrying(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """GET /api/retrying, page by page up to `limit` tasks."""
        return await self._pages("/api/retrying", filter_params(task_filter), limit, cursor)

    async def task_types(self) -> list[TypeView]:
        """GET /api/types."""
        from taskengine.views import TypeView

        response = await self._request("GET", "/api/types")
        return self._decode(response, dict[str, list[TypeView]]).get("types", [])

    async def periodic(self) -> list[PeriodicView]:
        """GET /api/periodic."""
        from taskengine.views import PeriodicView

        response = await self._request("GET", "/api/periodic")
        return self._decode(response, dict[str, list[PeriodicView]]).get("periodic", [])

    async def set_periodic(self, name: str, enabled: bool) -> bool:
        """POST /api/periodic/{name}/enable or /disable; 404: no such entry."""
        action = "enable" if enabled else "disable"
        response = await self._send("POST", f"/api/periodic/{_quote(name)}/{action}")
        if not response.is_success:
            return self._refusal(response, {"periodic_not_found": False})
        return True

    async def pause(self, names: Sequence[str]) -> None:
        """POST /api/queues/{name}/pause for each name."""
        for name in names:
            await self._request("POST", f"/api/queues/{_quote(name)}/pause")

    async def resume(self, names: Sequence[str]) -> None:
        """POST /api/queues/{name}/resume for each name."""
        for name in names:
            await self._request("POST", f"/api/queues/{_quote(name)}/resume")

    async def limits(self) -> list[LimitView]:
        """GET /api/limits."""
        from taskengine.views import LimitView

        response = await self._request("GET", "/api/limits")
        return self._decode(response, dict[str, list[LimitView]]).get("limits", [])

    async def set_limit(self, limit: Limit) -> LimitView:
        """PUT /api/limits/{scope}/{name}."""
        from taskengine.views import LimitView

        body: dict[str, Any] = {}
        if limit.max_concurrency is not None:
            body["max_concurrency"] = limit.max_concurrency
        if limit.rate is not None:
            body["rate_limit"] = _rate_text(limit.rate)
        if limit.burst is not None:
            body["burst"] = limit.burst
        path = f"/api/limits/{limit.scope}/{_quote(limit.name)}"
        return self._decode(await self._request("PUT", path, body=body), LimitView)

    # -- plumbing -------------------------------------------------------------------------------

    async def _pages(
        self, path: str, params: dict[str, Any], limit: int, cursor: str | None
    ) -> Page:
        from taskengine.brokers import Page
        from taskengine.views import TaskPage

        items: list[TaskRecord] = []
        while True:
            size = min(limit - len(items), MAX_PAGE)
            query = {**params, "limit": size}
            if cursor is not None:
                query["cursor"] = cursor
            page = self._decode(await self._request("GET", path, params=query), TaskPage)
            items += [record_of(view) for view in page.items]
            cursor = page.next_cursor
            if cursor is None or len(items) >= limit or not page.items:
                return Page(items, cursor)

    async def _send(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """Send one request; a transport failure is 'cannot reach' (exit 4)."""
        import httpx

        assert self._http is not None, "start() first"
        content = None if body is None else _encode(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            return await self._http.request(
                method, path, content=content, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self.url}: {_describe(exc)}", EXIT_UNAVAILABLE)

    async def _request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """Send one request; an error answer raises its CliError."""
        response = await self._send(method, path, body=body, params=params)
        if not response.is_success:
            code, message = _error_of(response)
            raise http_error(self.url, response.status_code, code, message)
        return response

    def _refusal(self, response: httpx.Response, answers: dict[str, T]) -> T:
        """The answer an expected refusal (by error code) stands for; others raise."""
        code, message = _error_of(response)
        if code in answers and response.status_code in (404, 409):
            return answers[code]
        raise http_error(self.url, response.status_code, code, message)

    def _decode(self, response: httpx.Response, kind: type[T]) -> T:
        try:
            return msgspec.json.decode(response.content, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _not_an_api(self.url, f"unexpected answer to {response.request.url.path}: {exc}")


def http_error(url: str, status: int, code: str | None, message: str) -> CliError:
    """The CLI error for an API error answer: the same message and exit code as direct mode."""
    if status in (401, 403) and code != "cross_site_request":
        return CliError(f"{message} ({TOKEN_HINT})", EXIT_USAGE)
    if status == 404 and code in ("task_not_found", "workflow_not_found"):
        return CliError(message, EXIT_FAILURE)
    if status == 429:
        return CliError(message, EXIT_QUEUE_FULL)
    if status in (502, 503, 504):
        return CliError(f"cannot reach {url}: {message}", EXIT_UNAVAILABLE)
    if code is None or status in (404, 405):  # not a Task Engine API, or not this version
        return CliError(f"cannot reach the Task Engine API at {url}: {message}", EXIT_UNAVAILABLE)
    if status in (400, 401, 403, 413, 415, 422):
        return CliError(message, EXIT_USAGE)
    if status >= 500:
        return CliError(f"the server at {url} failed: {message} (HTTP {status})", EXIT_FAILURE)
    return CliError(message, EXIT_FAILURE)  # 409 and the like: the action did not apply


def filter_params(task_filter: TaskFilter) -> dict[str, Any]:
    """A TaskFilter as the list endpoints' query parameters."""
    params: dict[str, Any] = {}
    if task_filter.states:
        params["state"] = sorted(state.value for state in task_filter.states)
    if task_filter.types:
        params["type"] = sorted(task_filter.types)
    if task_filter.queues:
        params["queue"] = sorted(task_filter.queues)
    if task_filter.priorities:
        params["priority"] = sorted(priority.name for priority in task_filter.priorities)
    if task_filter.created_after is not None:
        params["created_after"] = repr(task_filter.created_after)
    if task_filter.created_before is not None:
        params["created_before"] = repr(task_filter.created_before)
    return params


def filter_body(task_filter: TaskFilter) -> dict[str, Any]:
    """A TaskFilter as the `filter` of POST /api/bulk (times in epoch seconds)."""
    body = filter_params(task_filter)
    for name in ("created_after", "created_before"):
        if name in body:
            body[name] = float(body[name])
    return body


def record_of(view: TaskView) -> TaskRecord:
    """The TaskRecord an API TaskView shows (the lease expiry is not part of the API)."""
    from taskengine.model import (
        AttemptRecord,
        Priority,
        Progress,
        ResultStatus,
        TaskRecord,
        TaskResult,
    )
    from taskengine.model.state import TaskState

    result, progress = view.result, view.progress
    return TaskRecord(
        id=view.id,
        type=view.type,
        payload=view.payload,
        priority=Priority.parse(view.priority),
        queue=view.queue,
        created_at=view.created_at.timestamp(),
        run_at=view.run_at.timestamp(),
        timeout=view.timeout,
        max_attempts=view.max_attempts,
        attempt=view.attempt,
        idempotency_key=view.idempotency_key,
        state=TaskState(view.state),
        updated_at=view.updated_at.timestamp(),
        started_at=_epoch(view.started_at),
        finished_at=_epoch(view.finished_at),
        worker_id=view.worker_id,
        cancel_requested=view.cancel_requested,
        depends_on=tuple(view.depends_on),
        on_parent_failure=view.on_parent_failure,
        waiting=view.waiting,
        workflow=view.workflow,
        result=None
        if result is None
        else TaskResult(
            task_id=result.task_id,
            status=ResultStatus(result.status),
            data=result.data,
            duration=result.duration,
            worker_id=result.worker_id,
            completed_at=result.completed_at.timestamp(),
            error=result.error,
            attempt=result.attempt,
        ),
        history=[
            AttemptRecord(
                attempt=line.attempt,
                status=ResultStatus(line.status),
                worker_id=line.worker_id,
                finished_at=line.finished_at.timestamp(),
                duration=line.duration,
                error=line.error,
                traceback=line.traceback,
            )
            for line in view.history
        ],
        progress=None
        if progress is None
        else Progress(
            done=progress.done,
            total=progress.total,
            note=progress.note,
            at=progress.at.timestamp(),
            attempt=progress.attempt,
        ),
    )


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _quote(segment: str) -> str:
    return quote(segment, safe="")


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    """The (code, message) of an error answer; code None when it is not the API's JSON shape."""
    try:
        error = msgspec.json.decode(response.content)["error"]
        return str(error["code"]), str(error["message"]).splitlines()[0]
    except (msgspec.DecodeError, TypeError, KeyError, IndexError):
        return None, f"HTTP {response.status_code} {response.reason_phrase}".strip()


def _describe(exc: Exception) -> str:
    import httpx

    text = str(exc).strip()
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed ({text})" if text else "connection failed"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {TIMEOUT:g}s"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _not_an_api(url: str, why: str) -> NoReturn:
    fail(f"cannot reach the Task Engine API at {url}: {why}", EXIT_UNAVAILABLE)


def _encode(body: Any) -> bytes:
    """JSON for a request; lone surrogates escaped (the server refuses them with a 422)."""
    try:
        return msgspec.json.encode(body)
    except UnicodeEncodeError:
        import json

        return json.dumps(body, ensure_ascii=True, allow_nan=False).encode()


def _rate_text(rate: float) -> str:
    """A rate per second as the API reads it: "100/s", or per minute or hour below one."""
    for unit, per in (("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if rate * per >= 1 or unit == "h":
            count = f"{rate * per:.6f}".rstrip("0").rstrip(".")
            return f"{count}/{unit}"
    raise AssertionError("unreachable")
