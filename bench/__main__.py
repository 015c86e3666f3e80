"""`python -m bench` (what `make bench` runs): broker rates, printed and saved as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import (
    api_rates,
    ceilings,
    dashboard_cost,
    latency,
    loop_runner,
    producer_rates,
    rss_soak,
    runtime_rates,
    scale_out,
    startup,
    telemetry_cost,
    workflow_rates,
)
from bench.broker_rates import Config, machine_facts, run, table

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None = None) -> Config:
    """Read the few knobs worth turning from the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--broker",
        action="append",
        dest="urls",
        help="broker URL to measure, repeatable; '{tmp}' becomes a fresh temporary directory "
        "per run, e.g. 'sqlite:///{tmp}/b.db?synchronous=OFF'; default: "
        "sqlite:///{tmp}/bench.db and memory://",
    )
    parser.add_argument("--batch", action="append", type=int, dest="batches")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per run, batch > 1")
    parser.add_argument("--tasks-batch-1", type=int, default=2_000, help="tasks per run, batch 1")
    parser.add_argument("--dir", dest="temp_parent", help="parent directory of the SQLite files")
    parser.add_argument(
        "--suite",
        choices=(
            "broker",
            "runtime",
            "api",
            "dashboard",
            "scale",
            "ceilings",
            "soak",
            "latency",
            "startup",
            "producer",
            "telemetry",
            "workflows",
            "all",
        ),
        default="all",
        help="broker: broker operation rates; runtime: end-to-end engine figures; "
        "api: HTTP latency, batch submission and idle memory; dashboard: throughput with and "
        "without open dashboards; scale: 1, 2, 4 worker processes on Redis, PostgreSQL, SQLite; "
        "ceilings: a bare asyncio.Queue and redis-benchmark; soak: RSS over 1,000,000 tasks; "
        "latency: submit->start p50/p99 at 100, 500, 1,000 tasks/s, a HIGH task among 20,000 "
        "LOW; startup: spawn to first task and idle RSS of `taskengine worker`; producer: "
        "submit_many of 10,000 tasks on memory and Redis; telemetry: no-op throughput on Redis "
        "and SQLite with the telemetry publishing on and off; workflows: submit to last task "
        "finished of a chord of 1,000 no-ops and a chain of 10 groups x 1,000 (one join step "
        "between groups) on memory, SQLite, Redis, PostgreSQL and NATS",
    )
    args = parser.parse_args(argv)
    defaults = Config()
    return Config(
        urls=tuple(args.urls) if args.urls else defaults.urls,
        batches=tuple(args.batches) if args.batches else defaults.batches,
        runs=args.runs,
        tasks_batch_n=args.tasks,
        tasks_batch_1=args.tasks_batch_1,
        temp_parent=args.temp_parent,
        suite=args.suite,
    )


def main(argv: list[str] | None = None) -> None:
    """Measure, print tables and write bench/results/<suite>-<time>.json."""
    config = parse(argv)
    facts = machine_facts(config.temp_parent)
    print("machine:", ", ".join(f"{key}={value}" for key, value in facts.items()))
    if config.suite in ("broker", "all"):
        started = time.perf_counter()
        figures = asyncio.run(run(config))
        print()
        print(table(figures, config))
        save(
            "broker_rates",
            facts,
            time.perf_counter() - started,
            asdict(config),
            [f.as_dict() for f in figures],
        )
    if config.suite in ("runtime", "all"):
        started = time.perf_counter()
        results = loop_runner(runtime_rates.run(config.runs))
        print()
        print(runtime_rates.table(results))
        save(
            "runtime_rates",
            facts,
            time.perf_counter() - started,
            {"runs": config.runs},
            [r.as_dict() for r in results],
        )
    row_suites = {  # suites whose figures are rows of name, values, median, min, max
        "api": ("api_rates", api_rates.run),
        "dashboard": ("dashboard_cost", dashboard_cost.run),
        "scale": ("scale_out", scale_out.run),
        "ceilings": ("ceilings", ceilings.run),
        "soak": ("rss_soak", rss_soak.run),
        "latency": ("latency", latency.run),
        "startup": ("startup", startup.run),
        "producer": ("producer_rates", producer_rates.run),
        "telemetry": ("telemetry_cost", telemetry_cost.run),
        "workflows": ("workflow_rates", workflow_rates.run),
    }
    for suite, (name, measure) in row_suites.items():
        if config.suite in (suite, "all"):
            started = time.perf_counter()
            rows = measure(config.runs)
            print()
            print(api_rates.table(rows))
            save(name, facts, time.perf_counter() - started, {"runs": config.runs}, rows)


def save(name: str, facts: dict[str, Any], elapsed: float, config: Any, figures: Any) -> None:
    """Write one suite's figures with the machine facts and load average."""
    facts = {**facts, "loadavg_1m_at_end": round(os.getloadavg()[0], 2)}
    print(f"\n({elapsed:.0f} s; 1-minute load average {facts['loadavg_1m_at_end']} at the end)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    payload = {"machine": facts, "config": config, "elapsed_s": elapsed, "figures": figures}
    out.write_text(json.dumps(payload, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
