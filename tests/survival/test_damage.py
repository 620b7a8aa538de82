"""Damaged, missing, truncated and unknown files: a miss and a warning, never a crash.

Every test damages real files of a real store directory the way a crash, a
disk or a sync tool would, then reads through the public API only.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import struct
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from _layout import object_file, quarantine_dir
from conftest import StoreFactory

from marimo_store import (
    Entry,
    ExecutionKey,
    FsPersistentStore,
    NotFoundError,
    StoreFormatError,
    StoreWarning,
)
from tests._files import flip_byte

FRAME = struct.Struct("<IQ")  # u32 length | u64 xxh3-64 checksum, little endian

BIG_TEXT = "y" * 2000  # pickles to ~2 KB: stored as an object file, not inline


# -- helpers ---------------------------------------------------------------------------


def quarantined(root: Path, object_id: str) -> list[Path]:
    """Files in quarantine/ that hold the object `object_id`."""
    directory = quarantine_dir(root)
    if not directory.is_dir():
        return []
    return [path for path in directory.iterdir() if path.name.startswith(object_id)]


def truncate(path: Path, size: int) -> None:
    """Cut a file to `size` bytes, in place (same inode)."""
    assert size < path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size)


def segments(root: Path) -> list[Path]:
    """The log segment files, by name."""
    return sorted((root / "log").glob("*.log"))


def record_spans(path: Path) -> list[tuple[int, int]]:
    """`(start, end)` of every complete framed record of a segment (header first)."""
    data = path.read_bytes()
    spans: list[tuple[int, int]] = []
    position = 0
    while position + FRAME.size <= len(data):
        length, _checksum = FRAME.unpack_from(data, position)
        end = position + FRAME.size + length
        if end > len(data):
            break
        spans.append((position, end))
        position = end
    assert position == len(data), "the test expects a segment without a torn tail"
    return spans


def numbered_key(i: int) -> ExecutionKey:
    return ExecutionKey("damage-block", f"module-{i}")


def numbered_value(i: int) -> dict[str, object]:
    # Alternates inline values and object files.
    return {"i": i, "text": f"value {i} " + ("z" * 1000 if i % 2 else "")}


def assert_numbered_load(store: FsPersistentStore, numbers: Iterable[int]) -> None:
    """Each numbered entry is a hit with its own value: nothing was lost."""
    for i in numbers:
        entry = store.get(numbered_key(i))
        assert entry is not None, i
        assert dict(entry.variables) == numbered_value(i)


def put_numbered(store: FsPersistentStore, count: int, first: int = 1) -> None:
    for i in range(first, first + count):
        store.put(Entry.of(numbered_key(i), numbered_value(i)))


@contextmanager
def tolerating_store_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record warnings; a StoreWarning is allowed, anything else fails the test.

    Earlier tests' garbage is collected first: a store another test left
    unclosed warns (ResourceWarning) when it is collected, whenever that is."""
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    others = [w for w in caught if not issubclass(w.category, StoreWarning)]
    assert not others, [str(w.message) for w in others]


# -- damaged objects -------------------------------------------------------------------


@pytest.fixture
def make_store(make_quarantining_store: StoreFactory) -> StoreFactory:
    """Damaged objects go to quarantine at once here: nothing in these tests
    is a sync tool's copy still arriving (test_young_damaged_object_stays)."""
    return make_quarantining_store


READERS = ["writer", "verified", "fresh"]


def reader_before_damage(
    make_store: StoreFactory,
    writer: FsPersistentStore,
    reader: str,
    key: ExecutionKey,
    **options: object,
) -> FsPersistentStore:
    """The store that will read after the damage, prepared before it.

    `writer`: the instance that wrote the files (it trusts what it wrote);
    `verified`: another instance that loaded the entry once (it has hashed
    the files); `fresh`: an instance that has read nothing yet.
    """
    store = writer if reader == "writer" else make_store(**options)
    if reader != "fresh":
        assert store.get(key) is not None
    return store


