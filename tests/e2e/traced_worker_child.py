"""A worker process that traces with the OpenTelemetry SDK, for the tracing e2e test.

    python tests/e2e/traced_worker_child.py

The broker comes from TASKENGINE_BROKER_URL; finished spans go to the file named by
TRACE_SPANS_FILE, one JSON object a line. The SDK provider is set globally after the App is
built, as an application's startup code would; the pool runs until no task is due, then stops.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from taskengine.app import App

app = App(builtins=False)


@app.task("traced.echo")
async def echo(payload: Any) -> Any:
    return payload


def one_line(span: ReadableSpan) -> str:
    return json.dumps(json.loads(span.to_json())) + "\n"


async def run(provider: TracerProvider) -> None:
    trace.set_tracer_provider(provider)
    async with app:
        worker = app.engine(workers=2, idle_wait=0.05)
        await worker.start()
        await worker.run_until_idle(60)
        await worker.stop()
    provider.shutdown()


def main() -> None:
    with open(os.environ["TRACE_SPANS_FILE"], "w") as out:
        provider = TracerProvider()
        exporter = ConsoleSpanExporter(out=out, formatter=one_line)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        asyncio.run(run(provider))


if __name__ == "__main__":
    main()
