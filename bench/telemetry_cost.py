"""What publishing the telemetry costs (ADR 0033): end-to-end no-op throughput of an engine on
Redis and on SQLite with `telemetry_publish` on and off, alternating, so drift of the machine
spreads over both arms.

Each run queues the tasks first, then starts an engine of 50 workers and stops the clock when
its metrics count every task succeeded. The heartbeat runs every second in both arms (ten times
the default), so each run publishes several reports and samples every second: the worst case.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

from bench import loop_runner
from bench.runtime_rates import NOOP, make_app
from taskengine.app import TaskRequest

TASKS = 20_000
BATCH = 1_000
WORKERS = 50
HEARTBEAT = 1.0
BROKERS = {
    "sqlite": "sqlite:///{tmp}/telemetry.db",
    "redis": "redis://127.0.0.1:6379/0?namespace=bench-telemetry-{uid}",
}


CPU_ROUNDS = 200  # samples and reports timed after a run with publishing on


async def drain(url: str, publish: bool, cpu: dict[str, list[float]] | None = None) -> float:
    """Tasks/s from the engine's start until its metrics count every task succeeded; with
    `cpu`, also the CPU microseconds of one sample and of one report, added to it."""
    app = make_app(url, telemetry_publish=publish, heartbeat_every=HEARTBEAT, workers=WORKERS)
    await app.start()
    try:
        requests = [TaskRequest(type=NOOP) for _ in range(BATCH)]
        for _ in range(TASKS // BATCH):
            await app.submit_many(requests)
        engine = app.engine()
        started = time.perf_counter()
        await engine.start()
        while app.metrics.totals().get("succeeded", 0) < TASKS:  # noqa: ASYNC110
            await asyncio.sleep(0.001)  # the runtime suite's stop condition, polled alike
        elapsed = time.perf_counter() - started
        if cpu is not None and engine.heartbeat.report is not None:
            report = engine.heartbeat.report
            began = time.process_time()
            for _ in range(CPU_ROUNDS):
                await engine.sample_once()
            cpu.setdefault("sample", []).append((time.process_time() - began) / CPU_ROUNDS * 1e6)
            began = time.process_time()
            for _ in range(CPU_ROUNDS):
                report(app.clock.now())
            cpu.setdefault("report", []).append((time.process_time() - began) / CPU_ROUNDS * 1e6)
        await engine.stop()
        if publish and not await app.inspector.instances(app.clock.now()):
            raise RuntimeError("publishing was on, yet no report reached the broker")
        return TASKS / elapsed
    finally:
        drop = getattr(app.broker, "drop_namespace", None)
        if drop is not None:
            await drop()
        await app.close()


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """Throughput with publishing off and on, alternating, `runs` times each per broker."""
    rows: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for broker, template in BROKERS.items():
        for _ in range(runs):
            for arm, publish in (("off", False), ("on", True)):
                with tempfile.TemporaryDirectory() as tmp:
                    url = template.format(tmp=tmp, uid=uuid.uuid4().hex[:8])
                    load = os.getloadavg()[0]
                    rate = loop_runner(drain(url, publish, cpu if publish else None))
                rows.setdefault(f"{broker}: publishing {arm} (tasks/s)", []).append(rate)
                rows.setdefault(f"{broker}: load before, publishing {arm}", []).append(load)
                what = f"telemetry cost: {broker} publishing {arm}"
                progress(f"{what}: {rate:,.0f} tasks/s (load {load:.1f})")
    result = [
        {
            "name": name,
            "values": values,
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
        for name, values in rows.items()
    ]
    rows_cpu = {
        f"CPU of one sample, {WORKERS} workers (us)": cpu["sample"],
        f"CPU of one report, {WORKERS} workers (us)": cpu["report"],
    }
    result += [
        {
            "name": name,
            "values": values,
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
        for name, values in rows_cpu.items()
    ]
    for broker in BROKERS:
        off = statistics.median(rows[f"{broker}: publishing off (tasks/s)"])
        on = statistics.median(rows[f"{broker}: publishing on (tasks/s)"])
        cost = (off - on) / off * 100
        result.append(
            {
                "name": f"{broker}: cost of publishing (%)",
                "values": [cost],
                "median": cost,
                "min": cost,
                "max": cost,
            }
        )
    return result
