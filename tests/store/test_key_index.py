"""Key indexes of sealed segments (docs/format.md §16): a cold lookup decodes
only what it hits, whatever the log holds, and never answers differently
from a reader that decodes everything.

The bound is counted, not timed: `_format.records.decoded` counts every
entry record a process decodes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from _files import flip_byte
from _scripts import run_python
from conftest import StoreFactory

from marimo_store import Entry, ExecutionKey, FsPersistentStore, StoreWarning
from marimo_store._format import keyindex
from marimo_store._format.segments import CLOSE_FRAME
from marimo_store._log import LogReader

PER_SEGMENT = 50
"""Records per segment in these tests (the writer's `SEGMENT_RECORDS`)."""


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyindex, "SEGMENT_RECORDS", PER_SEGMENT)
    monkeypatch.setattr(keyindex, "CLOSE_INDEX_RECORDS", 5)


def key(writer: str, i: int) -> ExecutionKey:
    return ExecutionKey(f"block-{writer}", f"module-{i}")


def value(writer: str, i: int) -> dict[str, object]:
    return {"writer": writer, "i": i}


def index_of(segment: Path) -> keyindex.KeyIndex | None:
    data = segment.read_bytes()
    return keyindex.read_key_index(lambda at, count: data[at : at + count], len(data), 0)


def one_sealed_segment(make_store: StoreFactory, store_path: Path) -> Path:
    """A store of one full segment, sealed with its index: the segment."""
    store = make_store()
    put(store, "a", range(PER_SEGMENT))
    store.close()
    (segment,) = (store_path / "log").glob("*.log")
    return segment


def put(store: FsPersistentStore, writer: str, numbers: range) -> None:
    for i in numbers:
        store.put(Entry.of(key(writer, i), value(writer, i)))


COLD_LOOKUPS = """
    import json, sys
    from marimo_store import ExecutionKey, FsPersistentStore
    from marimo_store._format.records import decoded
    store = FsPersistentStore(sys.argv[1], cleanup_on_exit=False)
    results = []
    for block_id, module_hash in json.loads(sys.argv[2]):
        before = decoded.entries
        entry = store.get(ExecutionKey(block_id, module_hash))
        found = None if entry is None else dict(entry.variables)
        results.append([decoded.entries - before, found])
    listed = len(store.entries())
    print(json.dumps({"results": results, "listed": listed}))
"""


def test_cold_lookup_decodes_a_bounded_number_of_records(
    make_store: StoreFactory, store_path: Path
) -> None:
    # Writer A: 300 entries compacted into a snapshot, then 320 more in the
    # log (6 sealed, indexed segments and a tail it seals on close), one
    # of them deleted.
    a = make_store(cleanup_on_exit=False)
    put(a, "a", range(300))
    a.cleanup()
    put(a, "a", range(300, 620))
    assert a.delete_entries([key("a", 400)]) == 1
    a.close()
    # Writer B, still running: 2 sealed segments and an unsealed tail of 20.
    b = make_store(cleanup_on_exit=False)
    put(b, "b", range(120))
    assert len(list((store_path / "snapshots").glob("*.snap"))) == 1

    asked = [
        ("block-a", "module-17"),  # in the snapshot
        ("block-a", "module-455"),  # in a sealed segment of A
        ("block-a", "module-400"),  # deleted: its tombstone is in A's last segment
        ("block-b", "module-30"),  # in a sealed segment of B
        ("block-b", "module-115"),  # in B's unsealed tail
        ("block-c", "module-1"),  # nowhere
    ]
    report = json.loads(run_python(COLD_LOOKUPS, str(store_path), json.dumps(asked)).stdout)
    (first, found), *later = report["results"]
    # The first lookup decodes B's unsealed tail (at most a segment) and the
    # hit; without the indexes it would decode all 440 entries in the log.
    assert first <= PER_SEGMENT + 1, first
    assert found == value("a", 17)
    assert [count for count, _ in later] == [1, 1, 1, 0, 0]
    assert [found for _, found in later] == [
        value("a", 455),
        None,
        value("b", 30),
        value("b", 115),
        None,
    ]
    assert report["listed"] == 620 - 1 + 120


def test_sealed_segments_carry_an_index_other_readers_skip(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store()
    put(store, "a", range(2 * PER_SEGMENT + 7))
    store.close()
    segments = sorted((store_path / "log").glob("*.log"))
    assert len(segments) == 3
    for segment in segments:
        index = index_of(segment)
        assert index is not None
        assert index.entries == (PER_SEGMENT if segment != segments[-1] else 7)
    # A reader that decodes everything (cleanup's) sees only the records:
    # the index is records of types it ignores, and no malformed ones.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = list(LogReader(str(store_path / "log")).read_new())
    assert len(records) == 2 * PER_SEGMENT + 7


def test_damaged_index_block_falls_back_to_decoding(
    make_store: StoreFactory, store_path: Path
) -> None:
    segment = one_sealed_segment(make_store, store_path)
    index = index_of(segment)
    assert index is not None
    flip_byte(segment, index.end + 40)  # inside the first (only) index block

    reader = make_store()
    with pytest.warns(StoreWarning, match="key index fails its checksum"):
        entry = reader.get(key("a", 7))
    assert entry is not None
    assert dict(entry.variables) == value("a", 7)
    assert all(reader.get(key("a", i)) is not None for i in range(PER_SEGMENT))


def test_damaged_record_ends_an_indexed_segment_for_later_lookups(
    make_store: StoreFactory, store_path: Path
) -> None:
    segment = one_sealed_segment(make_store, store_path)
    data = segment.read_bytes()
    spans = []
    position = 0
    while len(spans) < 12:
        length = int.from_bytes(data[position : position + 4], "little")
        spans.append(position)
        position += 12 + length
    flip_byte(segment, spans[11] + 20)  # record 11: the entry numbered 10

    reader = make_store()
    assert reader.get(key("a", 9)) is not None
    with pytest.warns(StoreWarning, match="later records are ignored"):
        assert reader.get(key("a", 10)) is None
    # As a reader that decodes the segment: what follows the damage is gone.
    assert reader.get(key("a", 20)) is None
    assert reader.get(key("a", 3)) is not None


def test_a_writer_and_a_reader_following_it_keep_at_most_a_segment_decoded(
    make_store: StoreFactory,
) -> None:
    writer = make_store(refresh_interval=0)
    reader = make_store(refresh_interval=0)
    total = 4 * PER_SEGMENT + 10
    for first in range(0, total, 30):
        put(writer, "a", range(first, min(first + 30, total)))
        assert reader.get(key("a", first)) is not None  # follows the writer
        for store in (writer, reader):
            assert store._live.index.kept_decoded() <= PER_SEGMENT + 30
    assert writer.get(key("x", 0)) is None  # a miss: both read the last seal
    assert reader.get(key("x", 0)) is None
    for store in (writer, reader):
        assert store._live.index.kept_decoded() <= PER_SEGMENT
        found = [store.get(key("a", i)) for i in range(total)]
        assert [None if e is None else dict(e.variables) for e in found] == [
            value("a", i) for i in range(total)
        ]
        assert len(store.entries()) == total


def test_a_small_segment_closed_keeps_the_old_layout(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store()
    put(store, "a", range(4))  # fewer than CLOSE_INDEX_RECORDS
    store.close()
    (segment,) = (store_path / "log").glob("*.log")
    assert index_of(segment) is None
    assert segment.read_bytes().endswith(CLOSE_FRAME)
    assert make_store().get(key("a", 3)) is not None
