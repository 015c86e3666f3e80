"""Tracing across processes: a task submitted here runs in a worker process on a SQLite file,
and its run span there is a child of the submit span here (the context crossed the store)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskengine.app import App
from taskengine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("traced_worker_child.py")


async def run_worker(url: str, spans_file: Path) -> None:
    env = dict(os.environ)
    env["TASKENGINE_BROKER_URL"] = url
    env["TRACE_SPANS_FILE"] = str(spans_file)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()


async def test_a_run_in_another_process_is_a_child_of_the_submit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    producer = App(settings=Settings(broker_url=url), builtins=False, tracer_provider=provider)
    producer.task("traced.echo")(lambda payload: payload)
    async with producer:
        with provider.get_tracer("test").start_as_current_span("request"):
            ids = [await producer.submit("traced.echo", {"n": n}) for n in range(3)]

        await run_worker(url, tmp_path / "spans.jsonl")

        for task_id in ids:
            assert (await producer.result(task_id, timeout=10)).data is not None
    submits = {
        str((span.attributes or {})["taskengine.task.id"]): span
        for span in exporter.get_finished_spans()
        if span.name == "taskengine.submit"
    }
    lines = (tmp_path / "spans.jsonl").read_text().splitlines()
    worker_spans: list[dict[str, Any]] = [json.loads(line) for line in lines]
    runs = {
        s["attributes"]["taskengine.task.id"]: s
        for s in worker_spans
        if s["name"] == "taskengine.run"
    }
    assert set(runs) == set(ids) == set(submits)
    for task_id, run in runs.items():
        submit = submits[task_id].get_span_context()
        assert run["context"]["trace_id"] == f"0x{submit.trace_id:032x}"
        assert run["parent_id"] == f"0x{submit.span_id:016x}"
        assert run["attributes"]["taskengine.outcome"] == "succeeded"
    settle_links = {
        link["context"]["span_id"]
        for span in worker_spans
        if span["name"] == "taskengine.settle"
        for link in span["links"]
    }
    assert {run["context"]["span_id"] for run in runs.values()} <= settle_links
