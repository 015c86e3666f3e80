"""cpu.*: results (called in-process and through the process executor) and payload validation."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest

from taskengine.builtins import BuiltinConfig, builtin_registry
from taskengine.builtins.cpu import (
    FibonacciPayload,
    PrimesPayload,
    Sha256Payload,
    fibonacci,
    primes,
    sha256,
)
from taskengine.registry import InvalidPayload, Registry
from taskengine.runtime.process_pool import ProcessExecutor


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return builtin_registry(BuiltinConfig(data_dir=str(tmp_path)))


def test_primes() -> None:
    assert primes(PrimesPayload(limit=2)) == {"count": 1, "largest": 2}
    assert primes(PrimesPayload(limit=100)) == {"count": 25, "largest": 97}
    assert primes(PrimesPayload(limit=1_000_000)) == {"count": 78498, "largest": 999983}


def test_fibonacci() -> None:
    assert fibonacci(FibonacciPayload(n=0))["value_mod_1e9_7"] == 0
    f100 = fibonacci(FibonacciPayload(n=100))
    assert f100 == {
        "n": 100,
        "digits": 21,
        "value_mod_1e9_7": 354224848179261915075 % 1_000_000_007,
        "last_digits": "54224848179261915075",
    }
    big = fibonacci(FibonacciPayload(n=100_000))  # past the 4300-digit str() limit
    assert big["digits"] == 20899


def test_sha256() -> None:
    assert sha256(Sha256Payload(data="abc"))["hexdigest"] == hashlib.sha256(b"abc").hexdigest()
    twice = hashlib.sha256(hashlib.sha256(b"abc").digest() + b"abc").hexdigest()
    assert sha256(Sha256Payload(data="abc", rounds=2))["hexdigest"] == twice
    noise = random.Random(1000).randbytes(1000)
    expected = hashlib.sha256(b"x" + noise).hexdigest()
    assert sha256(Sha256Payload(data="x", size=1000))["hexdigest"] == expected


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("cpu.primes", {"limit": 1}),
        ("cpu.primes", {"limit": 10_000_001}),
        ("cpu.primes", {"limit": "10"}),
        ("cpu.primes", {"limit": 10, "x": 1}),
        ("cpu.fibonacci", {"n": -1}),
        ("cpu.fibonacci", {"n": 100_001}),
        ("cpu.sha256", {"size": 64 * 1024 * 1024 + 1}),
        ("cpu.sha256", {"rounds": 0}),
        ("cpu.sha256", {"rounds": 1001}),
        ("cpu.sha256", {"data": 1}),
    ],
)
def test_invalid_payloads_are_refused_at_submit(
    registry: Registry, name: str, payload: dict[str, Any]
) -> None:
    with pytest.raises(InvalidPayload):
        registry.get(name).convert(payload)


def test_cpu_types_run_in_the_process_pool(registry: Registry) -> None:
    for name in ("cpu.primes", "cpu.fibonacci", "cpu.sha256"):
        assert registry.get(name).executor == "process"


@pytest.mark.slow
async def test_through_the_process_executor(registry: Registry) -> None:
    executor = ProcessExecutor(processes=1)
    await executor.start()
    try:
        spec = registry.get("cpu.primes")
        assert await executor.run(spec, spec.convert({"limit": 100}), timeout=30) == {
            "count": 25,
            "largest": 97,
        }
        spec = registry.get("cpu.sha256")
        result = await executor.run(spec, {"data": "abc"}, timeout=30)
        assert result["hexdigest"] == hashlib.sha256(b"abc").hexdigest()
    finally:
        await executor.close()
