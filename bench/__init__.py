"""Benchmarks: `make bench` (python -m bench)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def loop_runner(main: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when installed, as `taskengine worker` does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
