"""Huey on Redis (blocking BRPOP), results off.

`python -m bench.peers.huey_app consume ARGS` starts `huey_consumer` after gevent's
monkey-patch, as Huey's docs ask for greenlet workers.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[1:2] == ["consume"]:
    from gevent import monkey

    monkey.patch_all()

import time
from collections.abc import Callable

from huey import RedisHuey

from bench.peers.common import SLEEP_S, incr, paced, produce_main, record, redis_url

huey = RedisHuey("bench", url=redis_url(), results=False)


@huey.task(name="bench.noop")
def noop() -> None:
    incr()


@huey.task(name="bench.sleep")
def sleep() -> None:
    time.sleep(SLEEP_S)  # cooperative under greenlet workers
    incr()


@huey.task(name="bench.mark")
def mark(began: float) -> None:
    started = time.perf_counter()
    record(began, started)


def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    if kind == "mark":
        started()
        paced(count, lambda: mark(time.perf_counter()))
        return
    task = noop if kind == "noop" else sleep
    started()
    for _ in range(count):
        task()


if __name__ == "__main__":
    if sys.argv[1:2] == ["consume"]:
        from huey.bin.huey_consumer import consumer_main

        sys.argv = [sys.argv[0], "bench.peers.huey_app.huey", *sys.argv[2:]]
        consumer_main()
    else:
        from bench.peers import huey_app  # tasks named after the module, not __main__

        produce_main(huey_app.produce)
