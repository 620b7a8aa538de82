"""Corruption fuzzing: random damage to objects, segments, snapshots and format.json.

Each trial copies a small template store (entries in a snapshot and in two
writers' segments after it; inline values, object files and out-of-band
numpy buffers) and applies one to three seeded mutations: bit flips,
truncation, a zero-filled block, two files swapping contents, a file's
contents replaced by random bytes, or a new garbage file named like an
object, segment or snapshot. Then:

- opening never raises, except `StoreFormatError` when the damaged
  `format.json` now reads as a well-formed document of another format or a
  newer version (exactly what a truly newer or foreign store looks like);
- `get` of every key never raises and returns exactly the value put, or a
  miss; so do `entries()` and a `cleanup()` (after which gets are checked
  again);
- `verify()` never raises, reports every damaged object file, and after
  `verify(repair=True)` a second `verify()` reports nothing but the
  dangling entries a plain repair keeps (their objects may still arrive);
  after `verify(repair=True, drop_dangling=True)` a third reports nothing,
  and gets are still never wrong.

`--mutations N` (or MARIMO_STORE_FUZZ_MUTATIONS) sets how many mutations
run (default 600; run 10,000 or more locally).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import xxhash
from workers import stress as stress_workers

from marimo_store import (
    DefaultCleanupStrategy,
    Entry,
    ExecutionKey,
    FsPersistentStore,
    StoreFormatError,
    StoreWarning,
)

KEEP_ALL = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
KEYS = [(f"b{i % 3}", f"m{i:02d}") for i in range(10)]


def value_of(block: str, module: str) -> dict[str, Any]:
    n = int(module[1:])
    value: dict[str, Any] = {"k": [block, module]}
    if n % 2:
        value["big"] = f"{block}/{module};" * (80 + 40 * n)  # an object file
    if n % 4 == 0:
        value["arr"] = stress_workers.pool_array(n % 3)[: 9000 - n]  # an out-of-band buffer
    return value


def build_template(root: Path) -> None:
    first = FsPersistentStore(root, cleanup_on_exit=False, cleanup_strategy=KEEP_ALL)
    for block, module in KEYS[:5]:
        first.put(Entry.of(ExecutionKey(block, module), value_of(block, module)))
    first.close()
    first.cleanup()
    second = FsPersistentStore(root, cleanup_on_exit=False)
    third = FsPersistentStore(root, cleanup_on_exit=False)
    for i, (block, module) in enumerate(KEYS[5:]):
        (second if i % 2 else third).put(
            Entry.of(ExecutionKey(block, module), value_of(block, module))
        )
    second.close()  # the third writer stays "alive" (unsealed segment)


def store_files(root: Path) -> dict[str, list[Path]]:
    return {
        "object": sorted(p for p in (root / "objects").glob("??/*") if p.is_file()),
        "segment": sorted((root / "log").glob("*.log")),
        "snapshot": sorted((root / "snapshots").glob("*.snap")),
        "format": [root / "format.json"],
    }


def own_copy(path: Path) -> bytes:
    """The file's bytes, and the file made private (the copy is hard-linked)."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)
    return data


def mutate(rng: random.Random, root: Path) -> tuple[str, Path]:
    """Apply one random mutation; `(what, file)`."""
    files = store_files(root)
    category = rng.choices(["object", "segment", "snapshot", "format"], [4, 3, 3, 1])[0]
    kind = rng.choice(["flip", "truncate", "zeros", "swap", "garbage", "new garbage"])
    if kind == "new garbage" or not files[category]:
        path = _new_name(rng, root, category)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(rng.randbytes(rng.choice((0, 5, 30, 200, 5000))))
        return f"new garbage {category}", path
    path = rng.choice(files[category])
    original = own_copy(path)
    data = bytearray(original)
    if kind == "flip" and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del data[rng.randrange(len(data) + 1) :]
    elif kind == "zeros" and data:
        start = rng.randrange(len(data))
        length = min(len(data) - start, rng.choice((1, 8, 64, 4096)))
        data[start : start + length] = bytes(length)
    elif kind == "swap":
        others = [p for paths in files.values() for p in paths if p != path and p.exists()]
        if others:
            other = rng.choice(others)
            other_data = own_copy(other)
            other.write_bytes(bytes(data))
            data = bytearray(other_data)
    elif kind == "garbage":
        data = bytearray(rng.randbytes(rng.choice((len(data), 17, 3000))))
    path.write_bytes(bytes(data))
    return f"{kind} {category}" + (" (no change)" if data == original else ""), path


