"""Dramatiq on its Redis broker, default middleware, no retries."""

from __future__ import annotations

import time
from collections.abc import Callable

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers.common import SLEEP_S, incr, produce_main, redis_url

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop", max_retries=0)
def noop() -> None:
    incr()


@dramatiq.actor(actor_name="bench_sleep", max_retries=0)
def sleep() -> None:
    time.sleep(SLEEP_S)  # cooperative under dramatiq-gevent
    incr()


def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    actor = noop if kind == "noop" else sleep
    started()
    for _ in range(count):
        actor.send()


if __name__ == "__main__":
    produce_main(produce)
