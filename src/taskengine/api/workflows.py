"""/api/workflows: submit a DAG in one batch, look a workflow up, cancel or replay it whole."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskengine.api.auth import check_same_origin
from taskengine.api.body import check_json_content, convert, parse_json, read_body
from taskengine.api.context import ApiContext
from taskengine.api.endpoints import WORKFLOWS, bind
from taskengine.api.errors import ApiError
from taskengine.api.schemas import SubmitWorkflow, WorkflowAction, WorkflowSubmitted
from taskengine.api.tasks import json_response, request_of, whole_numbers_as_int
from taskengine.errors import ValidationError
from taskengine.model.ids import is_task_id
from taskengine.views import workflow_view
from taskengine.workflows import Node, workflow_state


def routes(ctx: ApiContext) -> list[Route]:
    """The /api/workflows routes bound to `ctx`."""

    async def submit(request: Request) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        check_json_content(request)
        raw = parse_json(await read_body(request, ctx.max_body), ctx.max_depth)
        if isinstance(raw, dict) and isinstance(raw.get("nodes"), list):
            for node in raw["nodes"]:
                if isinstance(node, dict) and "task" in node:
                    node["task"] = whole_numbers_as_int(node["task"])
        body = convert(raw, SubmitWorkflow)
        try:
            nodes = [
                Node(
                    name=step.name,
                    task=request_of(step.task),
                    after=step.after,
                    on_parent_failure=step.on_parent_failure,
                )
                for step in body.nodes
            ]
            submitted = await ctx.app.submit_workflow(nodes)
        except ValidationError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        location = f"/api/workflows/{submitted.id}"
        return json_response(
            WorkflowSubmitted(submitted.id, submitted.tasks, location), 201, {"Location": location}
        )

    async def get_workflow(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        workflow_id = _workflow_id(request)
        records = await ctx.app.workflow(workflow_id)
        return json_response(workflow_view(workflow_id, records, workflow_state(records)))

    async def cancel(request: Request) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        workflow_id = _workflow_id(request)
        answers = await ctx.app.cancel_workflow(workflow_id)
        return json_response(WorkflowAction(workflow_id, {k: str(v) for k, v in answers.items()}))

    async def replay(request: Request) -> Response:
        ctx.tokens.check(request, "admin")
        check_same_origin(request)
        workflow_id = _workflow_id(request)
        answers = await ctx.app.replay_workflow(workflow_id)
        return json_response(WorkflowAction(workflow_id, {k: str(v) for k, v in answers.items()}))

    return bind(
        WORKFLOWS,
        {
            "submitWorkflow": submit,
            "getWorkflow": get_workflow,
            "cancelWorkflow": cancel,
            "replayWorkflow": replay,
        },
    )


def _workflow_id(request: Request) -> str:
    """The path's workflow id; 404 at once for one no workflow can have."""
    workflow_id: str = request.path_params["workflow_id"]
    if not is_task_id(workflow_id):
        raise ApiError(404, "workflow_not_found", f"no workflow {workflow_id!r}")
    return workflow_id
