"""format="json": plain data that comes back exactly, and never executes code.

JSON is strict: a value that would not load back equal (a set, a tuple, a
non-str key, NaN) is refused with a `SerializationError` naming the
variable, and nothing is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _checks import refuse_unpickling
from _layout import object_path
from conftest import StoreFactory

from marimo_store import (
    Entry,
    ExecutionKey,
    FsPersistentStore,
    SerializationError,
    StoreWarning,
)

KEY = ExecutionKey("json-block", "module-hash")


def assert_exactly_equal(got: Any, expected: Any) -> None:
    """Equal with the same types all the way down (1 is not 1.0, -0.0 is not 0.0)."""
    assert type(got) is type(expected), (got, expected)
    if isinstance(expected, dict):
        assert list(got) == list(expected)  # same keys, same order
        for name, item in expected.items():
            assert_exactly_equal(got[name], item)
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for got_item, item in zip(got, expected, strict=True):
            assert_exactly_equal(got_item, item)
    else:
        assert got == expected
        assert repr(got) == repr(expected)


JSON_VALUES = [
    pytest.param({"a": 1, "b": [1, 2.5, "x"], "c": {"d": None, "e": True}}, id="dict"),
    pytest.param({}, id="empty-dict"),
    pytest.param({"z": 1, "a": 2, "m": 3}, id="dict-order"),
    pytest.param([1, "two", 3.0, False, None, [], {}], id="list"),
    pytest.param([], id="empty-list"),
    pytest.param([[[[["deep"]]]]], id="nested-list"),
    pytest.param('h\u00e9llo \u2713 \U0001f389 \x00 "quoted" \\ back\nslash', id="str"),
    pytest.param("", id="empty-str"),
    pytest.param(42, id="int"),
    pytest.param(-7, id="negative-int"),
    pytest.param(2**100, id="big-int"),
    pytest.param(0.1, id="float"),
    pytest.param(1.0, id="integral-float"),
    pytest.param(-0.0, id="negative-zero"),
    pytest.param(5e-324, id="subnormal-float"),
    pytest.param(1.7976931348623157e308, id="max-float"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="none"),
    pytest.param({"items": list(range(2000)), "text": "t" * 3000}, id="large"),
]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_json_round_trip(make_store: StoreFactory, value: Any) -> None:
    writer = make_store()
    metadata = writer.put(Entry.of(KEY, {"value": value}, format="json"))
    assert metadata.variables["value"].format == "json"
    for store in (writer, make_store()):
        entry = store.get(KEY)
        assert entry is not None
        assert entry.metadata is not None
        assert entry.metadata.variables["value"].format == "json"
        assert_exactly_equal(entry.variables["value"], value)
        assert_exactly_equal(store.load_variable(KEY, "value"), value)


def test_json_object_file_holds_json_text(make_store: StoreFactory, store_path: Path) -> None:
    value = {"rows": [{"id": i, "name": f"row {i}"} for i in range(200)]}
    metadata = make_store().put(Entry.of(KEY, {"value": value}, format="json"))
    ref = metadata.variables["value"]
    assert not ref.inline
    assert not ref.buffers
    data = object_path(store_path, ref.id).read_bytes()
    assert json.loads(data.decode("utf-8")) == value


def test_auto_variables_format_json_makes_auto_mean_json(make_store: StoreFactory) -> None:
    store = make_store(auto_variables_format="json")
    metadata = store.put(Entry.of(KEY, {"a": {"x": [1, 2]}, "b": "text"}))
    assert {ref.format for ref in metadata.variables.values()} == {"json"}
    with pytest.raises(SerializationError, match="'as_set'"):
        store.put(Entry.of(ExecutionKey("json-block", "set"), {"as_set": {1, 2}}))
    # An explicit format still wins over the default.
    explicit = store.put(
        Entry.of(ExecutionKey("json-block", "pickled"), {"s": {1}}, format="pickle")
    )
    assert explicit.variables["s"].format == "pickle"

    # The reader's own default does not matter: the format is stored per value.
    reader = make_store(auto_variables_format="pickle")
    entry = reader.get(KEY)
    assert entry is not None
    assert dict(entry.variables) == {"a": {"x": [1, 2]}, "b": "text"}
    assert entry.metadata is not None
    assert {ref.format for ref in entry.metadata.variables.values()} == {"json"}


def test_default_auto_format_is_pickle(store: FsPersistentStore) -> None:
    metadata = store.put(Entry.of(KEY, {"a": {"x": [1, 2]}}))
    assert metadata.variables["a"].format == "pickle"


class Thing:
    pass


REFUSED = [
    pytest.param({1, 2}, id="set"),
    pytest.param((1, 2), id="tuple"),
    pytest.param(Thing(), id="object"),
    pytest.param({1: "a"}, id="int-keys"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="inf"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param({"a": [1, (2, 3)]}, id="nested-tuple"),
    pytest.param([{"x": [float("nan")]}], id="nested-nan"),
    pytest.param({"ok": {("t",): 1}}, id="nested-tuple-key"),
]


@pytest.mark.parametrize("value", REFUSED)
def test_json_refuses_what_would_not_round_trip(make_store: StoreFactory, value: Any) -> None:
    store = make_store()
    entry = Entry.of(KEY, {"fine": [1, 2], "bad_value": value}, format="json")
    with pytest.raises(SerializationError, match="'bad_value'"):
        store.put(entry)
    # Nothing of the entry was stored, not even its valid variable.
    assert store.entries() == []
    assert store.get(KEY) is None
    assert make_store().entries() == []


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("lone \ud800 surrogate", id="lone-surrogate"),
        pytest.param(10**5000, id="int-beyond-str-digits-limit"),
    ],
)
def test_json_values_the_encoder_cannot_write_are_refused_cleanly(
    store: FsPersistentStore, value: Any
) -> None:
    """A value `json` cannot encode either round-trips or is a SerializationError
    naming the variable; never another exception escaping from `put`."""
    try:
        store.put(Entry.of(KEY, {"edge": value}, format="json"))
    except SerializationError as error:
        assert "'edge'" in str(error)
        assert store.entries() == []
    else:
        entry = store.get(KEY)
        assert entry is not None
        assert entry.variables["edge"] == value


def test_json_entries_load_without_unpickling(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_store()
    small = {"inline": [1, 2.5, None, True]}
    large = {"file": ["x" * 100] * 50}
    writer.put(Entry.of(KEY, {"small": small, "large": large}, format="json"))
    pickled_key = ExecutionKey("json-block", "pickled")
    writer.put(Entry.of(pickled_key, {"p": [1, 2, 3]}, format="pickle"))

    refuse_unpickling(monkeypatch, "unpickling was attempted")

    for store in (writer, make_store()):
        entry = store.get(KEY)
        assert entry is not None
        assert dict(entry.variables) == {"small": small, "large": large}
        assert store.load_variable(KEY, "large") == large
        # Control: unpickling really is impossible now, so the JSON hit above
        # did not unpickle anything.
        with pytest.warns(StoreWarning, match="unpickling was attempted"):
            assert store.get(pickled_key) is None