@pytest.mark.parametrize("heal", ["late copy", "put"])
def test_young_damaged_object_stays_until_the_right_bytes_arrive(
    store_path: Path, heal: str
) -> None:
    """A damaged object younger than `object_grace_seconds` may be a sync
    tool's copy still arriving (a placeholder of zeros, a prefix): it stays
    in place (moving it away would make the tool delete it everywhere). The
    complete copy, or a put of the same bytes, makes the entry load."""
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    key = ExecutionKey("block", "big-text")
    ref = store.put(Entry.of(key, {"x": BIG_TEXT})).variables["x"]
    path = object_file(store_path, ref)
    good = path.read_bytes()
    path.write_bytes(bytes(len(good)))  # a placeholder of the right size
    with pytest.warns(StoreWarning, match="left in place"):
        assert store.get(key) is None
    assert path.read_bytes() == bytes(len(good))
    assert not quarantine_dir(store_path).exists()
    if heal == "late copy":
        path.write_bytes(good)
    else:
        store.put(Entry.of(ExecutionKey("other", "m"), {"x": BIG_TEXT}))  # same bytes
        assert path.read_bytes() == good
    for reader in (store, FsPersistentStore(store_path, cleanup_on_exit=False)):
        entry = reader.get(key)
        assert entry is not None and entry.variables["x"] == BIG_TEXT


@pytest.mark.parametrize("reader", READERS)
def test_flipped_byte_in_object_is_a_quarantined_miss(
    make_store: StoreFactory, store_path: Path, reader: str
) -> None:
    writer = make_store()
    key = ExecutionKey("block", "big-text")
    metadata = writer.put(Entry.of(key, {"x": BIG_TEXT}))
    ref = metadata.variables["x"]
    assert not ref.inline
    path = object_file(store_path, ref)
    assert path.stat().st_size == ref.size

    store = reader_before_damage(make_store, writer, reader, key)
    flip_byte(path, ref.size // 2)

    with pytest.warns(StoreWarning):
        assert store.get(key) is None
    assert not path.exists()
    assert len(quarantined(store_path, ref.id)) == 1
    # Still a miss (the file is gone now), and never an exception.
    assert store.get(key) is None
    with pytest.raises(NotFoundError):
        store.load_variable(key, "x")

    # Putting the value again heals the store.
    store.put(Entry.of(key, {"x": BIG_TEXT}))
    assert path.exists()
    healed = make_store().get(key)
    assert healed is not None
    assert healed.variables["x"] == BIG_TEXT


@pytest.mark.parametrize("memory_map", [True, False])
@pytest.mark.parametrize("reader", READERS)
def test_flipped_byte_in_numpy_buffer_is_a_quarantined_miss(
    make_store: StoreFactory, store_path: Path, reader: str, memory_map: bool
) -> None:
    array = np.arange(1 << 17, dtype=np.int64)  # 1 MiB: an out-of-band buffer object
    assert array.nbytes == 1 << 20
    writer = make_store(memory_map=memory_map)
    key = ExecutionKey("block", "array")
    metadata = writer.put(Entry.of(key, {"a": array}))
    ref = metadata.variables["a"]
    assert len(ref.buffers) == 1
    buffer = ref.buffers[0]
    assert buffer.size == array.nbytes
    path = object_file(store_path, buffer)
    assert path.stat().st_size == buffer.size

    loaded = writer.get(key)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.variables["a"], array)
    assert loaded.variables["a"].flags.writeable  # a private copy, or copy-on-write pages
    del loaded  # release the memory map before damaging the file

    store = reader_before_damage(make_store, writer, reader, key, memory_map=memory_map)
    flip_byte(path, 654_321)
    with pytest.warns(StoreWarning):
        assert store.get(key) is None
    assert not path.exists()
    assert len(quarantined(store_path, buffer.id)) == 1
    assert make_store(memory_map=memory_map).get(key) is None


