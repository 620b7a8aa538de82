"""Put then get: every kind of value comes back equal, in the same store
instance and in a new instance that reads the directory from scratch.

Also: partial loads, the `created_at` rules of runs, clashes and idempotent
puts, and the metadata recorded with each entry.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
from _checks import refuse_unpickling
from _layout import object_file
from conftest import StoreFactory

from marimo_store import (
    Entry,
    EntryMetadata,
    ExecutionKey,
    ExecutionKeyClash,
    FsPersistentStore,
    InvalidArgumentError,
    NotFoundError,
    ObjectRef,
    SerializationError,
    StoreWarning,
)

KEY = ExecutionKey("roundtrip-block", "module-hash")


# -- module-level definitions: importable by name, so plain pickle stores them ----------


@dataclass(frozen=True)
class Point:
    """An importable class: pickled by reference, format "pickle"."""

    x: int
    y: float

    def norm2(self) -> float:
        return self.x * self.x + self.y * self.y


def _refuse_to_load() -> None:
    raise RuntimeError("this value must never be unpickled")


class ExplodesOnLoad:
    """Pickles fine; unpickling it raises. Proves what is (not) unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


def make_adder(n: int) -> Callable[[int], int]:
    """A closure: its function is not importable by name (`make_adder.<locals>.add`)."""

    def add(x: int) -> int:
        return x + n

    return add


# -- helpers ---------------------------------------------------------------------------


def is_memory_mapped(value: Any) -> bool:
    """Whether the `.base` chain of an array (through memoryviews) reaches an mmap."""
    current = value
    for _ in range(100):
        if current is None:
            return False
        if isinstance(current, mmap.mmap):
            return True
        current = current.obj if isinstance(current, memoryview) else getattr(current, "base", None)
    raise AssertionError("base chain too long")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def loaded(store: FsPersistentStore, key: ExecutionKey, name: str = "value") -> Any:
    entry = store.get(key)
    assert entry is not None
    return entry.variables[name]


class RoundTrip(NamedTuple):
    same: Any
    fresh: Any
    ref: ObjectRef


def round_trip(make_store: StoreFactory, value: Any, **options: Any) -> RoundTrip:
    """Put `value`, then get it from the writing instance and from a new one."""
    writer = make_store(**options)
    metadata = writer.put(Entry.of(KEY, {"value": value}))
    same = loaded(writer, KEY)
    fresh = loaded(make_store(**options), KEY)
    return RoundTrip(same, fresh, metadata.variables["value"])


# -- scalars ---------------------------------------------------------------------------

