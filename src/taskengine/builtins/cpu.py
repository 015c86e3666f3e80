"""CPU-bound built-in task types; they run in the process pool, so each is a module-level
function of the payload alone and returns a small JSON result."""

from __future__ import annotations

import hashlib
import random
from typing import Annotated

import msgspec

from taskengine.builtins.config import MIB

_MOD = 1_000_000_007
_LAST_DIGITS = 20
_CHUNK = 4 * MIB  # pseudo-random data is generated and hashed in pieces of this size


class PrimesPayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Count the primes up to `limit` (inclusive)."""

    limit: Annotated[int, msgspec.Meta(ge=2, le=10_000_000)]


class FibonacciPayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Compute the `n`th Fibonacci number (F(0) = 0, F(1) = 1)."""

    n: Annotated[int, msgspec.Meta(ge=0, le=100_000)]


class Sha256Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Hash `data` followed by `size` bytes of deterministic pseudo-random data, `rounds` times."""

    data: Annotated[str, msgspec.Meta(max_length=MIB)] = ""
    size: Annotated[int, msgspec.Meta(ge=0, le=64 * MIB)] = 0
    rounds: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1


def primes(payload: PrimesPayload) -> dict[str, int]:
    """Sieve of Eratosthenes: return how many primes are <= limit and the largest one."""
    limit = payload.limit
    sieve = bytearray([1]) * (limit + 1)
    sieve[0] = sieve[1] = 0
    for p in range(2, int(limit**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
    return {"count": sieve.count(1), "largest": sieve.rindex(1)}


def fibonacci(payload: FibonacciPayload) -> dict[str, int | str]:
    """Iterate to F(n); return its digit count, its value mod 1e9+7 and its last digits."""
    a, b = 0, 1
    for _ in range(payload.n):
        a, b = b, a + b
    digits = _decimal_digits(a)
    last = a % 10**_LAST_DIGITS
    return {
        "n": payload.n,
        "digits": digits,
        "value_mod_1e9_7": a % _MOD,
        "last_digits": str(last).zfill(min(digits, _LAST_DIGITS)),
    }


def sha256(payload: Sha256Payload) -> dict[str, str | int]:
    """Hash the input `rounds` times (each round covers the previous digest and all the input)."""
    digest = b""
    for _ in range(payload.rounds):
        h = hashlib.sha256(digest)
        h.update(payload.data.encode())
        rng = random.Random(payload.size)  # a local, seeded generator: same size, same bytes
        remaining = payload.size
        while remaining:
            piece = min(remaining, _CHUNK)
            h.update(rng.randbytes(piece))
            remaining -= piece
        digest = h.digest()
    return {"hexdigest": digest.hex(), "rounds": payload.rounds, "size": payload.size}


def _decimal_digits(value: int) -> int:
    """Digits of a non-negative int without str() (3.11 caps int-to-str at 4300 digits)."""
    if value < 10:
        return 1
    digits = int((value.bit_length() - 1) * 0.30102999566398120)  # log10(2)
    while 10**digits <= value:
        digits += 1
    return digits
