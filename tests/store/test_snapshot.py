"""Snapshots and cleanup on real store directories: what a cleanup keeps, drops,
writes and deletes; how copies of a store that diverged converge; conflicted
and damaged snapshot files; and when cleanup runs by itself.

Everything goes through the public API and real files; where processes
matter (exit hooks, dead writers) they are real subprocesses.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import time
import warnings
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
from _layout import log_dir, object_path, snapshot_path, snapshots_dir
from _scripts import run_python
from conftest import StoreFactory

from marimo_store import (
    CleanupReport,
    CleanupStrategy,
    DefaultCleanupStrategy,
    Entry,
    EntryMetadata,
    ExecutionKey,
    FsPersistentStore,
    StoreWarning,
)
from tests._files import flip_byte

FRAME = struct.Struct("<IQ")  # u32 length | u64 xxh3-64 checksum, little endian
FOOTER = struct.Struct("<QQ8s")  # tombstones frame offset, table frame offset, magic
COUNTED = DefaultCleanupStrategy(max_entries_per_block=3, max_entries_per_module=2)
"""Count limits these tests drop by (the default strategy has none: only a size limit)."""


@pytest.fixture
def make_store(make_store: StoreFactory) -> StoreFactory:
    """conftest's `make_store`, with the `COUNTED` strategy unless told otherwise."""

    def make(path: Path | None = None, **options: Any) -> FsPersistentStore:
        options.setdefault("cleanup_strategy", COUNTED)
        return make_store(path, **options)

    return make


# -- helpers ---------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def value(name: str) -> dict[str, Any]:
    """Variables for the entry `name`: one inline value and one object file."""
    return {"name": name, "big": f"{name}:" + "x" * 1500}


def put(store: FsPersistentStore, block: str, module: str, created_at: int) -> ExecutionKey:
    """Put the entry `module` (values from `value(module)`) and return its key."""
    metadata = store.put(Entry.of(ExecutionKey(block, module, created_at), value(module)))
    assert metadata.key.created_at == created_at
    return metadata.key


def snapshot_files(root: Path) -> list[Path]:
    directory = snapshots_dir(root)
    return sorted(directory.glob("*.snap")) if directory.is_dir() else []


def segment_files(root: Path) -> list[Path]:
    directory = log_dir(root)
    return sorted(directory.glob("*.log")) if directory.is_dir() else []


def tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and directory under `root`: relative path -> (sha256, size, mtime_ns)."""
    found: dict[str, tuple[str, int, int]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(directory, name)
            found[str(path.relative_to(root)) + "/"] = ("dir", 0, 0)
        for name in files:
            path = Path(directory, name)
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, stat.st_size, stat.st_mtime_ns)
    return found


def keys_of(store: FsPersistentStore) -> set[ExecutionKey]:
    listed = [metadata.key for metadata in store.entries()]
    assert len(listed) == len(set(listed)), f"duplicate entries: {listed}"
    return set(listed)


def assert_loads(store: FsPersistentStore, keys: Collection[ExecutionKey]) -> None:
    """Every key is a hit with the values it was put with."""
    for key in keys:
        entry = store.get(key, exact_match_created_at=True)
        assert entry is not None, f"{key} is a miss"
        assert dict(entry.variables) == value(key.module_hash)


def assert_misses(store: FsPersistentStore, keys: Collection[ExecutionKey]) -> None:
    for key in keys:
        assert store.get(key, exact_match_created_at=True) is None, f"{key} is a hit"
        assert store.get(ExecutionKey(key.block_id, key.module_hash)) is None


def drop_only(*keys: ExecutionKey) -> CleanupStrategy:
    """A cleanup strategy that drops exactly `keys` (when they are live)."""

    def strategy(entries: Collection[EntryMetadata], now: int) -> Mapping[ExecutionKey, str]:
        return {entry.key: "dropped by the test" for entry in entries if entry.key in keys}

    return strategy


def drop_nothing(entries: Collection[EntryMetadata], now: int) -> Mapping[ExecutionKey, str]:
    return {}


def snapshot_entry_frames(path: Path) -> list[tuple[int, int, ExecutionKey]]:
    """`(frame offset, frame end, key)` of every entry record of a snapshot, in file order."""
    data = path.read_bytes()
    tombstones_at, _table_at, magic = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    assert magic == b"msnap01\n"
    header_length = FRAME.unpack_from(data, 0)[0]
    position = FRAME.size + header_length
    frames = []
    while position < tombstones_at:
        length = FRAME.unpack_from(data, position)[0]
        end = position + FRAME.size + length
        record = msgpack.unpackb(data[position + FRAME.size : end], raw=False)
        assert record["t"] == "entry"
        frames.append((position, end, ExecutionKey(*record["k"])))
        position = end
    assert position == tombstones_at
    return frames


@contextmanager
def store_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record StoreWarnings; any other warning fails the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    others = [w for w in caught if not issubclass(w.category, StoreWarning)]
    assert not others, [str(w.message) for w in others]


def sync(source: Path, destination: Path) -> list[str]:
    """What a sync tool does: copy `source`'s shared files that `destination`
    lacks. Files present in both must be identical (content-addressed, or
    the same copy of one file). Returns the copied paths."""
    copied = []
    for sub in ("snapshots", "log", "objects"):
        for directory, _dirs, files in os.walk(source / sub):
            for name in files:
                path = Path(directory, name)
                target = destination / path.relative_to(source)
                if target.exists():
                    assert target.read_bytes() == path.read_bytes(), target
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                copied.append(str(path.relative_to(source)))
    return copied


def populate(store: FsPersistentStore, base: int) -> tuple[list[ExecutionKey], list[ExecutionKey]]:
    """Five runs in block "b" (one per computation) and one in "c" and "d".

    Returns (kept, dropped) under the default strategy: the oldest two of "b" go.
    """
    in_b = [put(store, "b", f"b{i}", base + i) for i in range(5)]
    others = [put(store, "c", "c0", base + 10), put(store, "d", "d0", base + 11)]
    return [*in_b[2:], *others], in_b[:2]


# -- what a cleanup keeps --------------------------------------------------------------


def test_fresh_store_sees_exactly_the_kept_entries(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    kept, dropped = populate(writer, now_ms() - 60_000)
    report = writer.cleanup()
    assert {d.key for d in report.dropped} == set(dropped)

    fresh = make_store()
    assert keys_of(fresh) == set(kept)
    assert_loads(fresh, kept)
    assert_misses(fresh, dropped)
    # The instance that cleaned up agrees.
    assert keys_of(writer) == set(kept)
    assert_loads(writer, kept)
    assert_misses(writer, dropped)


def test_dry_run_reports_the_real_cleanup_and_changes_nothing(
    make_store: StoreFactory, store_path: Path
) -> None:
    base = now_ms() - 60_000
    first = make_store()
    populate(first, base)
    first.close()
    assert len(make_store().cleanup().dropped) == 2  # a snapshot, a deleted segment
    second = make_store()  # stays open: its segment is not sealed
    new_in_b = [put(second, "b", f"b{i}", base + 100 + i) for i in range(5, 7)]
    put(second, "e", "e0", base + 200)

    cleaner = make_store()
    before = tree(store_path)
    preview = cleaner.cleanup(dry_run=True)
    again = make_store().cleanup(dry_run=True)
    assert tree(store_path) == before

    assert preview.dry_run
    assert preview.snapshot is None
    assert preview.snapshots_deleted == preview.segments_deleted == 0
    assert preview.temp_files_deleted == preview.objects_deleted == preview.bytes_freed == 0
    assert preview.skipped == []
    # b2..b4 are now older than the newest 3 of "b" (b4, b5, b6): b2 and b3 go.
    assert {d.key.module_hash for d in preview.dropped} == {"b2", "b3"}
    assert preview.entries_kept == 6  # b4, b5, b6, c0, d0, e0
    assert keys_of(make_store()) >= set(new_in_b)

    real = cleaner.cleanup()
    assert not real.dry_run
    assert real.snapshot is not None

    def summary(report: CleanupReport) -> list[tuple[ExecutionKey, str, int]]:
        return sorted(
            ((d.key, d.reason, d.content_size) for d in report.dropped),
            key=lambda item: (item[0].block_id, item[0].module_hash),
        )

    assert summary(preview) == summary(real) == summary(again)
    assert preview.entries_kept == real.entries_kept == again.entries_kept
    assert tree(store_path) != before
    assert_misses(make_store(), [d.key for d in real.dropped])


def test_report_lists_dropped_entries_and_the_new_snapshot(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store()
    base = now_ms() - 60_000
    kept, dropped = populate(store, base)
    sizes = {metadata.key: metadata.content_size for metadata in store.entries()}

    report = store.cleanup()
    assert not report.dry_run
    assert report.skipped == []
    assert report.entries_kept == len(kept) == 5
    assert sorted((d.key for d in report.dropped), key=str) == sorted(dropped, key=str)
    for item in report.dropped:
        assert isinstance(item.reason, str)
        assert item.reason.strip()
        assert "block" in item.reason
        assert item.content_size == sizes[item.key] > 0
    assert isinstance(report.snapshot, str)
    assert report.snapshot
    assert snapshot_files(store_path) == [snapshot_path(store_path, report.snapshot)]
    assert report.snapshots_deleted == 0
    assert "CleanupReport(" in repr(report)

    # A second cleanup replaces the first snapshot.
    second = make_store().cleanup()
    assert second.dropped == []
    assert second.entries_kept == 5
    assert second.snapshot is not None
    assert second.snapshot != report.snapshot
    assert second.snapshots_deleted == 1
    assert snapshot_files(store_path) == [snapshot_path(store_path, second.snapshot)]
    fresh = make_store()
    assert keys_of(fresh) == set(kept)
    assert_loads(fresh, kept)


def test_custom_strategy_and_reasons(make_store: StoreFactory) -> None:
    store = make_store()
    base = now_ms() - 60_000
    a = put(store, "x", "a", base)
    b = put(store, "y", "b", base + 1)
    report = store.cleanup(drop_only(b))
    assert [(d.key, d.reason) for d in report.dropped] == [(b, "dropped by the test")]
    assert report.entries_kept == 1
    assert keys_of(make_store()) == {a}
    # The store's own strategy is used when none is given.
    strict = make_store(cleanup_strategy=drop_only(a))
    assert [d.key for d in strict.cleanup().dropped] == [a]
    assert keys_of(make_store()) == set()


def test_entries_whose_objects_are_gone_stay_until_they_arrive(
    make_store: StoreFactory, store_path: Path
) -> None:
    """Late is not lost: a cleanup keeps an entry whose objects are gone (a
    miss), and it loads once they are back (docs/format.md §10.9)."""
    store = make_store()
    base = now_ms() - 60_000
    intact = put(store, "x", "intact", base)
    broken_key = ExecutionKey("y", "broken", base + 1)
    metadata = store.put(Entry.of(broken_key, value("broken")))
    ref = metadata.variables["big"]
    assert not ref.inline
    object_path(store_path, ref.id).unlink()

    report = make_store().cleanup(drop_nothing, include_content=True)
    assert report.dropped == []
    assert report.entries_kept == 2
    fresh = make_store()
    assert keys_of(fresh) == {intact, broken_key}
    assert fresh.get(broken_key) is None
    assert_loads(fresh, [intact])
    # The object arrives again (here: another entry with the same value).
    store.put(Entry.of(ExecutionKey("z", "again", base + 2), value("broken")))
    assert_loads(make_store(), [intact, broken_key])


def test_include_content_deletes_objects_of_dropped_entries(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store(object_grace_seconds=0)
    base = now_ms() - 60_000
    kept, dropped = populate(store, base)
    dropped_objects = {
        ref.id
        for metadata in store.entries()
        if metadata.key in dropped
        for ref in metadata.objects().values()
        if not ref.inline
    }
    assert dropped_objects
    without = store.cleanup(drop_nothing, include_content=False)  # no object GC
    assert without.objects_deleted == without.bytes_freed == 0

    report = make_store(object_grace_seconds=0).cleanup(include_content=True)
    assert {d.key for d in report.dropped} == set(dropped)
    assert report.objects_deleted == len(dropped_objects)
    assert report.bytes_freed > 0
    for object_id in dropped_objects:
        assert not object_path(store_path, object_id).exists()
    fresh = make_store()
    assert_loads(fresh, kept)


# -- log segments ----------------------------------------------------------------------


def test_closed_segment_is_deleted_by_another_instance(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    base = now_ms() - 60_000
    keys = [put(writer, f"block-{i}", f"m{i}", base + i) for i in range(3)]
    writer.close()
    (segment,) = segment_files(store_path)

    report = make_store().cleanup()
    assert report.segments_deleted >= 1
    assert not segment.exists()
    assert segment_files(store_path) == []
    fresh = make_store()  # everything comes from the snapshot now
    assert keys_of(fresh) == set(keys)
    assert_loads(fresh, keys)


def test_a_cleanup_between_a_readers_two_listings_costs_it_no_entry(
    make_store: StoreFactory, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader lists snapshots/ (none yet), then another process's cleanup
    # commits its snapshot and deletes the segments it consumed, then the
    # reader lists log/ (empty now): the entries are in no file the reader
    # saw, so it must list snapshots/ again before it answers (R8).
    writer = make_store()
    base = now_ms() - 60_000
    keys = [put(writer, f"block-{i}", f"m{i}", base + i) for i in range(3)]
    writer.close()
    reader = make_store()
    live = reader._live
    listed = live.list_snapshots

    def then_a_cleanup_elsewhere() -> tuple[str, ...]:
        names = listed()
        monkeypatch.setattr(live, "list_snapshots", listed)  # once
        assert make_store().cleanup().segments_deleted >= 1
        return names

    monkeypatch.setattr(live, "list_snapshots", then_a_cleanup_elsewhere)
    assert segment_files(store_path)  # nothing cleaned up yet
    assert_loads(reader, keys)
    assert segment_files(store_path) == []  # the race did happen


def test_open_segment_is_kept_until_it_is_closed(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store()
    base = now_ms() - 60_000
    keys = [put(writer, f"block-{i}", f"m{i}", base + i) for i in range(3)]
    (segment,) = segment_files(store_path)

    first = make_store().cleanup()
    assert first.segments_deleted == 0
    assert segment.exists()  # its writer may still append
    keys.append(put(writer, "block-3", "m3", base + 3))  # it does
    writer.close()

    second = make_store().cleanup()
    assert second.segments_deleted == 1
    assert not segment.exists()
    fresh = make_store()
    assert keys_of(fresh) == set(keys)
    assert_loads(fresh, keys)


def test_segment_of_a_dead_writer_is_deleted(make_store: StoreFactory, store_path: Path) -> None:
    """A process that dies without closing leaves its segment unsealed; on
    this host, a cleanup knows the writer is gone."""
    base = now_ms() - 60_000
    run_python(
        """
        import os, sys
        from marimo_store import Entry, ExecutionKey, FsPersistentStore
        store = FsPersistentStore(sys.argv[1])
        base = int(sys.argv[2])
        for i in range(3):
            name = f"m{i}"
            value = {"name": name, "big": f"{name}:" + "x" * 1500}
            store.put(Entry.of(ExecutionKey(f"block-{i}", name, base + i), value))
        os._exit(0)  # no close, no exit hook
        """,
        str(store_path),
        str(base),
    )
    (segment,) = segment_files(store_path)
    assert snapshot_files(store_path) == []
    keys = [ExecutionKey(f"block-{i}", f"m{i}", base + i) for i in range(3)]

    report = make_store().cleanup()
    assert report.segments_deleted == 1
    assert not segment.exists()
    fresh = make_store()
    assert keys_of(fresh) == set(keys)
    assert_loads(fresh, keys)


@pytest.mark.parametrize("forget_offsets", [False, True])
def test_dropped_entry_stays_dropped_when_its_segment_comes_back(
    make_store: StoreFactory, store_path: Path, tmp_path: Path, forget_offsets: bool
) -> None:
    writer = make_store()
    kept, dropped = populate(writer, now_ms() - 60_000)
    writer.close()
    (segment,) = segment_files(store_path)
    aside = tmp_path / "aside.log"
    shutil.copy2(segment, aside)

    report = make_store().cleanup()
    assert {d.key for d in report.dropped} == set(dropped)
    assert report.segments_deleted == 1
    assert not segment.exists()
    if forget_offsets:
        # A snapshot lists offsets only for segments that exist: after this
        # one, only the tombstones keep the dropped keys dropped.
        assert make_store().cleanup().dropped == []

    shutil.copy2(aside, segment)  # a sync tool brings the old segment back

    fresh = make_store()
    assert keys_of(fresh) == set(kept)
    assert_misses(fresh, dropped)
    assert_loads(fresh, kept)
    again = make_store().cleanup()
    assert again.dropped == []
    assert again.entries_kept == len(kept)
    fresh = make_store()
    assert keys_of(fresh) == set(kept)
    assert_misses(fresh, dropped)


# -- divergence and convergence --------------------------------------------------------


def test_diverged_copies_converge(make_store: StoreFactory, tmp_path: Path) -> None:
    """Two copies of a store clean up independently (one drops e0, the other
    keeps it); once each has the other's files, both see the same entries,
    e0 stays dropped, and the next cleanup leaves one head."""
    origin, root_a, root_b = tmp_path / "origin", tmp_path / "A", tmp_path / "B"
    base = now_ms() - 60_000
    store = make_store(origin)
    e0 = put(store, "b", "e0", base)
    other = put(store, "c", "other", base + 1)
    store.close()
    first = make_store(origin).cleanup()
    assert first.dropped == []
    assert first.snapshot is not None
    shutil.copytree(origin, root_a)
    shutil.copytree(origin, root_b)

    # A: a new entry; a cleanup (by another instance) drops e0.
    writer_a = make_store(root_a)
    e1 = put(writer_a, "b", "e1", base + 2)
    writer_a.close()
    report_a = make_store(root_a).cleanup(drop_only(e0))
    assert [d.key for d in report_a.dropped] == [e0]
    # B: another new entry; its own writer cleans up and keeps everything.
    writer_b = make_store(root_b)
    e2 = put(writer_b, "b", "e2", base + 3)
    report_b = writer_b.cleanup(drop_nothing)
    assert report_b.dropped == []
    assert report_b.entries_kept == 3
    assert report_a.snapshot != report_b.snapshot

    # The sync tool copies each side's new files to the other; no name clashes.
    copied_to_b = sync(root_a, root_b)
    copied_to_a = sync(root_b, root_a)
    assert f"snapshots/{report_a.snapshot}.snap" in copied_to_b
    assert f"snapshots/{report_b.snapshot}.snap" in copied_to_a
    assert len(snapshot_files(root_a)) == len(snapshot_files(root_b)) == 2

    expected = {e1, e2, other}
    view_a, view_b = make_store(root_a), make_store(root_b)
    metadata_a = {m.key: m for m in view_a.entries()}
    metadata_b = {m.key: m for m in view_b.entries()}
    assert set(metadata_a) == expected
    assert set(metadata_b) == expected
    assert metadata_a == metadata_b  # the merge does not depend on which side reads it

    # A cleanup in A merges both heads into one; the state does not change.
    merged = make_store(root_a).cleanup()
    assert merged.dropped == []
    assert merged.entries_kept == 3
    assert merged.snapshots_deleted == 2
    assert snapshot_files(root_a) == [snapshot_path(root_a, merged.snapshot)]
    after = {m.key: m for m in make_store(root_a).entries()}
    assert after == metadata_a

    for root in (root_a, root_b):
        fresh = make_store(root)
        assert keys_of(fresh) == expected
        assert_loads(fresh, expected)
        assert_misses(fresh, [e0])

    # B catches up with A's merged snapshot: one head there too.
    sync(root_a, root_b)
    final_b = make_store(root_b).cleanup()
    assert final_b.dropped == []
    assert len(snapshot_files(root_b)) == 1
    fresh = make_store(root_b)
    assert keys_of(fresh) == expected
    assert_misses(fresh, [e0])


# -- conflicted copies -----------------------------------------------------------------


def test_conflicted_copies_are_harmless_and_cleaned_up(
    make_store: StoreFactory, store_path: Path
) -> None:
    base = now_ms() - 60_000
    writer = make_store()
    keys = [put(writer, f"block-{i}", f"m{i}", base + i) for i in range(3)]
    writer.close()
    report = make_store().cleanup()
    (snapshot,) = snapshot_files(store_path)
    assert snapshot.name == f"{report.snapshot}.snap"
    later = make_store()
    keys += [put(later, f"block-{i}", f"m{i}", base + i) for i in range(3, 5)]
    later.close()
    (segment,) = segment_files(store_path)

    snapshot_copy = snapshot.with_name(
        f"{report.snapshot} (host's conflicted copy 2026-11-21).snap"
    )
    segment_copy = segment.with_name(f"{segment.stem}.sync-conflict-20261121-101500-ABCDEF1.log")
    shutil.copy2(snapshot, snapshot_copy)
    shutil.copy2(segment, segment_copy)

    with store_warnings() as caught:
        fresh = make_store()
        assert keys_of(fresh) == set(keys)
        assert len(fresh.entries()) == 5
        assert_loads(fresh, keys)
    assert caught == []

    cleaned = make_store().cleanup()
    assert cleaned.dropped == []
    assert cleaned.entries_kept == 5
    assert cleaned.snapshots_deleted == 2
    assert snapshot_files(store_path) == [snapshot_path(store_path, cleaned.snapshot)]
    assert not snapshot_copy.exists()
    # Both copies of the sealed, fully consumed segment go too. (The hits
    # above appended access records to an open segment of this process.)
    assert cleaned.segments_deleted == 2
    assert not segment.exists()
    assert not segment_copy.exists()
    fresh = make_store()
    assert keys_of(fresh) == set(keys)
    assert_loads(fresh, keys)


# -- damaged snapshots -----------------------------------------------------------------


def snapshot_only_store(
    make_store: StoreFactory, store_path: Path, count: int = 6
) -> tuple[list[ExecutionKey], Path]:
    """A store whose entries (one per block) live only in one snapshot."""
    writer = make_store()
    base = now_ms() - 60_000
    keys = [put(writer, f"block-{i}", f"m{i}", base + i) for i in range(count)]
    writer.close()
    report = make_store().cleanup()
    assert report.entries_kept == count
    assert segment_files(store_path) == []
    (snapshot,) = snapshot_files(store_path)
    return keys, snapshot


def damage_first_entry(snapshot: Path) -> tuple[ExecutionKey, list[ExecutionKey]]:
    """Flip a byte inside the first entry record of the snapshot (so that
    every other record follows the damage); return its key and the others."""
    frames = snapshot_entry_frames(snapshot)
    start, end, damaged = frames[0]
    flip_byte(snapshot, (start + FRAME.size + end) // 2)
    return damaged, [key for _start, _end, key in frames[1:]]


def test_damaged_entry_in_snapshot_is_a_miss_with_a_warning(
    make_store: StoreFactory, store_path: Path
) -> None:
    _keys, snapshot = snapshot_only_store(make_store, store_path)
    damaged, _others = damage_first_entry(snapshot)
    store = make_store()
    with store_warnings() as caught:
        assert store.get(damaged, exact_match_created_at=True) is None
        assert store.get(ExecutionKey(damaged.block_id, damaged.module_hash)) is None
    assert caught, "a damaged snapshot entry must cost a miss *and* a warning"


def test_damaged_entry_in_snapshot_spares_the_others_on_lookup(
    make_store: StoreFactory, store_path: Path
) -> None:
    _keys, snapshot = snapshot_only_store(make_store, store_path)
    damaged, others = damage_first_entry(snapshot)
    with store_warnings():
        store = make_store()
        assert_loads(store, others)
        assert store.get(damaged, exact_match_created_at=True) is None


def test_damaged_entry_in_snapshot_spares_the_others_in_listing(
    make_store: StoreFactory, store_path: Path
) -> None:
    _keys, snapshot = snapshot_only_store(make_store, store_path)
    _damaged, others = damage_first_entry(snapshot)
    with store_warnings() as caught:
        listed = keys_of(make_store())
    assert caught
    assert listed == set(others)


def test_damaged_entry_in_snapshot_spares_the_others_in_cleanup(
    make_store: StoreFactory, store_path: Path
) -> None:
    """The cleanup replaces (deletes) the damaged snapshot: whatever it does
    not carry over from it is lost for good."""
    _keys, snapshot = snapshot_only_store(make_store, store_path)
    damaged, others = damage_first_entry(snapshot)
    with store_warnings() as caught:
        report = make_store().cleanup()
    assert caught
    assert report.snapshot is not None
    assert report.entries_kept == len(others)
    fresh = make_store()
    assert keys_of(fresh) == set(others)
    assert_loads(fresh, others)
    assert fresh.get(damaged, exact_match_created_at=True) is None


def test_damaged_snapshot_footer_ignores_the_snapshot(
    make_store: StoreFactory, store_path: Path
) -> None:
    keys, snapshot = snapshot_only_store(make_store, store_path)
    flip_byte(snapshot, snapshot.stat().st_size - 3)  # inside the magic

    with store_warnings() as caught:
        store = make_store()
        listed = keys_of(store)
        for key in keys:  # misses (the snapshot held them alone), never an error
            store.get(key, exact_match_created_at=True)
    assert any("snapshot" in str(w.message) for w in caught)
    assert listed <= set(keys)

    with store_warnings():
        report = make_store().cleanup()
    assert report.snapshot is not None
    assert report.skipped == []
    new = snapshot_path(store_path, report.snapshot)
    assert new.is_file()
    assert snapshot.exists()  # young: maybe still arriving through a sync tool

    # The store works on: new entries survive a later cleanup.
    with store_warnings():
        writer = make_store()
        late = put(writer, "late", "late", now_ms())
        writer.close()
        make_store().cleanup()
        fresh = make_store()
        assert late in keys_of(fresh)
        assert_loads(fresh, [late])


# -- when cleanup runs by itself -------------------------------------------------------


def test_max_entries_in_log_starts_a_background_cleanup(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store(max_entries_in_log=5)
    base = now_ms() - 60_000
    keys = [put(store, f"block-{i}", f"m{i}", base + i) for i in range(5)]
    assert snapshot_files(store_path) == []  # 5 entries in the log: not more than 5
    keys.append(put(store, "block-5", "m5", base + 5))

    deadline = time.monotonic() + 10
    while not snapshot_files(store_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert snapshot_files(store_path), "no background cleanup within 10 s"
    # A dry run waits for the modification lock, i.e. for the background cleanup.
    preview = make_store().cleanup(dry_run=True)
    assert preview.skipped == []
    assert preview.dropped == []
    assert len(snapshot_files(store_path)) == 1
    fresh = make_store()
    assert keys_of(fresh) == set(keys)
    assert_loads(fresh, keys)


def test_old_log_entry_starts_a_background_cleanup(
    make_store: StoreFactory, store_path: Path
) -> None:
    store = make_store(entry_merge_timeout_seconds=5)
    young = put(store, "young", "young", now_ms())
    assert snapshot_files(store_path) == []
    old = put(store, "old", "old", now_ms() - 60_000)  # older than 5 s: the trigger fires

    deadline = time.monotonic() + 10
    while not snapshot_files(store_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert snapshot_files(store_path), "no background cleanup within 10 s"
    assert make_store().cleanup(dry_run=True).skipped == []  # waits for it to finish
    fresh = make_store()
    assert keys_of(fresh) == {young, old}
    assert_loads(fresh, [young, old])


EXIT_SCRIPT = """
import sys
from marimo_store import DefaultCleanupStrategy, Entry, ExecutionKey, FsPersistentStore
store = FsPersistentStore(
    sys.argv[1],
    cleanup_on_exit=sys.argv[2] == "1",
    cleanup_strategy=DefaultCleanupStrategy(max_entries_per_block=3),
)
base = int(sys.argv[3])
for i in range(10):
    name = f"m{i}"
    value = {"name": name, "big": f"{name}:" + "x" * 1500}
    store.put(Entry.of(ExecutionKey("block", name, base + i), value))
