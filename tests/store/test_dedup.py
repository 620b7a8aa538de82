"""Content addressing: equal bytes are one object file, whichever entries,
variables or containers hold them; `execution_key_qualified` opts out.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from _layout import object_file, object_files, object_path
from conftest import StoreFactory

from marimo_store import Entry, ExecutionKey, FsPersistentStore

BIG_TEXT = "d" * 100_000  # pickles in band to ~100 KB: one object file
FIFTY_MB = 50_000_000


def objects_size(root: Path) -> int:
    return sum(path.stat().st_size for path in object_files(root))


def value_of(store: FsPersistentStore, key: ExecutionKey, name: str) -> Any:
    entry = store.get(key)
    assert entry is not None
    return entry.variables[name]


# -- deduplication ---------------------------------------------------------------------


def test_identical_values_share_one_object_file(make_store: StoreFactory, store_path: Path) -> None:
    writer = make_store()
    first = writer.put(Entry.of(ExecutionKey("block-a", "m1"), {"text": BIG_TEXT}))
    second = writer.put(Entry.of(ExecutionKey("block-b", "m2"), {"other_name": BIG_TEXT}))
    ref = first.variables["text"]
    assert not ref.inline
    assert second.variables["other_name"] == ref

    files = object_files(store_path)
    assert files == [object_file(store_path, ref)]
    # The file is named by the xxh3-128 of its bytes.
    data = files[0].read_bytes()
    assert len(data) == ref.size
    assert xxhash.xxh3_128_hexdigest(data) == ref.id == files[0].parent.name + files[0].name

    fresh = make_store()
    assert value_of(fresh, first.key, "text") == BIG_TEXT
    assert value_of(fresh, second.key, "other_name") == BIG_TEXT


def test_same_value_twice_in_one_entry_is_one_file(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store()
    metadata = store.put(Entry.of(ExecutionKey("b", "m"), {"x": BIG_TEXT, "y": BIG_TEXT}))
    assert metadata.variables["x"] == metadata.variables["y"]
    assert len(object_files(store_path)) == 1
    assert len(metadata.objects()) == 1
    assert metadata.content_size == metadata.variables["x"].size
    entry = make_store().get(ExecutionKey("b", "m"))
    assert entry is not None
    assert dict(entry.variables) == {"x": BIG_TEXT, "y": BIG_TEXT}


def test_different_values_are_different_files(make_store: StoreFactory, store_path: Path) -> None:
    store = make_store()
    store.put(Entry.of(ExecutionKey("b", "m1"), {"x": BIG_TEXT}))
    store.put(Entry.of(ExecutionKey("b", "m2"), {"x": BIG_TEXT + "!"}))
    assert len(object_files(store_path)) == 2


def test_array_shared_by_two_dicts_is_stored_once(
    make_store: StoreFactory, store_path: Path
) -> None:
    array = np.arange(FIFTY_MB // 8, dtype=np.float64)
    assert array.nbytes == FIFTY_MB
    first_key = ExecutionKey("dicts", "first")
    second_key = ExecutionKey("dicts", "second")
    first_dict = {"array": array, "label": "first"}
    second_dict = {"label": "second", "same_bytes": array.copy(), "more": [1, 2, 3]}

    writer = make_store()
    first = writer.put(Entry.of(first_key, {"data": first_dict}))
    second = writer.put(Entry.of(second_key, {"data": second_dict}))
    first_ref, second_ref = first.variables["data"], second.variables["data"]
    assert first_ref.id != second_ref.id  # different dicts ...
    assert first_ref.buffers == second_ref.buffers  # ... one buffer
    assert [buffer.size for buffer in first_ref.buffers] == [FIFTY_MB]

    sizes = [path.stat().st_size for path in object_files(store_path)]
    assert sizes.count(FIFTY_MB) == 1
    assert objects_size(store_path) < 1.5 * FIFTY_MB

    fresh = make_store()
    loaded_first = value_of(fresh, first_key, "data")
    loaded_second = value_of(fresh, second_key, "data")
    assert loaded_first["label"] == "first"
    assert loaded_second["label"] == "second"
    assert loaded_second["more"] == [1, 2, 3]
    np.testing.assert_array_equal(loaded_first["array"], array)
    np.testing.assert_array_equal(loaded_second["same_bytes"], array)


# -- execution_key_qualified -----------------------------------------------------------


def test_execution_key_qualified_objects_are_not_shared(
    make_store: StoreFactory, store_path: Path
) -> None:
    array = np.arange(1 << 17, dtype=np.int64)  # 1 MiB: an out-of-band buffer
    first_key = ExecutionKey("block-one", "same-module")
    second_key = ExecutionKey("block-two", "same-module")
    writer = make_store(object_id_mode="execution_key_qualified")
    first = writer.put(Entry.of(first_key, {"text": BIG_TEXT, "array": array}))
    second = writer.put(Entry.of(second_key, {"text": BIG_TEXT, "array": array}))

    first_files = {i for i, ref in first.objects().items() if not ref.inline}
    second_files = {i for i, ref in second.objects().items() if not ref.inline}
    assert len(first_files) == len(second_files) == 2  # text and the array's buffer
    assert not first_files & second_files
    # Same content hash, different qualifier.
    for name in ("text", "array"):
        a, b = first.variables[name], second.variables[name]
        for x, y in zip(a.objects(), b.objects(), strict=True):
            if x.inline:
                continue
            assert x.id != y.id
            assert x.id[:32] == y.id[:32]
    files = {path.parent.name + path.name for path in object_files(store_path)}
    assert files == first_files | second_files  # four files: nothing shared

    for reader in (writer, make_store(), make_store(object_id_mode="execution_key_qualified")):
        for key in (first_key, second_key):
            assert value_of(reader, key, "text") == BIG_TEXT
            np.testing.assert_array_equal(value_of(reader, key, "array"), array)

    # Independent copies: losing the first entry's files leaves the second whole.
    for object_id in first_files:
        object_path(store_path, object_id).unlink()
    fresh = make_store()
    assert fresh.get(first_key) is None
    assert value_of(fresh, second_key, "text") == BIG_TEXT
    np.testing.assert_array_equal(value_of(fresh, second_key, "array"), array)


# -- mtime refresh ---------------------------------------------------------------------


@pytest.mark.parametrize("again", ["same-key", "other-key"])
def test_duplicate_put_refreshes_object_mtime(
    make_store: StoreFactory, store_path: Path, again: str
) -> None:
    array = np.arange(1 << 17, dtype=np.int64)
    key = ExecutionKey("mtime", "m").at(1_000_000)
    store = make_store()
    store.put(Entry.of(key, {"text": BIG_TEXT, "array": array}))
    files = object_files(store_path)
    assert len(files) == 2  # the text and the array's buffer

    ten_days_ago = time.time() - 10 * 86_400
    for path in files:
        os.utime(path, (ten_days_ago, ten_days_ago))
        assert path.stat().st_mtime == pytest.approx(ten_days_ago)

    other = key if again == "same-key" else ExecutionKey("mtime", "other")
    store.put(Entry.of(other, {"text": BIG_TEXT, "array": array}))
    assert object_files(store_path) == files  # nothing new was written
    for path in files:
        # Moved forward to about now (days, not seconds, decide the assertion).
        assert path.stat().st_mtime > ten_days_ago + 9 * 86_400


# -- empty values ----------------------------------------------------------------------

EMPTY_VALUES = [
    pytest.param(b"", id="bytes"),
    pytest.param("", id="str"),
    pytest.param(bytearray(), id="bytearray"),
    pytest.param([], id="list"),
    pytest.param({}, id="dict"),
    pytest.param(frozenset(), id="frozenset"),
    pytest.param(np.empty(0), id="array"),
    pytest.param(np.zeros((0, 1000), dtype=np.int32), id="array-2d"),
]


@pytest.mark.parametrize("inline_threshold", [512, 0], ids=["inline", "object-file"])
@pytest.mark.parametrize("value", EMPTY_VALUES)
def test_empty_values_round_trip(
    make_store: StoreFactory, store_path: Path, value: Any, inline_threshold: int
) -> None:
    key = ExecutionKey("empty", "m")
    writer = make_store(inline_threshold=inline_threshold)
    metadata = writer.put(Entry.of(key, {"empty": value}))
    ref = metadata.variables["empty"]
    assert ref.inline is (inline_threshold > 0)
    assert len(object_files(store_path)) == (0 if ref.inline else 1)
    for reader in (writer, make_store(), make_store(memory_map=False)):
        got = value_of(reader, key, "empty")
        assert type(got) is type(value)
        if isinstance(value, np.ndarray):
            assert got.shape == value.shape
            assert got.dtype == value.dtype
        else:
            assert got == value


@pytest.mark.parametrize("value", ["", [], {}], ids=["str", "list", "dict"])
def test_empty_json_values_round_trip(make_store: StoreFactory, value: Any) -> None:
    key = ExecutionKey("empty", "json")
    make_store(inline_threshold=0).put(Entry.of(key, {"empty": value}, format="json"))
    got = value_of(make_store(), key, "empty")
    assert type(got) is type(value)
    assert got == value
