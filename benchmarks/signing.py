"""Costs of signed entries and signature verification (docs/security.md).

Every row is measured in the same run, against the reference named in it;
medians over --repeat rounds, (min .. max) in brackets; lower is better:

1. Tiny hit: `add(a, b) -> a + b` through `persistent_cache`, called with
   `(1, 2)` after one miss; time per hit (each round times a batch lasting
   about --batch-seconds). Stores: unsigned with `verify_signatures="off"`
   (the reference), signed "off", signed "on", signed "strict". Target
   (issue 9): signed "on" at most 1.5x the reference.
2. Digests: one pass of xxh3-128 (object ids), SHA-256 (the object digest of
   signed entries) and BLAKE2b-256 (the alternative) over a --digest-mib
   buffer, in GiB/s. Reference: xxh3.
3. Large value: `put` of a float64 array of --large-mib, and `get` of it by
   a new store instance in this process (what a new kernel pays once per
   object), unsigned "off" (reference) against signed "on". "off" finds
   the object already verified in the machine's ledger and hashes nothing;
   "on" checks the SHA-256 (the ledger cannot vouch for it).

    .venv/bin/python -m benchmarks.signing [--repeat 5] [--large-mib 256] [--dir DIR]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xxhash

from benchmarks._common import (
    alternating,
    machine_info,
    micros_text,
    open_store,
    positive,
    progress,
    ratio_text,
    scratch_arguments,
    scratch_directory,
    seconds_per_call,
    seconds_text,
)
from marimo_store import Entry, ExecutionKey, generate_signing_key, persistent_cache

MODES = ("unsigned, off", "signed, off", "signed, on", "signed, strict")
TARGET_RATIO = 1.5


def add(a: int, b: int) -> int:
    return a + b


def store_options(mode: str, key: str) -> dict[str, Any]:
    signed, verify = (part.strip() for part in mode.split(","))
    return {"signing_key": key if signed == "signed" else None, "verify_signatures": verify}


def tiny_hits(root: str, key: str, repeat: int, batch_seconds: float) -> dict[str, list[float]]:
    """Seconds per hit of `add(1, 2)`, one value per round, for each mode."""
    calls: dict[str, Callable[[], object]] = {}
    for mode in MODES:
        store = open_store(os.path.join(root, mode.replace(", ", "-")), **store_options(mode, key))
        calls[mode] = functools.partial(persistent_cache(store=store)(add), 1, 2)
    return seconds_per_call(calls, repeat, batch_seconds)


DIGESTS: dict[str, Callable[[memoryview], bytes]] = {
    "xxh3-128": xxhash.xxh3_128_digest,
    "SHA-256": lambda data: hashlib.sha256(data).digest(),
    "BLAKE2b-256": lambda data: hashlib.blake2b(data, digest_size=32).digest(),
}


def digest_speeds(size_mib: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per pass over `size_mib` of random bytes, per digest."""
    data = memoryview(np.random.default_rng(0).bytes(size_mib * 1024 * 1024))
    seconds: dict[str, list[float]] = {name: [] for name in DIGESTS}
    for rep in range(repeat):
        for name in alternating(list(DIGESTS), rep):
            start = time.perf_counter()
            DIGESTS[name](data)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def large_value(root: str, key: str, size_mib: int, repeat: int) -> dict[str, list[float]]:
    """Seconds of put and of a new instance's first get, for both stores."""
    array = np.random.default_rng(1).random(size_mib * 1024 * 1024 // 8)
    modes = ("unsigned, off", "signed, on")
    times: dict[str, list[float]] = {
        f"{kind} {mode}": [] for kind in ("put", "get") for mode in modes
    }
    for rep in range(repeat):
        progress(f"large value: round {rep + 1}/{repeat}")
        for mode in alternating(modes, rep):
            path = os.path.join(root, f"large-{mode.replace(', ', '-')}")
            options = store_options(mode, key)
            entry_key = ExecutionKey("large", f"round-{rep}")
            with open_store(path, **options) as writer:
                start = time.perf_counter()
                writer.put(Entry.of(entry_key, {"a": array + rep}))
                times[f"put {mode}"].append(time.perf_counter() - start)
            with open_store(path, **options) as reader:  # a new instance: nothing remembered
                start = time.perf_counter()
                entry = reader.get(entry_key)
                assert entry is not None
                float(entry.variables["a"][-1])  # touch the memory map
                times[f"get {mode}"].append(time.perf_counter() - start)
    return times


def row(workload: str, name: str, values: list[float], reference: float, ref_name: str) -> str:
    median = statistics.median(values)
    text = seconds_text if median >= 1e-3 else micros_text
    spread = f"({text(min(values))} .. {text(max(values))})"
    ratio = ratio_text(median, reference)
    return f"| {workload} | {name} | {text(median)} {spread} | {ratio} | {ref_name} |"


def report(
    args: argparse.Namespace,
    root: str,
    tiny: dict[str, list[float]],
    digests: dict[str, list[float]],
    large: dict[str, list[float]],
) -> None:
    print("# Signing benchmark: signed entries and verification modes\n")
    print("\n".join(machine_info(root)))
    print(
        f"- `python -m benchmarks.signing --repeat {args.repeat} --digest-mib {args.digest_mib} "
        f"--large-mib {args.large_mib}`; medians over {args.repeat} rounds, (min .. max) in "
        "brackets; lower is better"
    )
    print("\n| workload | store / digest | median | ratio | reference |")
    print("|---|---|---:|---:|---|")
    reference = statistics.median(tiny[MODES[0]])
    for mode in MODES:
        print(row("tiny hit, per call", mode, tiny[mode], reference, MODES[0]))
    xxh3 = statistics.median(digests["xxh3-128"])
    for name, values in digests.items():
        speed = args.digest_mib / 1024 / statistics.median(values)
        print(
            row(f"{args.digest_mib} MiB digest ({speed:.2f} GiB/s)", name, values, xxh3, "xxh3-128")
        )
    for kind in ("put", "get"):
        base = statistics.median(large[f"{kind} unsigned, off"])
        for mode in ("unsigned, off", "signed, on"):
            workload = f"{args.large_mib} MiB array, {kind}" + (
                " (new instance)" if kind == "get" else ""
            )
            print(row(workload, mode, large[f"{kind} {mode}"], base, "unsigned, off"))
    ratio = statistics.median(tiny["signed, on"]) / reference
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(
        f"\nTarget: {verdict}: tiny hit, signed 'on' <= {TARGET_RATIO}x unsigned 'off': "
        f"{ratio:.2f}x"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch-seconds", type=float, default=0.5)
    parser.add_argument("--digest-mib", type=positive, default=256)
    parser.add_argument("--large-mib", type=positive, default=256)
    scratch_arguments(parser)
    args = parser.parse_args(argv)
    with scratch_directory(args.dir, "signing-") as root:
        key = os.path.join(root, "key.pem")
        generate_signing_key(key)
        progress("tiny hits")
        tiny = tiny_hits(root, key, args.repeat, args.batch_seconds)
        progress("digests")
        digests = digest_speeds(args.digest_mib, args.repeat)
        large = large_value(root, key, args.large_mib, args.repeat)
        report(args, root, tiny, digests, large)


if __name__ == "__main__":
    main()
