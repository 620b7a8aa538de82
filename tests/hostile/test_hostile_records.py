"""Hostile records: correctly framed and checksummed, any msgpack inside.

Random damage never gets past a record's checksum; someone who writes the
folder on purpose frames whatever they like. A hypothesis property test
plants such records (entry, access and tombstone records in a segment,
segment headers, snapshot entry records, tombstones and headers) next to
a good entry and a cached call's result, then checks that `get`, the
cached call, `cleanup`, `verify(repair=True)`, `doctor` and every CLI
command raise nothing but `StoreError`s (maintenance only; reads raise
nothing), never return a wrong value, and that the store works afterwards.

MARIMO_STORE_HOSTILE_EXAMPLES sets the example count (default 60; run
thousands locally).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import msgpack
import pytest
from _hostile import (
    CLI_COMMANDS,
    T0,
    computation_hash,
    environment,
    pack,
    run_cli,
    segment_header,
    write_segment,
    write_snapshot,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marimo_store import (
    Entry,
    ExecutionKey,
    FsPersistentStore,
    InvalidArgumentError,
    StoreError,
    persistent_cache,
)

EXAMPLES = int(os.environ.get("MARIMO_STORE_HOSTILE_EXAMPLES", "60"))
GOOD_KEY = ExecutionKey("good-block", "good-module", T0)
GOOD_VALUE = {"answer": 42, "text": "kept"}

# -- arbitrary msgpack -------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.binary(max_size=24),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    st.sampled_from(["entry", "access", "tombstone", "header", "pickle", "json", "buffer"]),
)
keys = st.one_of(st.text(max_size=4), st.integers(-5, 5), st.binary(max_size=3), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def _raw_map_with_unhashable_key(value: Any) -> bytes:
    """A one-pair map whose key is an array: valid msgpack no dict can hold."""
    return b"\x81" + pack([value]) + pack(value)


def _entry_template(module: str = "evil-module") -> dict[str, Any]:
    """A valid entry record (docs/format.md §6.4) with an inline JSON value
    and an object reference, to be mutated."""
    return {
        "t": "entry",
        "k": ["evil-block", module, T0 + 5],
        "c": {
            "variables": {
                "x": {"f": "json", "s": 2, "d": b"17"},
                "y": {
                    "f": "pickle",
                    "s": 40,
                    "i": b"\x01" * 16,
                    "b": [{"f": "buffer", "s": 3, "d": b"abc"}],
                },
            }
        },
        "py": "3.11.7",
        "pl": "linux-x86_64",
        "pk": {"numpy": "2.0"},
        "um": {"note": "hi"},
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replaced(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: _replaced(document[head], rest, new)}
    copy = list(document)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> bytes:
    """`template` with one to three places replaced by arbitrary values,
    a field added, or an unhashable key spliced in; as msgpack bytes."""
    document: Any = template
    for _ in range(draw(st.integers(1, 3))):
        places = _paths(document)
        path = draw(st.sampled_from(places))
        document = _replaced(document, path, draw(values))
    if isinstance(document, dict) and draw(st.booleans()):
        document = {**document, draw(keys): draw(values)}
    if draw(st.integers(0, 9)) == 0:
        return _raw_map_with_unhashable_key(draw(values))
    return pack(document)


def _key_record(kind: str) -> dict[str, Any]:
    return {"t": kind, "k": ["evil-block", "evil-module", T0 + 5], "at": T0 + 9}


log_payloads = st.one_of(
    mutated(_entry_template()),
    mutated(_key_record("access")),
    mutated(_key_record("tombstone")),
    values.map(pack),
)
header_payloads = st.one_of(st.just(pack(segment_header())), mutated(segment_header()))


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[list[tuple[int, bytes]], bytes, dict[str, Any]]:
    entry = _entry_template()
    entries = [
        (computation_hash("evil-block", "evil-module"), draw(mutated(entry)))
        for _ in range(draw(st.integers(0, 2)))
    ]
    tombstones = draw(
        st.one_of(
            mutated([["evil-block", "evil-module", T0 + 5, T0 + 9]]),
            values.map(pack),
        )
    )
    header: dict[str, Any] = {}
    if draw(st.booleans()):
        field = draw(
            st.sampled_from(["v", "created_at", "writer", "parents", "ancestors", "consumed"])
        )
        header[field] = draw(values)
    return entries, tombstones, header


def quiet_store(path: Path) -> FsPersistentStore:
    """A store that starts no cleanup by itself (the test runs each one)."""
    return FsPersistentStore(path, cleanup_on_exit=False, entry_merge_timeout_seconds=10**9)


def square(x: int) -> int:
    return x * x


# -- the property --------------------------------------------------------------


def _build(root: Path) -> tuple[Path, int]:
    """A store with the good entry and a cached call's result; returns the
    path and what the cached call returned."""
    path = root / "store"
    store = quiet_store(path)
    store.put(Entry.of(GOOD_KEY, GOOD_VALUE))
    cached = persistent_cache(store=store)(square)
    result = cached(12)
    store.close()
    return path, result


def _check_reads(path: Path, expected_call: int) -> None:
    store = quiet_store(path)
    try:
        found = store.get(GOOD_KEY.at(T0), exact_match_created_at=True)
        assert found is not None, "a hostile record elsewhere cost the good entry"
        assert dict(found.variables) == GOOD_VALUE
        assert persistent_cache(store=store)(square)(12) == expected_call
        store.entries()
        store.get(ExecutionKey("evil-block", "evil-module"))
    finally:
        store.close()


def _maintain(path: Path) -> None:
    store = quiet_store(path)
    try:
        for operation in (
            store.cleanup,
            store.doctor,
            lambda: store.verify(repair=True, drop_dangling=True),
        ):
            with contextlib.suppress(StoreError):
                operation()
        report = store.verify()
        assert not report.problems, report.problems
    finally:
        store.close()


def _check_cli(path: Path) -> None:
    for command in CLI_COMMANDS:
        code, _, stderr = run_cli("--store", str(path), *command)
        assert code in (0, 1, 2), (command, code)
        assert "Traceback" not in stderr


def _check_works(path: Path, expected_call: int) -> None:
    _check_reads(path, expected_call)
    store = quiet_store(path)
    key = ExecutionKey("after", "after", T0 + 100)
    store.put(Entry.of(key, {"v": [1, 2]}))
    store.close()
    again = quiet_store(path)
    found = again.get(key, exact_match_created_at=True)
    assert found is not None
    assert dict(found.variables) == {"v": [1, 2]}
    again.close()


def _property(plant: Any) -> None:
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        with environment(root / "home"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path, expected_call = _build(root)
            plant(path)
            _check_reads(path, expected_call)
            _check_cli(path)
            _maintain(path)
            _check_works(path, expected_call)
    finally:
        shutil.rmtree(root)


PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(header=header_payloads, payloads=st.lists(log_payloads, min_size=1, max_size=4))
def test_hostile_log_records_are_damage_never_a_crash(header: bytes, payloads: list[bytes]) -> None:
    _property(lambda path: write_segment(path, payloads, header=header))


@PROPERTY_SETTINGS
@given(snapshot=snapshots())
def test_hostile_snapshot_records_are_damage_never_a_crash(
    snapshot: tuple[list[tuple[int, bytes]], bytes, dict[str, Any]],
) -> None:
    entries, tombstones, header = snapshot
    _property(lambda path: write_snapshot(path, entries, tombstones, header))


# -- the records the issue found, one by one (they must never regress) ------------

FOUND = {
    "unhashable map key": _raw_map_with_unhashable_key(["t", "entry"]),
    "format field a list": pack(
        _replaced(_entry_template(), ("c", "variables", "x", "f"), ["json"])
    ),
    "format field a map": pack(
        _replaced(_entry_template(), ("c", "variables", "x", "f"), {"a": 1})
    ),
    "created_at past u64 in an access": pack({"t": "access", "k": ["b", "m", 2**64 - 1], "at": -1}),
    "created_at the largest u64 in an entry": pack(
        _replaced(_entry_template(), ("k", 2), 2**64 - 1)
    ),
    "user metadata with an extension type": pack(
        _replaced(_entry_template(), ("um",), {"x": msgpack.ExtType(3, b"z")})
    ),
    "user metadata with int keys": pack(_replaced(_entry_template(), ("um",), {1: 2})),
    "nested a thousand deep": pack(_replaced(_entry_template(), ("um",), {"x": [[[[[]]]]] * 3})),
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_each_found_record_is_a_warning_and_a_miss(name: str, tmp_path: Path) -> None:
    with environment(tmp_path / "home"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path, expected_call = _build(tmp_path)
    write_segment(path, [FOUND[name]])
    _property_on(path, expected_call)


def _property_on(path: Path, expected_call: int) -> None:
    with environment(path.parent / "home"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_reads(path, expected_call)
        _check_cli(path)
        _maintain(path)
        _check_works(path, expected_call)


def test_created_at_outside_the_format_is_refused() -> None:
    for bad in (2**64, -1, True, 1.5):
        with pytest.raises(InvalidArgumentError, match="created_at"):
            ExecutionKey("b", "m", bad)
    assert ExecutionKey("b", "m", 2**64 - 1).created_at == 2**64 - 1
