"""The values the sync simulator stores, and the oracle that judges reads.

A value is a deterministic function of `(block, module, variant)`: `variant`
models a nondeterministic computation (two machines may store different
results under one key; readers must agree on one of them, never mix them).
Every value names its own identity and carries bytes derived from it, so a
reader can tell a right value from a wrong, torn or mixed one; the ledger
says which variants were really put under which key.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

BLOCKS = ("b0", "b1", "b2")
MODULES = ("m0", "m1", "m2", "m3", "m4", "m5")


def _bytes(seed: str, size: int) -> bytes:
    block = hashlib.blake2b(seed.encode(), digest_size=32).digest()
    return (block * (size // len(block) + 1))[:size]


def value_of(block: str, module: str, variant: int) -> dict[str, Any]:
    """Small and inline for some keys, object files for others; `shared` is
    the same for many keys (deduplicated objects that GC must not lose)."""
    n = MODULES.index(module)
    size = (0, 100, 700, 3000)[(n + variant + BLOCKS.index(block)) % 4]
    return {
        "id": [block, module, variant],
        "blob": _bytes(f"{block}/{module}/{variant}", size),
        "shared": _bytes(f"shared/{variant}/{n % 2}", 2000),
    }


def judge(block: str, module: str, value: Any) -> tuple[int, str | None]:
    """`(variant, problem)`: what a loaded value claims to be, and whether it
    is not exactly that value."""
    if not isinstance(value, dict) or set(value) != {"id", "blob", "shared"}:
        return -1, f"not a value of this simulator: {value!r:.80}"
    ident = value["id"]
    if not isinstance(ident, list) or len(ident) != 3 or ident[:2] != [block, module]:
        return -1, f"value of {ident!r:.60} returned for {block}/{module}"
    variant = ident[2]
    if value != value_of(block, module, variant):
        return variant, f"{block}/{module} variant {variant}: bytes differ from the value put"
    return variant, None


class Ledger:
    """Which variants were put under which exact key, by any replica."""

    def __init__(self) -> None:
        self.variants: dict[tuple[str, str, int], set[int]] = defaultdict(set)

    def record(self, block: str, module: str, created_at: int, variant: int) -> None:
        self.variants[(block, module, created_at)].add(variant)

    def check(self, block: str, module: str, created_at: int, value: Any) -> str | None:
        """Why a value read under `(block, module, created_at)` is wrong, or None."""
        variant, problem = judge(block, module, value)
        if problem is not None:
            return problem
        put = self.variants.get((block, module, created_at), set())
        if variant not in put:
            return (
                f"{block}/{module}@{created_at}: variant {variant} was never put there "
                f"(put: {sorted(put)})"
            )
        return None
