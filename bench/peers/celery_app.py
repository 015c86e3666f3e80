"""Celery on Redis: no results stored, early ack (Celery's default)."""

from __future__ import annotations

import time
from collections.abc import Callable

from celery import Celery

from bench.peers.common import SLEEP_S, incr, paced, produce_main, record, redis_url

app = Celery("bench", broker=redis_url())
app.conf.update(
    task_ignore_result=True,  # no result backend
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    incr()


@app.task(name="bench.sleep")
def sleep() -> None:
    time.sleep(SLEEP_S)  # cooperative under the gevent pool (monkey-patched)
    incr()


@app.task(name="bench.mark")
def mark(began: float) -> None:
    started = time.perf_counter()
    record(began, started)


def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    if kind == "mark":
        with app.producer_or_acquire() as producer:
            started()
            paced(count, lambda: mark.apply_async((time.perf_counter(),), producer=producer))
        return
    task = noop if kind == "noop" else sleep
    with app.producer_or_acquire() as producer:
        started()
        for _ in range(count):
            task.apply_async(producer=producer)


if __name__ == "__main__":
    produce_main(produce)
