"""Dramatiq on its Redis broker, default middleware, no retries."""

from __future__ import annotations

import time
from collections.abc import Callable

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers.common import SLEEP_S, incr, paced, produce_main, record, redis_url

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop", max_retries=0)
def noop() -> None:
    incr()


@dramatiq.actor(actor_name="bench_sleep", max_retries=0)
def sleep() -> None:
    time.sleep(SLEEP_S)  # cooperative under dramatiq-gevent
    incr()


@dramatiq.actor(actor_name="bench_mark", max_retries=0)
def mark(began: float) -> None:
    started = time.perf_counter()
    record(began, started)


def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    if kind == "mark":
        started()
        paced(count, lambda: mark.send(time.perf_counter()))
        return
    actor = noop if kind == "noop" else sleep
    started()
    for _ in range(count):
        actor.send()


if __name__ == "__main__":
    produce_main(produce)