# exits without close(): the exit hook decides
"""


@pytest.mark.parametrize("cleanup_on_exit", [True, False])
def test_cleanup_on_exit(make_store: StoreFactory, store_path: Path, cleanup_on_exit: bool) -> None:
    base = now_ms() - 60_000
    result = run_python(EXIT_SCRIPT, str(store_path), "1" if cleanup_on_exit else "0", str(base))
    assert "Warning" not in result.stderr, result.stderr
    keys = [ExecutionKey("block", f"m{i}", base + i) for i in range(10)]
    (segment,) = segment_files(store_path)

    store = make_store()
    if cleanup_on_exit:
        assert len(snapshot_files(store_path)) == 1
        assert keys_of(store) == set(keys[-3:])  # the script's strategy: 3 per block
        assert_loads(store, keys[-3:])
        assert_misses(store, keys[:-3])
    else:
        assert snapshot_files(store_path) == []
        assert keys_of(store) == set(keys)
        assert_loads(store, keys)
    # Either way the exit hook sealed the segment: the next cleanup deletes it.
    # (It writes the access records the hits above queued to a segment of
    # its own, still open, so kept.)
    report = make_store().cleanup()
    assert report.segments_deleted == 1
    assert not segment.exists()


# -- no store --------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_cleanup_of_a_missing_store_does_nothing(
    make_store: StoreFactory, tmp_path: Path, dry_run: bool
) -> None:
    path = tmp_path / "no" / "store"
    before = sorted(tmp_path.rglob("*"))
    store = make_store(path)
    report = store.cleanup(dry_run=dry_run)
    assert report.dry_run is dry_run
    assert report.dropped == []
    assert report.entries_kept == 0
    assert report.snapshot is None
    assert report.snapshots_deleted == report.segments_deleted == 0
    assert report.temp_files_deleted == report.objects_deleted == report.bytes_freed == 0
    assert report.skipped == []
    assert store.entries() == []
    assert not path.exists()
    assert not path.parent.exists()
    assert sorted(tmp_path.rglob("*")) == before
    # Also with a strategy and object GC asked for.
    store.cleanup(DefaultCleanupStrategy(max_entries_per_block=1), include_content=True)
    assert not path.exists()


def test_put_in_the_millisecond_of_a_dropped_run_is_not_lost(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marimo_store._compaction as compaction_module
    import marimo_store._writer as writer_module

    for module in (writer_module, compaction_module):  # created_at, the cleanup's time
        monkeypatch.setattr(module, "now_ms", lambda: 1_700_000_000_000)
    store = make_store(refresh_interval=0)
    key = ExecutionKey("same-ms", "m")
    first = store.put(Entry.of(key, {"v": 1}))
    store.cleanup(drop_only(first.key))
    assert store.get(key) is None
    again = store.put(Entry.of(key, {"v": 1}))  # the clock has not moved
    assert again.created_at == first.created_at + 1  # not under the tombstone
    entry = store.get(key)
    assert entry is not None and entry.variables["v"] == 1


def test_a_short_copy_of_a_segment_never_moves_its_consumed_offset_back(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store(refresh_interval=0)
    for name in ("e1", "e2"):
        writer.put(Entry.of(ExecutionKey(name, "m"), {"v": name}))
    cleaner = make_store(refresh_interval=0)
    assert cleaner.cleanup(drop_nothing).skipped == []  # consumed: both records
    writer.put(Entry.of(ExecutionKey("e3", "m"), {"v": "e3"}))
    (segment,) = log_dir(store_path).glob("*.log")
    whole = segment.read_bytes()
    # A sync tool delivers an old, partial version: it ends inside a record.
    segment.write_bytes(whole[:130])
    assert cleaner.cleanup(drop_nothing).skipped == []
    segment.write_bytes(whole)  # ... and completes it
    fresh = make_store(refresh_interval=0)
    for name in ("e1", "e2", "e3"):
        entry = fresh.get(ExecutionKey(name, "m"))
        assert entry is not None, f"{name} was lost"
        assert entry.variables["v"] == name


def test_a_short_copy_of_another_hosts_sealed_segment_is_kept(
    make_store: StoreFactory, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marimo_store._writer as writer_module

    # A writer of another machine (its segments arrive through a sync tool).
    monkeypatch.setattr(writer_module, "new_writer_id", lambda: "elsewhere-4242-0123456789ab")
    writer = make_store(refresh_interval=0)
    for name in ("e1", "e2", "e3"):
        writer.put(Entry.of(ExecutionKey(name, "m"), {"v": name}))
    writer.close()
    later = make_store(refresh_interval=0)  # the same writer id moves on to segment 1:
    later.put(Entry.of(ExecutionKey("e4", "m"), {"v": "e4"}))  # segment 0 is sealed
    monkeypatch.undo()
    segment = log_dir(store_path) / "elsewhere-4242-0123456789ab.0.log"
    whole = segment.read_bytes()
    cleaner = make_store(refresh_interval=0)
    assert cleaner.cleanup(drop_nothing).segments_deleted == 1  # all consumed: deleted
    segment.write_bytes(whole[:150])  # an old copy comes back, half delivered
    assert cleaner.cleanup(drop_nothing).segments_deleted == 0  # it may still grow
    segment.write_bytes(whole)  # the sync tool completes it
    assert cleaner.cleanup(drop_nothing).segments_deleted == 1
    fresh = make_store(refresh_interval=0)
    assert {m.key.block_id for m in fresh.entries()} == {"e1", "e2", "e3", "e4"}


def test_a_reader_that_saw_a_short_copy_reads_on_from_a_record_boundary(
    make_store: StoreFactory, store_path: Path
) -> None:
    writer = make_store(refresh_interval=0)
    for name in ("e1", "e2"):
        writer.put(Entry.of(ExecutionKey(name, "m"), {"v": name}))
    assert make_store(refresh_interval=0).cleanup(drop_nothing).skipped == []
    writer.put(Entry.of(ExecutionKey("e3", "m"), {"v": "e3"}))
    (segment,) = log_dir(store_path).glob("*.log")
    whole = segment.read_bytes()
    segment.write_bytes(whole[:130])  # an old, partial copy: it ends inside a record
    reader = make_store(refresh_interval=0)
    with store_warnings() as caught:
        assert reader.get(ExecutionKey("e1", "m")) is not None  # from the snapshot
        assert reader.get(ExecutionKey("e3", "m")) is None  # not delivered yet
        with open(segment, "ab") as file:  # the tool completes the same file
            file.write(whole[130:])
        entry = reader.get(ExecutionKey("e3", "m"))
    assert entry is not None and entry.variables["v"] == "e3"
    assert caught == []  # the copy was never damaged: it was short


def test_entries_of_one_environment_share_one_value_however_many_environments(
    make_store: StoreFactory,
) -> None:
    """A snapshot record carries its environment; decoding keeps one value
    per environment rather than one per entry (memory at a million entries),
    and records of more environments than that cache holds (a hostile
    store) still decode to their own, with the cache bounded."""
    from marimo_store._format import records

    writer = make_store()
    now = now_ms()
    for i in range(3):
        writer.put(Entry.of(ExecutionKey("block", f"module-{i}", now + i), {"i": i}))
    writer.cleanup(DefaultCleanupStrategy(max_entries_per_block=None))
    shared = make_store().entries()
    assert len(shared) == 3
    assert len({id(metadata.environment) for metadata in shared}) == 1

    count = records._MAX_ENVIRONMENTS + 5
    for i in range(count):
        record = {"k": ["block", f"m-{i}", now], "c": {}, "py": "3.11", "pl": f"os-{i}"}
        stored = records.decode_entry(record, None)
        assert stored is not None
        assert stored.metadata.environment.platform == f"os-{i}"
    assert 0 < len(records._environments) <= records._MAX_ENVIRONMENTS
