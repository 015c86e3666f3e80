"""RQ: jobs enqueued with `enqueue_many` (one pipeline per 1,000), results not kept."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis
from rq import Queue

from bench.peers.common import SLEEP_S, incr, paced, produce_main, record, redis_url

QUEUE = "bench"


def noop() -> None:
    incr()


def sleep() -> None:
    time.sleep(SLEEP_S)
    incr()


def mark(began: float) -> None:
    started = time.perf_counter()
    record(began, started)


def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    queue = Queue(QUEUE, connection=Redis.from_url(redis_url()))
    if kind == "mark":
        started()
        paced(count, lambda: queue.enqueue(mark, time.perf_counter(), result_ttl=0))
        return
    func = noop if kind == "noop" else sleep
    started()
    done = 0
    while done < count:
        n = min(1000, count - done)
        queue.enqueue_many([Queue.prepare_data(func, result_ttl=0) for _ in range(n)])
        done += n


if __name__ == "__main__":
    from bench.peers import rq_app  # jobs name bench.peers.rq_app.*, not __main__.*

    produce_main(rq_app.produce)
