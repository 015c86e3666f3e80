"""POST /api/tasks submits under the current trace context, which an ASGI instrumentation sets.

No OpenTelemetry ASGI package here: a pure ASGI middleware opens the request span as such an
instrumentation would, and the app runs in-process (httpx's ASGI transport).
"""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import ASGIApp, Receive, Scope, Send

from taskengine.api import ApiContext, build_api
from taskengine.app import App
from taskengine.tracing import traceparent


def request_spans(app: ASGIApp, provider: TracerProvider) -> ASGIApp:
    """Wrap `app` so every HTTP request runs inside a server span."""
    tracer = provider.get_tracer("asgi")

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        with tracer.start_as_current_span(f"{scope['method']} {scope['path']}"):
            await app(scope, receive, send)

    return traced


async def test_a_task_submitted_over_http_carries_the_requests_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = App("memory://", tracer_provider=provider, builtins=True)
    await app.start()
    transport = httpx.ASGITransport(app=request_spans(build_api(ApiContext(app=app)), provider))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            body = {"type": "cpu.primes", "payload": {"limit": 10}}
            response = await client.post("/api/tasks", json=body)
            assert response.status_code == 201, response.text
            task_id = response.json()["id"]
        stored = await app.get(task_id)
    finally:
        await app.close()
        provider.shutdown()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    request, submit = spans["POST /api/tasks"], spans["taskengine.submit"]
    assert submit.parent is not None and request.context is not None
    assert submit.parent.span_id == request.context.span_id
    assert (submit.attributes or {})["taskengine.task.id"] == task_id
    assert stored.trace == traceparent(submit.get_span_context())