@pytest.mark.parametrize("reader", READERS)
def test_truncated_object_is_a_quarantined_miss(
    make_store: StoreFactory, store_path: Path, reader: str
) -> None:
    writer = make_store()
    key = ExecutionKey("block", "big-text")
    ref = writer.put(Entry.of(key, {"x": BIG_TEXT})).variables["x"]
    path = object_file(store_path, ref)
    store = reader_before_damage(make_store, writer, reader, key)
    truncate(path, ref.size // 2)

    with pytest.warns(StoreWarning):
        assert store.get(key) is None
    assert not path.exists()
    assert len(quarantined(store_path, ref.id)) == 1


def test_object_grown_by_appending_is_a_quarantined_miss(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    key = ExecutionKey("block", "big-text")
    ref = writer.put(Entry.of(key, {"x": BIG_TEXT})).variables["x"]
    path = object_file(store_path, ref)
    with open(path, "ab") as file:
        file.write(b"trailing garbage")

    with pytest.warns(StoreWarning):
        assert make_store().get(key) is None
    assert len(quarantined(store_path, ref.id)) == 1


@pytest.mark.parametrize("reader", READERS)
def test_deleted_object_is_a_plain_miss(
    make_store: StoreFactory, store_path: Path, reader: str
) -> None:
    writer = make_store()
    key = ExecutionKey("block", "big-text")
    other = ExecutionKey("block", "other")
    ref = writer.put(Entry.of(key, {"x": BIG_TEXT, "small": 1})).variables["x"]
    writer.put(Entry.of(other, {"x": "other " + BIG_TEXT}))
    store = reader_before_damage(make_store, writer, reader, key)
    object_file(store_path, ref).unlink()

    assert store.get(key) is None
    assert store.get(key.at(2**40)) is None
    with pytest.raises(NotFoundError):
        store.load_variable(key, "x")
    # Other entries are unaffected.
    loaded = store.get(other)
    assert loaded is not None
    assert loaded.variables["x"] == "other " + BIG_TEXT


def test_older_run_is_used_when_newest_run_is_damaged(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store()
    old = store.put(Entry.of(ExecutionKey("block", "m", 1_000), {"x": "old " + BIG_TEXT}))
    new = store.put(Entry.of(ExecutionKey("block", "m", 2_000), {"x": "new " + BIG_TEXT}))
    flip_byte(object_file(store_path, new.variables["x"]), 10)

    fresh = make_store()
    with pytest.warns(StoreWarning):
        loaded = fresh.get(ExecutionKey("block", "m"))
    assert loaded is not None
    assert loaded.key == old.key
    assert loaded.variables["x"] == "old " + BIG_TEXT
    assert fresh.get(new.key, exact_match_created_at=True) is None


@pytest.mark.parametrize("removed", ["tmp", "store"])
def test_put_works_after_local_directories_are_removed_while_open(
    make_store: StoreFactory, store_path: Path, removed: str
) -> None:
    """tmp/ is listed in the generated .gitignore, so `git clean -X` (or any
    tidy-up) may delete it while a process has the store open; a user may
    also delete the whole cache directory. The next put must still work."""
    writer = make_store()
    put_numbered(writer, 2)
    shutil.rmtree(store_path / "tmp" if removed == "tmp" else store_path)

    put_numbered(writer, 2, first=3)  # value 3 is an object file, value 4 inline

    reader = make_store()
    assert_numbered_load(reader, (3, 4))


# -- damaged log segments --------------------------------------------------------------


def test_torn_tail_of_segment_keeps_earlier_entries(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    put_numbered(writer, 20)
    writer.close()  # writes a close record: the cut below drops it, like a crash would
    (segment,) = segments(store_path)
    spans = record_spans(segment)
    start, end = spans[20]  # spans[0] is the header, spans[20] the 20th entry
    truncate(segment, start + FRAME.size + (end - start - FRAME.size) // 2)

    with tolerating_store_warnings():
        reader = make_store()
        listed = reader.entries()
        assert [m.key.module_hash for m in listed] == [f"module-{i}" for i in range(1, 20)]
        assert_numbered_load(reader, range(1, 20))
        assert reader.get(numbered_key(20)) is None

        # A fresh store can still write, and another fresh store sees all of it.
        appender = make_store()
        put_numbered(appender, 5, first=21)
        appender.close()
        final = make_store()
        keys = {m.key.module_hash for m in final.entries()}
        assert keys == {f"module-{i}" for i in range(1, 26)} - {"module-20"}
        assert_numbered_load(final, [*range(1, 20), *range(21, 26)])


def test_writer_starts_a_new_segment_when_its_segment_was_truncated(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    put_numbered(writer, 20)
    (segment,) = segments(store_path)
    assert segment.name.endswith(".0.log")
    writer_id = segment.name[: -len(".0.log")]
    spans = record_spans(segment)
    assert len(spans) == 21  # header + 20 entries, no close record: still open
    start, end = spans[20]
    truncate(segment, start + FRAME.size + (end - start - FRAME.size) // 2)

    put_numbered(writer, 1, first=21)  # the same instance, still open

    # (Readers append access records to segments of their own.)
    names = {path.name for path in segments(store_path) if path.name.startswith(writer_id)}
    assert names == {f"{writer_id}.0.log", f"{writer_id}.1.log"}
    # The torn segment was not appended to.
    assert segment.stat().st_size < end
    with tolerating_store_warnings():
        reader = make_store()
        entry = reader.get(numbered_key(21))
        assert entry is not None
        assert dict(entry.variables) == numbered_value(21)
        assert_numbered_load(reader, range(1, 20))
        assert reader.get(numbered_key(20)) is None
    # And the writer keeps appending to its new segment.
    put_numbered(writer, 1, first=22)
    assert {path.name for path in segments(store_path) if path.name.startswith(writer_id)} == names
    entry = make_store().get(numbered_key(22))
    assert entry is not None
    assert dict(entry.variables) == numbered_value(22)


def test_flipped_byte_inside_a_record_keeps_the_records_before_it(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    put_numbered(writer, 20)
    writer.close()
    (segment,) = segments(store_path)
    spans = record_spans(segment)
    start, end = spans[10]  # the 10th entry
    flip_byte(segment, start + FRAME.size + (end - start - FRAME.size) // 2)

    reader = make_store()
    with pytest.warns(StoreWarning):
        listed = reader.entries()
    assert [m.key.module_hash for m in listed] == [f"module-{i}" for i in range(1, 10)]
    with tolerating_store_warnings():
        assert_numbered_load(reader, range(1, 10))
        for i in range(10, 21):
            assert reader.get(numbered_key(i)) is None

        # New entries still work and reach other stores.
        appender = make_store()
        put_numbered(appender, 1, first=21)
        entry = make_store().get(numbered_key(21))
        assert entry is not None
        assert dict(entry.variables) == numbered_value(21)


def test_flipped_byte_in_a_record_length_never_raises(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    put_numbered(writer, 20)
    writer.close()
    (segment,) = segments(store_path)
    start, _end = record_spans(segment)[10]
    flip_byte(segment, start + 3)  # the length's top byte: a huge length

    with tolerating_store_warnings():
        reader = make_store()
        assert len(reader.entries()) == 9
        for i in range(1, 21):
            entry = reader.get(numbered_key(i))
            assert (entry is not None) == (i < 10), i


def test_damaged_segment_header_never_raises(make_store: StoreFactory, store_path: Path) -> None:
    writer = make_store()
    put_numbered(writer, 3)
    writer.close()
    (segment,) = segments(store_path)
    start, end = record_spans(segment)[0]
    flip_byte(segment, start + FRAME.size + (end - start - FRAME.size) // 2)

    with tolerating_store_warnings():
        reader = make_store()
        assert reader.entries() == []
        assert reader.get(numbered_key(1)) is None
        put_numbered(reader, 1, first=4)
        entry = make_store().get(numbered_key(4))
        assert entry is not None
        assert dict(entry.variables) == numbered_value(4)


# -- unknown files ---------------------------------------------------------------------


def test_unknown_files_are_ignored(make_store: StoreFactory, store_path: Path) -> None:
    writer = make_store()
    put_numbered(writer, 10)
    writer.close()

    log = store_path / "log"
    (log / "junk.log").write_bytes(b"this is not a log segment\n" * 10)
    (log / "empty.log").write_bytes(b"")
    (log / "short.log").write_bytes(b"\x01\x02\x03")
    (log / "notes.txt").write_text("notes about the store\n")
    (log / "directory.log").mkdir()
    (store_path / "objects" / "zz").mkdir()
    (store_path / "objects" / "zz" / "garbage").write_bytes(os.urandom(100))
    (store_path / "objects" / "readme").write_text("not an object\n")
    (store_path / "tmp" / "leftover-0.tmp").write_bytes(b"half a write")
    (store_path / "unknown-top-level-file").write_text("?")

    with tolerating_store_warnings():
        reader = make_store()
        assert len(reader.entries()) == 10
        assert_numbered_load(reader, range(1, 11))
        put_numbered(reader, 1, first=11)
        entry = make_store().get(numbered_key(11))
        assert entry is not None
        assert dict(entry.variables) == numbered_value(11)


# -- format.json -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        {"format": "marimo_store", "version": 99},
        {"format": "other", "version": 1},
    ],
)
def test_foreign_or_newer_format_refuses_to_open(
    store_path: Path, document: dict[str, object]
) -> None:
    store_path.mkdir()
    (store_path / "format.json").write_text(json.dumps(document))
    with pytest.raises(StoreFormatError):
        FsPersistentStore(store_path)


def test_newer_format_refuses_to_open_a_populated_store(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    put_numbered(writer, 2)
    writer.close()
    (store_path / "format.json").write_text(json.dumps({"format": "marimo_store", "version": 2}))
    with pytest.raises(StoreFormatError):
        FsPersistentStore(store_path)


@pytest.mark.parametrize(
    "content",
    [b"\x00\xff garbage \x13\x37", b"", b"[1, 2, 3]", b'{"format": "marimo_store"}'],
    ids=["binary", "empty", "not-a-map", "no-version"],
)
def test_damaged_format_file_warns_and_is_rewritten(
    make_store: StoreFactory, store_path: Path, content: bytes
) -> None:
    store_path.mkdir()
    format_file = store_path / "format.json"
    format_file.write_bytes(content)
    with pytest.warns(StoreWarning):
        store = make_store()
    with tolerating_store_warnings():
        store.put(Entry.of(numbered_key(1), numbered_value(1)))
    assert json.loads(format_file.read_bytes()) == {"format": "marimo_store", "version": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entry = make_store().get(numbered_key(1))
    assert entry is not None
    assert dict(entry.variables) == numbered_value(1)


def test_format_file_is_written_on_first_put(make_store: StoreFactory, store_path: Path) -> None:
    store = make_store()
    assert not store_path.exists()  # nothing is created before the first put
    store.put(Entry.of(numbered_key(1), numbered_value(1)))
    assert json.loads((store_path / "format.json").read_bytes()) == {
        "format": "marimo_store",
        "version": 1,
    }


# -- files for version control ---------------------------------------------------------


def test_gitignore_and_gitattributes_after_first_put(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store()
    store.put(Entry.of(numbered_key(1), numbered_value(1)))
    ignored = (store_path / ".gitignore").read_text().splitlines()
    for pattern in ("locks/", "tmp/", "quarantine/"):
        assert pattern in ignored
    # The shared parts must not be ignored.
    for pattern in ("objects/", "log/", "format.json"):
        assert pattern not in ignored
    attributes = (store_path / ".gitattributes").read_text().splitlines()
    assert "* binary" in attributes


def test_existing_gitignore_is_left_alone(make_store: StoreFactory, store_path: Path) -> None:
    store_path.mkdir()
    (store_path / ".gitignore").write_text("custom\n")
    store = make_store()
    store.put(Entry.of(numbered_key(1), numbered_value(1)))
    assert (store_path / ".gitignore").read_text() == "custom\n"
    assert "* binary" in (store_path / ".gitattributes").read_text().splitlines()


def test_snapshot_cut_short_in_place_while_mapped_is_a_miss_not_a_crash(
    store_path: Path,
) -> None:
    # In a child process: before the guard, this died of SIGBUS (the
    # snapshot is memory-mapped; rsync --inplace or a person may truncate it).
    code = f"""
import os, warnings
from marimo_store import Entry, ExecutionKey, FsPersistentStore, StoreWarning
warnings.simplefilter("ignore", StoreWarning)
root = {str(store_path)!r}
writer = FsPersistentStore(root, cleanup_on_exit=False)
for i in range(200):
    writer.put(Entry.of(ExecutionKey(f"cut{{i}}", "m"), {{"i": i}}))
writer.close()
writer.cleanup()
reader = FsPersistentStore(root, refresh_interval=0, cleanup_on_exit=False)
assert reader.get(ExecutionKey("cut0", "m")) is not None  # the snapshot is mapped now
(name,) = os.listdir(os.path.join(root, "snapshots"))
os.truncate(os.path.join(root, "snapshots", name), 4096)
hits = [reader.get(ExecutionKey(f"cut{{i}}", "m")) for i in range(1, 200)]
assert all(hit is None or hit.variables["i"] == i for i, hit in enumerate(hits, 1))
print("alive", sum(hit is not None for hit in hits))
"""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.startswith("alive")


# -- damage to a writer's own live segment ----------------------------------------------


@pytest.mark.parametrize("offset", [0, 20, -3], ids=["header", "first record", "last record"])
@pytest.mark.parametrize("repair", [False, True], ids=["next put", "repair"])
def test_a_writer_moves_on_from_damage_to_its_own_segment(
    make_store: StoreFactory, store_path: Path, offset: int, repair: bool
) -> None:
    """Records after damage are invisible to every reader, so a writer that
    finds its live segment changed (at its next put, or because a repair
    moved it to quarantine) starts a new one: no later put is lost."""
    writer = make_store()
    writer.put(Entry.of(ExecutionKey("b", "before"), {"x": 1}))
    (segment,) = (store_path / "log").iterdir()
    with tolerating_store_warnings():
        flip_byte(segment, offset % segment.stat().st_size)
        if repair:
            assert any(p.kind == "damaged segment" for p in writer.verify(repair=True).problems)
        for i in range(3):
            writer.put(Entry.of(ExecutionKey("b", f"after{i}"), {"x": i}))
        fresh = make_store()
        for i in range(3):
            entry = fresh.get(ExecutionKey("b", f"after{i}"))
            assert entry is not None and entry.variables["x"] == i
        writer.verify(repair=True)
        assert make_store().verify().problems == []
        assert all(make_store().get(ExecutionKey("b", f"after{i}")) for i in range(3))