SCALARS = [
    pytest.param(0, id="zero"),
    pytest.param(-17, id="negative-int"),
    pytest.param(2**200 + 1, id="big-int"),
    pytest.param(-(3**150), id="negative-big-int"),
    pytest.param(0.1, id="float"),
    pytest.param(-0.0, id="negative-zero"),
    pytest.param(float("inf"), id="inf"),
    pytest.param(5e-324, id="smallest-subnormal"),
    pytest.param(complex(1.5, -2), id="complex"),
    pytest.param("", id="empty-str"),
    pytest.param("plain ascii", id="str"),
    pytest.param("h\u00e9llo w\u00f6rld \u2713 \U0001f389 \x00", id="unicode-str"),
    pytest.param("lone \ud800 surrogate", id="lone-surrogate-str"),
    pytest.param("x" * 10_000, id="large-str"),
    pytest.param(b"", id="empty-bytes"),
    pytest.param(b"\x00\xff\x80 bytes", id="bytes"),
    pytest.param(bytes(range(256)) * 40, id="large-bytes"),
    pytest.param(None, id="none"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
]


@pytest.mark.parametrize("value", SCALARS)
def test_scalar_round_trip(make_store: StoreFactory, value: Any) -> None:
    result = round_trip(make_store, value)
    for got in (result.same, result.fresh):
        assert type(got) is type(value)
        assert got == value
        assert repr(got) == repr(value)  # tells -0.0 from 0.0
    assert result.ref.format == "pickle"


def test_nan_round_trip(make_store: StoreFactory) -> None:
    result = round_trip(make_store, float("nan"))
    for got in (result.same, result.fresh):
        assert type(got) is float
        assert math.isnan(got)


def test_small_values_are_inline_and_large_ones_are_files(
    make_store: StoreFactory, store_path: Path
) -> None:
    small = round_trip(make_store, "s" * 10).ref
    assert small.inline
    large = make_store().put(Entry.of(ExecutionKey("b", "large"), {"v": "L" * 5000}))
    ref = large.variables["v"]
    assert not ref.inline
    assert object_file(store_path, ref).stat().st_size == ref.size


# -- containers ------------------------------------------------------------------------


def assert_same_structure(got: Any, expected: Any) -> None:
    """Equal, and with the same container types all the way down."""
    assert type(got) is type(expected), (got, expected)
    assert got == expected
    if isinstance(expected, dict):
        for name, item in expected.items():
            assert_same_structure(got[name], item)
    elif isinstance(expected, list | tuple):
        for got_item, item in zip(got, expected, strict=True):
            assert_same_structure(got_item, item)
    elif isinstance(expected, set | frozenset):
        assert {(type(item), item) for item in got} == {(type(item), item) for item in expected}


NESTED = {
    "list": [1, [2, [3, [4, []]]], (5, 6), {"in": "list"}],
    "tuple": (1, (2, (3,)), [], (), {7, 8}),
    "set": {1, "two", (3, 4), frozenset({5})},
    "frozenset": frozenset({frozenset({1, 2}), (3, "x"), None}),
    (1, "tuple key"): {"inner": {"deeper": [{"x": None, "y": b"bytes"}]}},
    42: [1.5, -0.0, True],
    None: "none key",
    frozenset({"k"}): ({"a": [set()]},),
}


def test_nested_containers_round_trip(make_store: StoreFactory) -> None:
    result = round_trip(make_store, NESTED)
    for got in (result.same, result.fresh):
        assert_same_structure(got, NESTED)
        assert type(got["set"]) is set
        assert type(got["frozenset"]) is frozenset


def test_shared_references_and_cycles_survive(make_store: StoreFactory) -> None:
    shared = [1, 2, 3]
    cycle: list[Any] = ["head"]
    cycle.append(cycle)
    result = round_trip(make_store, {"a": shared, "b": shared, "cycle": cycle})
    for got in (result.same, result.fresh):
        assert got["a"] == shared
        assert got["a"] is got["b"]
        assert got["cycle"][0] == "head"
        assert got["cycle"][1] is got["cycle"]


# -- a 200 MB numpy array: out of band, memory-mapped ------------------------------------

BIG_ELEMENTS = 25_000_000  # float64: 200 MB


class BigArray(NamedTuple):
    path: Path
    key: ExecutionKey
    array: np.ndarray
    writer: FsPersistentStore
    metadata: EntryMetadata


@pytest.fixture(scope="module")
def big_array(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigArray]:
    """One store holding a 200 MB array, written once for the module's tests."""
    path = tmp_path_factory.mktemp("big") / "store"
    array = np.arange(BIG_ELEMENTS, dtype=np.float64)
    array[::1000] *= -1.5  # not just a ramp: a misplaced page would show
    assert array.nbytes == 200_000_000
    key = ExecutionKey("big", "array")
    writer = FsPersistentStore(path)
    metadata = writer.put(Entry.of(key, {"array": array, "label": "big"}))
    yield BigArray(path, key, array, writer, metadata)
    writer.close()
    shutil.rmtree(path, ignore_errors=True)  # do not leave 200 MB in the basetemp


def test_big_array_is_one_out_of_band_buffer(big_array: BigArray) -> None:
    ref = big_array.metadata.variables["array"]
    assert ref.format == "pickle"
    assert len(ref.buffers) == 1
    buffer = ref.buffers[0]
    assert buffer.format == "buffer"
    assert buffer.size == big_array.array.nbytes
    assert object_file(big_array.path, buffer).stat().st_size == big_array.array.nbytes
    assert ref.size < 1000  # the stream only references the buffer


@pytest.mark.parametrize("instance", ["same", "fresh"])
def test_big_array_loads_memory_mapped_copy_on_write(big_array: BigArray, instance: str) -> None:
    """Writable as the value that was put, without a copy; writes stay private."""
    if instance == "same":
        store = big_array.writer
        got = loaded(store, big_array.key, "array")
    else:
        with FsPersistentStore(big_array.path) as store:
            got = loaded(store, big_array.key, "array")
    assert got.dtype == np.float64
    assert got.shape == big_array.array.shape
    np.testing.assert_array_equal(got, big_array.array)
    assert got.flags.writeable is True
    assert is_memory_mapped(got)
    (buffer,) = big_array.metadata.variables["array"].buffers
    path = object_file(big_array.path, buffer)
    before = file_digest(path)
    got[::100_000] = -7.0  # a few pages: each is copied, privately, when written
    assert got[100_000] == -7.0
    assert file_digest(path) == before
    with FsPersistentStore(big_array.path) as store:
        np.testing.assert_array_equal(loaded(store, big_array.key, "array"), big_array.array)


def test_big_array_with_mmap_mode_r_is_read_only(big_array: BigArray) -> None:
    with FsPersistentStore(big_array.path, mmap_mode="r") as store:
        got = loaded(store, big_array.key, "array")
        np.testing.assert_array_equal(got, big_array.array)
        assert got.flags.writeable is False
        assert is_memory_mapped(got)
        with pytest.raises(ValueError, match="read-only"):
            got[0] = 1.0


def test_big_array_load_variable_is_memory_mapped(big_array: BigArray) -> None:
    with FsPersistentStore(big_array.path) as store:
        got = store.load_variable(big_array.key, "array")
    np.testing.assert_array_equal(got, big_array.array)
    assert got.flags.writeable is True
    assert is_memory_mapped(got)


def test_big_array_without_memory_map_is_a_writable_copy(big_array: BigArray) -> None:
    with FsPersistentStore(big_array.path, memory_map=False) as store:
        got = loaded(store, big_array.key, "array")
        np.testing.assert_array_equal(got, big_array.array)
        assert got.flags.writeable is True
        assert not is_memory_mapped(got)
        got[:10] = 123.0  # writing into the copy ...
        # ... changes neither a second load nor the file.
        again = loaded(store, big_array.key, "array")
        assert again[0] == big_array.array[0]
        assert again is not got
    with FsPersistentStore(big_array.path) as store:
        np.testing.assert_array_equal(loaded(store, big_array.key, "array"), big_array.array)


def test_big_array_metadata_names_numpy(big_array: BigArray) -> None:
    packages = big_array.metadata.environment.packages
    assert packages.get("numpy") == np.__version__


# -- pandas ----------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [5, 20_000], ids=["small", "out-of-band"])
def test_dataframe_round_trip(make_store: StoreFactory, rows: int) -> None:
    frame = pd.DataFrame(
        {
            "name": [f"row {i} \u00e9" for i in range(rows)],
            "value": np.linspace(-1.0, 1.0, rows),
        }
    )
    result = round_trip(make_store, frame)
    for got in (result.same, result.fresh):
        pd.testing.assert_frame_equal(got, frame)
    if rows > 10_000:
        assert result.ref.buffers  # the float column went out of band
    entry = make_store().get(KEY)
    assert entry is not None
    assert entry.metadata is not None
    assert entry.metadata.environment.packages.get("pandas") == pd.__version__


# -- functions and classes -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lambda", "closure"])
def test_lambdas_and_closures_fall_back_to_cloudpickle(make_store: StoreFactory, kind: str) -> None:
    function = (lambda x: x * 3 + 1) if kind == "lambda" else make_adder(10)
    result = round_trip(make_store, function)
    assert result.ref.format == "cloudpickle"
    for got in (result.same, result.fresh):
        assert callable(got)
        for x in (-2, 0, 5):
            assert got(x) == function(x)


def test_importable_class_instance_is_plain_pickle(make_store: StoreFactory) -> None:
    point = Point(3, -4.5)
    result = round_trip(make_store, point)
    assert result.ref.format == "pickle"
    for got in (result.same, result.fresh):
        assert type(got) is Point
        assert got == point
        assert got.norm2() == point.norm2()


def test_importable_class_needs_no_cloudpickle(make_store: StoreFactory) -> None:
    result = round_trip(make_store, [Point(1, 2.0)], cloudpickle_fallback=False)
    assert result.ref.format == "pickle"
    assert result.fresh == [Point(1, 2.0)]


@pytest.mark.parametrize("kind", ["lambda", "closure"])
def test_without_cloudpickle_fallback_functions_are_refused(
    make_store: StoreFactory, kind: str
) -> None:
    store = make_store(cloudpickle_fallback=False)
    function = (lambda x: x) if kind == "lambda" else make_adder(1)
    entry = Entry.of(KEY, {"fine": 1, "my_function": function})
    with pytest.raises(SerializationError, match="'my_function'"):
        store.put(entry)
    assert store.entries() == []
    assert store.get(KEY) is None


# -- partial loads ---------------------------------------------------------------------


def test_load_variable_loads_only_that_variable(make_store: StoreFactory, store_path: Path) -> None:
    writer = make_store()
    metadata = writer.put(Entry.of(KEY, {"first": "A" * 5000, "second": "B" * 5000}))
    second = metadata.variables["second"]
    assert not second.inline
    object_file(store_path, second).unlink()

    for store in (writer, make_store()):
        assert store.load_variable(KEY, "first") == "A" * 5000
        with pytest.raises(NotFoundError):
            store.load_variable(KEY, "second")
        with pytest.raises(NotFoundError):
            store.load_variable(KEY, "no_such_variable")
        assert store.get(KEY) is None  # a hit is always complete


def test_load_variable_never_unpickles_the_others(make_store: StoreFactory) -> None:
    writer = make_store()
    writer.put(Entry.of(KEY, {"good": [1, 2, 3], "poison": ExplodesOnLoad()}))
    for store in (writer, make_store()):
        assert store.load_variable(KEY, "good") == [1, 2, 3]
        with pytest.warns(StoreWarning, match="RuntimeError"):
            assert store.get(KEY) is None


def test_load_variable_of_a_missing_entry(store: FsPersistentStore) -> None:
    with pytest.raises(NotFoundError):
        store.load_variable(KEY, "anything")


# -- created_at ------------------------------------------------------------------------


def test_put_without_created_at_assigns_the_current_time(make_store: StoreFactory) -> None:
    store = make_store()
    before = time.time_ns() // 1_000_000
    metadata = store.put(Entry.of(KEY, {"v": 1}))
    after = time.time_ns() // 1_000_000
    assert metadata.key.created_at is not None
    assert before <= metadata.created_at <= after
    assert metadata.key == KEY.at(metadata.created_at)
    for reader in (store, make_store()):
        entry = reader.get(KEY)
        assert entry is not None
        assert entry.key == metadata.key
        assert entry.metadata is not None
        assert entry.metadata.key == metadata.key


def test_new_runs_of_a_computation(make_store: StoreFactory) -> None:
    writer = make_store()
    first = writer.put(Entry.of(KEY, {"v": "first run"}))
    second = writer.put(Entry.of(KEY, {"v": "second run"}))
    assert second.created_at > first.created_at

    for store in (writer, make_store()):
        runs = [m for m in store.entries() if m.key.module_hash == KEY.module_hash]
        assert [m.key for m in runs] == [first.key, second.key]
        assert loaded(store, KEY, "v") == "second run"  # the newest
        exact_first = store.get(KEY.at(first.created_at), exact_match_created_at=True)
        assert exact_first is not None
        assert exact_first.variables["v"] == "first run"
        assert exact_first.key == first.key
        # Without exact_match_created_at, created_at is an upper bound.
        assert loaded(store, KEY.at(first.created_at), "v") == "first run"
        assert loaded(store, KEY.at(second.created_at + 10_000), "v") == "second run"
        assert store.get(KEY.at(first.created_at - 1)) is None
        assert store.get(KEY.at(first.created_at - 1), exact_match_created_at=True) is None


def test_newest_run_is_chosen_by_created_at_not_by_put_order(make_store: StoreFactory) -> None:
    writer = make_store()
    writer.put(Entry.of(KEY.at(2_000), {"v": "newer"}))
    writer.put(Entry.of(KEY.at(1_000), {"v": "older, put last"}))
    for store in (writer, make_store()):
        assert loaded(store, KEY, "v") == "newer"
        assert loaded(store, KEY.at(1_999), "v") == "older, put last"


def test_exact_match_needs_created_at(store: FsPersistentStore) -> None:
    store.put(Entry.of(KEY, {"v": 1}))
    with pytest.raises(InvalidArgumentError):
        store.get(KEY, exact_match_created_at=True)


@pytest.mark.parametrize(
    "other",
    [{"v": "different"}, {"w": "same value, other name"}, {"v": "same", "extra": 1}],
    ids=["other-value", "other-name", "extra-variable"],
)
def test_same_key_with_different_contents_clashes(
    make_store: StoreFactory, other: dict[str, Any]
) -> None:
    key = KEY.at(1_234_567)
    writer = make_store()
    writer.put(Entry.of(key, {"v": "same"}))
    for store in (writer, make_store()):
        with pytest.raises(ExecutionKeyClash):
            store.put(Entry.of(key, other))
    fresh = make_store()
    assert len(fresh.entries()) == 1
    got = fresh.get(key, exact_match_created_at=True)
    assert got is not None
    assert dict(got.variables) == {"v": "same"}


@pytest.mark.parametrize("value", ["small", "large " * 1000], ids=["inline", "object-file"])
def test_same_key_with_same_contents_is_idempotent(make_store: StoreFactory, value: str) -> None:
    key = KEY.at(1_234_567)
    writer = make_store()
    first = writer.put(Entry.of(key, {"v": value}))
    again = writer.put(Entry.of(key, {"v": value}))
    assert again == first
    from_other_instance = make_store().put(Entry.of(key, {"v": value}))
    assert from_other_instance == first
    fresh = make_store()
    assert [m.key for m in fresh.entries()] == [key]
    assert loaded(fresh, key, "v") == value


# -- metadata --------------------------------------------------------------------------


def test_metadata_records_environment_and_user_metadata(make_store: StoreFactory) -> None:
    user_metadata = {
        "author": "tests",
        "count": 3,
        "ratio": 0.25,
        "tags": ["a", "b"],
        "nested": {"ok": True, "none": None},
        "raw": b"\x00\x01",
    }
    writer = make_store()
    array_key = ExecutionKey("meta", "with-array")
    plain_key = ExecutionKey("meta", "plain")
    put_array = writer.put(
        Entry.of(array_key, {"a": np.arange(10), "n": 1}, user_metadata=user_metadata)
    )
    put_plain = writer.put(Entry.of(plain_key, {"n": [1, "x"]}))

    fresh = make_store()
    for store in (writer, fresh):
        array_entry = store.get(array_key)
        plain_entry = store.get(plain_key)
        assert array_entry is not None
        assert plain_entry is not None
        for metadata in (put_array, array_entry.metadata):
            assert metadata is not None
            assert metadata.environment.python == platform.python_version()
            assert metadata.environment.platform
            assert metadata.environment.packages["numpy"] == np.__version__
            assert dict(metadata.user_metadata) == user_metadata
        assert dict(array_entry.user_metadata) == user_metadata
        for metadata in (put_plain, plain_entry.metadata):
            assert metadata is not None
            assert "numpy" not in metadata.environment.packages
            assert dict(metadata.user_metadata) == {}
    listed = {m.key: m for m in fresh.entries()}
    assert dict(listed[put_array.key].user_metadata) == user_metadata
    assert listed[put_array.key].environment == put_array.environment


def test_entries_lists_everything_without_unpickling(
    make_store: StoreFactory, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_store()
    array = np.ones(100_000)  # 800 KB: an out-of-band buffer
    put = [
        writer.put(Entry.of(ExecutionKey("list", "json"), {"j": {"a": [1]}}, format="json")),
        writer.put(Entry.of(ExecutionKey("list", "poison"), {"p": ExplodesOnLoad()})),
        writer.put(Entry.of(ExecutionKey("list", "array"), {"a": array, "t": "T" * 4000})),
        writer.put(Entry.of(ExecutionKey("list", "lambda"), {"f": lambda: 1})),
    ]

    refuse_unpickling(monkeypatch, "entries() must not unpickle")

    for store in (writer, make_store()):
        listed = store.entries()
        assert [m.key for m in listed] == [m.key for m in put]  # oldest first
        by_key = {m.key: m for m in listed}
        for metadata in put:
            assert by_key[metadata.key].contents == metadata.contents
            assert by_key[metadata.key].environment == metadata.environment
        assert len(store) == 4

    refs = {m.key.module_hash: m.variables for m in put}
    assert refs["json"]["j"].format == "json"
    assert refs["poison"]["p"].format == "pickle"
    assert refs["lambda"]["f"].format == "cloudpickle"
    array_ref = refs["array"]["a"]
    assert array_ref.buffers[0].size == array.nbytes
    assert array_ref.total_size == array.nbytes + array_ref.size
    text_ref = refs["array"]["t"]
    assert object_file(store_path, text_ref).stat().st_size == text_ref.size
