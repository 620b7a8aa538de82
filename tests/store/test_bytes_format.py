"""format="bytes": values that are serialized already, stored as they are.

A bytes value comes back as the exact bytes, never runs code on load (even
when the bytes are a pickle), and may be given as pieces: each piece after
the first is an object of its own, so equal pieces of different values are
stored once, and small pieces stay inside the entry record.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from _files import flip_byte
from _layout import log_dir, object_files, object_path
from conftest import StoreFactory

from marimo_store import (
    Entry,
    ExecutionKey,
    InvalidArgumentError,
    NotFoundError,
    SerializationError,
    StoreWarning,
)

KEY = ExecutionKey("bytes-block", "module")
BIG = np.arange(40_000, dtype=np.float64).tobytes()  # 320 kB, stored as a file


def test_bytes_come_back_exactly_and_as_bytes(make_store: StoreFactory) -> None:
    values = {
        "small": b"hello",
        "empty": b"",
        "big": BIG,
        "from_bytearray": bytearray(b"\x00\xff" * 600),
        "from_memoryview": memoryview(BIG)[8:],
        "from_array": np.arange(10, dtype=np.int32),
    }
    make_store().put(Entry.of(KEY, values, format="bytes"))
    entry = make_store().get(KEY)
    assert entry is not None
    expected = {name: bytes(memoryview(value)) for name, value in values.items()}
    assert dict(entry.variables) == expected
    assert all(type(value) is bytes for value in entry.variables.values())


def test_a_pickle_stored_as_bytes_is_never_unpickled(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "executed"

    class Trap:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.mkdir, (str(marker),))

    payload = pickle.dumps(Trap())
    make_store().put(Entry.of(KEY, {"p": payload}, format="bytes"))
    store = make_store()
    entry = store.get(KEY)
    assert entry is not None
    assert entry.variables["p"] == payload
    assert store.load_bytes(KEY, "p") == payload
    assert not marker.exists()


def test_load_bytes_refuses_a_value_stored_in_another_format(make_store: StoreFactory) -> None:
    store = make_store()
    store.put(Entry.of(KEY, {"x": [1, 2, 3]}))  # pickle
    with pytest.raises(NotFoundError, match="stored as pickle, not as bytes"):
        store.load_bytes(KEY, "x")
    assert store.load_variable(KEY, "x") == [1, 2, 3]


def test_pieces_are_joined_and_a_shared_piece_is_one_file(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store()
    first = store.put(
        Entry.of(ExecutionKey("a", "m"), {"v": (b"header-a", BIG, b"tail")}, format="bytes")
    )
    second = store.put(
        Entry.of(ExecutionKey("b", "m"), {"w": (b"other header", memoryview(BIG))}, format="bytes")
    )
    whole = store.put(Entry.of(ExecutionKey("c", "m"), {"x": BIG}, format="bytes"))
    shared = first.variables["v"].buffers[0]
    assert shared.size == len(BIG)
    assert second.variables["w"].buffers[0].id == shared.id
    assert whole.variables["x"].id == shared.id
    # Headers and tails are small: inside the records, not files.
    assert object_files(store_path) == [object_path(store_path, shared.id)]
    assert first.variables["v"].inline
    assert first.variables["v"].buffers[1].inline

    fresh = make_store()
    assert fresh.load_bytes(ExecutionKey("a", "m"), "v") == b"header-a" + BIG + b"tail"
    assert fresh.load_bytes(ExecutionKey("b", "m"), "w") == b"other header" + BIG
    assert fresh.load_bytes(ExecutionKey("c", "m"), "x") == BIG


def test_pieces_survive_a_cleanup_snapshot(make_store: StoreFactory) -> None:
    store = make_store()
    store.put(Entry.of(KEY, {"v": (b"h", BIG, b"t" * 10)}, format="bytes"))
    store.cleanup()
    assert make_store().load_bytes(KEY, "v") == b"h" + BIG + b"t" * 10


def test_a_damaged_piece_is_a_miss(make_store: StoreFactory, store_path: Path) -> None:
    make_store().put(Entry.of(KEY, {"v": (b"header", BIG)}, format="bytes"))
    (piece,) = object_files(store_path)
    flip_byte(piece, 1000)
    store = make_store()
    with pytest.warns(StoreWarning, match="damaged object"):
        assert store.get(KEY) is None
    with pytest.raises(NotFoundError):
        store.load_bytes(KEY, "v")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param("text", "type builtins.str", id="str"),
        pytest.param(42, "type builtins.int", id="int"),
        pytest.param([b"a", b"b"], "type builtins.list", id="list-of-bytes"),
        pytest.param((b"a", "b"), r"\(piece 1\)", id="tuple-with-str"),
        pytest.param(np.arange(10)[::2], "contiguous", id="strided-array"),
    ],
)
def test_values_that_are_not_bytes_are_refused(
    make_store: StoreFactory, store_path: Path, value: object, problem: str
) -> None:
    with pytest.raises(SerializationError, match=problem) as raised:
        make_store().put(Entry.of(KEY, {"v": value}, format="bytes"))
    assert "'v'" in str(raised.value)
    assert not log_dir(store_path).exists()


def test_entry_format_names_bytes_among_the_choices() -> None:
    with pytest.raises(InvalidArgumentError, match="'bytes'"):
        Entry.of(KEY, {"v": b""}, format="raw")  # type: ignore[arg-type]