def _new_name(rng: random.Random, root: Path, category: str) -> Path:
    hexes = rng.randbytes(24).hex()
    if category == "object":
        return root / "objects" / hexes[:2] / hexes[2:32]
    if category == "segment":
        return root / "log" / f"fuzz-{rng.randrange(99)}-{hexes[:12]}.0.log"
    if category == "snapshot":
        return root / "snapshots" / f"{hexes[:32]}.snap"
    return root / "format.json"


def refuses_to_open(raw: bytes) -> bool:
    """Whether `format.json` bytes declare another format or a newer version."""
    try:
        document = json.loads(raw[:4096])
    except ValueError:
        return False
    if not isinstance(document, dict):
        return False
    name, version = document.get("format"), document.get("version")
    if not isinstance(name, str) or isinstance(version, bool) or not isinstance(version, int):
        return False
    return name != "marimo_store" or version > 1


def bad_objects(root: Path) -> list[Path]:
    """Object files whose bytes do not hash to their name (docs/format.md §8)."""
    bad = []
    for path in (root / "objects").glob("??/*"):
        object_id = path.parent.name + path.name
        named = len(object_id) in (32, 48) and all(c in "0123456789abcdef" for c in object_id)
        if named and xxhash.xxh3_128_hexdigest(path.read_bytes()) != object_id[:32]:
            bad.append(path)
    return bad


def check_reads(store: FsPersistentStore) -> int:
    hits = 0
    for block, module in KEYS:
        entry = store.get(ExecutionKey(block, module))
        if entry is not None:
            problem = stress_workers.mismatch(entry.variables, value_of(block, module))
            assert problem is None, f"{block}/{module}: {problem}"
            hits += 1
    return hits


def trial(rng: random.Random, template: Path, root: Path, stats: Counter[str]) -> None:
    shutil.copytree(template, root, copy_function=os.link)
    damaged: list[tuple[str, Path]] = [mutate(rng, root) for _ in range(rng.choice((1, 1, 2, 3)))]
    stats["mutations"] += len(damaged)
    stats.update(what for what, _ in damaged)
    try:
        opened = FsPersistentStore(
            root, refresh_interval=0, cleanup_on_exit=False, object_grace_seconds=0
        )
    except StoreFormatError:
        assert refuses_to_open((root / "format.json").read_bytes()), "refused a damaged format"
        stats["refused (newer or foreign format.json)"] += 1
        return
    assert not refuses_to_open((root / "format.json").read_bytes()), "opened a newer format"
    stats["hits"] += check_reads(opened)
    opened.entries()
    report = opened.verify()
    reported = {problem.path for problem in report.problems}
    for path in bad_objects(root):
        assert str(path) in reported, (damaged, path, report.problems)
    if rng.random() < 0.3:
        opened.cleanup(KEEP_ALL, include_content=rng.random() < 0.5)
        stats["hits"] += check_reads(opened)
    repaired = opened.verify(repair=True)
    stats["problems found"] += len(repaired.problems)
    assert repaired.skipped == [], repaired.skipped
    again = FsPersistentStore(root, refresh_interval=0, cleanup_on_exit=False).verify()
    # Late is not lost: a plain repair keeps entries whose objects are gone
    # (they may still arrive); only those remain, and drop_dangling drops them.
    assert {p.kind for p in again.problems} <= {"dangling entry"}, (damaged, again.problems)
    if again.problems:
        stats["dangling entries kept"] += len(again.problems)
        again_store = FsPersistentStore(root, refresh_interval=0, cleanup_on_exit=False)
        again_store.verify(repair=True, drop_dangling=True)
        last = FsPersistentStore(root, refresh_interval=0, cleanup_on_exit=False).verify()
        assert last.problems == [], (damaged, again.problems, last.problems)
    stats["hits"] += check_reads(FsPersistentStore(root, refresh_interval=0, cleanup_on_exit=False))


def run_fuzz(tmp_path: Path, mutations: int, seed: int) -> Counter[str]:
    template = tmp_path / "template"
    build_template(template)
    rng = random.Random(seed)
    stats: Counter[str] = Counter()
    started = time.monotonic()
    number = 0
    while stats["mutations"] < mutations:
        root = tmp_path / f"trial-{number}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StoreWarning)
                trial(rng, template, root, stats)
        except AssertionError as error:
            raise AssertionError(f"trial {number} (seed {seed}): {error}") from error
        shutil.rmtree(root)
        number += 1
    stats["trials"] = number
    print(f"fuzz: {dict(stats)} in {time.monotonic() - started:.1f} s")
    return stats


def test_corruption_fuzzing(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    mutations: int = request.config.getoption("--mutations")
    stats = run_fuzz(tmp_path, mutations, request.config.getoption("--schedule-seed"))
    assert stats["mutations"] >= mutations
    assert stats["hits"] > 0 and stats["problems found"] > 0
