"""What an open dashboard costs: end-to-end throughput of `taskengine serve` at full load with
no live-feed client, then with three (`/api/events` streams read to the end of each tick, as a
dashboard tab does), alternating to spread drift of the machine over both."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx

from bench.api_rates import TASK, engine, free_port, wait_healthy

TASKS = 40_000
BATCH = 1_000
SSE_CLIENTS = 3


async def follow(base: str, stop: asyncio.Event, ticks: list[int]) -> None:
    """Read the live feed until `stop`, counting ticks."""
    async with (
        httpx.AsyncClient(base_url=base, timeout=None) as client,
        client.stream("GET", "/api/events") as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("event: tick"):
                ticks[0] += 1
            if stop.is_set():
                return


async def drain(base: str, dashboards: int) -> float:
    """Tasks/s from the first submission until the last task succeeded."""
    stop = asyncio.Event()
    ticks = [0]
    readers = [asyncio.create_task(follow(base, stop, ticks)) for _ in range(dashboards)]
    await asyncio.sleep(1.5)  # the streams are open and ticking
    body = {"tasks": [TASK] * BATCH}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        started = time.perf_counter()
        for _ in range(TASKS // BATCH):
            response = await client.post("/api/tasks", json=body)
            response.raise_for_status()
        while True:
            metrics = (await client.get("/api/metrics")).json()
            if metrics["outcomes"].get("succeeded", 0) >= TASKS:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.sleep(1.1)  # one more tick lets every reader see `stop`
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    if dashboards and ticks[0] == 0:
        raise RuntimeError("the dashboards saw no tick")
    return TASKS / elapsed


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """Throughput without and with open dashboards, alternating, `runs` times each."""
    rows: dict[str, list[float]] = {"no dashboard (tasks/s)": [], "3 dashboards (tasks/s)": []}
    for _ in range(runs):
        for name, dashboards in (("no dashboard", 0), ("3 dashboards", SSE_CLIENTS)):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {"TASKENGINE_MAX_DEPTH": "100000000"}
            with engine("serve", "--port", str(port), "--workers", "50", env=env):
                wait_healthy(base)
                rate = asyncio.run(drain(base, dashboards))
            rows[f"{name} (tasks/s)"].append(rate)
            progress(f"dashboard cost: {name}: {rate:,.0f} tasks/s")
    without = statistics.median(rows["no dashboard (tasks/s)"])
    with_open = statistics.median(rows["3 dashboards (tasks/s)"])
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
    cost = (without - with_open) / without * 100
    result.append(
        {
            "name": "cost of 3 dashboards (%)",
            "values": [cost],
            "median": cost,
            "min": cost,
            "max": cost,
        }
    )
    return result
