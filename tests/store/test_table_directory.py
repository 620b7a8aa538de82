"""Table directories of snapshots (docs/format.md §9.5.1): a store's lookups
verify the directory and the blocks of the key table they read, never the
whole table; every walk, and every reader before directories, verifies the
whole table as before; a damaged or hostile directory costs at most speed,
a damaged block only its own rows.

The bounds are counted, not timed: the tests record the length of every
buffer a record checksum is taken of.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import xxhash
from _files import flip_byte
from conftest import StoreFactory
from hostile._hostile import computation_hash, pack, table_directory, write_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import marimo_store._snapshot as snapshot_module
from marimo_store import DefaultCleanupStrategy, Entry, ExecutionKey, StoreWarning
from marimo_store._format import framing, records, tabledir
from marimo_store._format.framing import frame
from marimo_store._hashing import record_checksum
from marimo_store._snapshot import SnapshotFile, StoreState, encode_snapshot, read_snapshots

FRAME = struct.Struct("<IQ")  # u32 length | u64 xxh3-64 checksum
FOOTER = struct.Struct("<QQ8s")  # tombstones frame offset, table frame offset, magic
ROW = struct.Struct("<QQ")  # computation hash, offset of the entry's frame
BLOCK = 256 * ROW.size  # the bytes of one full block of table rows
T0 = 1_700_000_000_000
KEEP_ALL = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)

Computation = tuple[str, str]


# -- helpers ---------------------------------------------------------------------------


def entry_record(key: ExecutionKey) -> dict[str, Any]:
    return {"t": "entry", "k": [key.block_id, key.module_hash, key.created_at], "c": {}}


def snapshot_of(path: Path, keys: list[ExecutionKey]) -> Path:
    """A snapshot holding entries (no contents) under `keys`, written by the store's writer."""
    state = StoreState()
    for key in keys:
        stored = records.decode_entry({**entry_record(key), "py": "3.11", "pl": "os"}, None)
        assert stored is not None
        state.add_entry(stored)
    _, data = encode_snapshot(state, writer="test", created_at=T0)
    path.write_bytes(data)
    return path


def hostile_snapshot(
    store: Path, keys: list[ExecutionKey], directory: Callable[[bytes], bytes] | None
) -> Path:
    """A snapshot of `keys` built from docs/format.md alone (tests/hostile),
    with `directory(rows)` between the tombstones frame and the table."""
    entries = [
        (
            computation_hash(key.block_id, key.module_hash),
            pack({**entry_record(key), "py": "3.11", "pl": "os"}),
        )
        for key in keys
    ]
    return write_snapshot(store, entries, pack([]), directory=directory)


def runs_of(keys: list[ExecutionKey]) -> dict[Computation, set[int | None]]:
    found: dict[Computation, set[int | None]] = {}
    for key in keys:
        found.setdefault((key.block_id, key.module_hash), set()).add(key.created_at)
    return found


def assert_lookups(snapshot: SnapshotFile, expected: dict[Computation, set[int | None]]) -> None:
    """Every computation finds exactly its runs, and nothing of another."""
    for (block_id, module_hash), created in expected.items():
        found = snapshot.lookup(block_id, module_hash)
        for stored in found:
            assert (stored.metadata.key.block_id, stored.metadata.key.module_hash) == (
                block_id,
                module_hash,
            )
        assert {s.metadata.key.created_at for s in found} == created, (block_id, module_hash)


def table_span(path: Path) -> tuple[int, int]:
    """(start, length) of the table rows in a snapshot file."""
    data = path.read_bytes()
    _, table_at, _ = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    return table_at + FRAME.size, FRAME.unpack_from(data, table_at)[0]


def directory_span(path: Path) -> tuple[int, int]:
    """(start, end) of what lies between the tombstones frame and the table."""
    data = path.read_bytes()
    tombstones_at, table_at, _ = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    return tombstones_at + FRAME.size + FRAME.unpack_from(data, tombstones_at)[0], table_at


def keys_in_rows(path: Path, first: int, last: int) -> set[ExecutionKey]:
    """The keys of the entries table rows `first` to `last` (excluded) point at."""
    data = path.read_bytes()
    start, _ = table_span(path)
    found = set()
    for row in range(first, last):
        offset = ROW.unpack_from(data, start + row * ROW.size)[1]
        length = FRAME.unpack_from(data, offset)[0]
        record = msgpack.unpackb(data[offset + FRAME.size : offset + FRAME.size + length])
        found.add(ExecutionKey(*record["k"]))
    return found


def store_with_a_snapshot(
    make_store: StoreFactory, store_path: Path, count: int
) -> tuple[list[ExecutionKey], Path]:
    """A store whose snapshot holds `count` entries (value `{"i": i}`, one
    run per computation): their keys and the snapshot file."""
    writer = make_store(cleanup_strategy=KEEP_ALL)
    keys = [ExecutionKey(f"block-{i % 7}", f"module-{i}", T0 + i) for i in range(count)]
    for i, key in enumerate(keys):
        writer.put(Entry.of(key, {"i": i}))
    writer.close()
    make_store(cleanup_strategy=KEEP_ALL).cleanup()
    (path,) = (store_path / "snapshots").glob("*.snap")
    return keys, path


def opened(path: Path, *, lazy: bool = True) -> SnapshotFile:
    snapshot, problem = SnapshotFile.inspect(str(path), lazy=lazy)
    assert problem is None
    assert snapshot is not None
    return snapshot


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every buffer a record checksum is taken of from now on
    (frames, table blocks, whole tables)."""
    lengths: list[int] = []

    def counting(payload: Any) -> int:
        lengths.append(len(payload))
        return record_checksum(payload)

    for module in (framing, tabledir):
        monkeypatch.setattr(module, "record_checksum", counting)
    return lengths


@contextmanager
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@contextmanager
def store_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    assert all(issubclass(w.category, StoreWarning) for w in caught), caught


# -- round trips -----------------------------------------------------------------------

# Group sizes of computations that share one table hash (the test's hash is
# the group number): runs of equal hashes that span block boundaries, one
# longer than a block, one spanning three blocks.
GROUPS = [1, 2, 250, 3, 300] + [1, 2, 3, 5, 1, 7, 2] * 400 + [513] + [1, 2, 3, 5, 1, 7, 2] * 100


def colliding_keys(count: int) -> list[ExecutionKey]:
    """`count` keys: in group g, pairs of runs of one computation, several
    computations per group (different blocks and modules, one hash)."""
    keys: list[ExecutionKey] = []
    for group, size in enumerate(GROUPS):
        for j in range(size):
            if len(keys) == count:
                return keys
            keys.append(ExecutionKey(f"b{(j // 2) % 3}", f"m{group}-{j // 4}", T0 + j))
    assert len(keys) == count
    return keys


def group_hash(block_id: str, module_hash: str) -> int:
    """The test's computation hash: the group number (collisions by design)."""
    return int(module_hash[1:].partition("-")[0]) * 7919 + 11


@pytest.mark.parametrize("count", [0, 1, 255, 256, 257, 10_000])
def test_every_key_is_found_through_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashed: list[int], count: int
) -> None:
    monkeypatch.setattr(snapshot_module, "computation_hash", group_hash)
    keys = colliding_keys(count)
    path = snapshot_of(tmp_path / "s.snap", keys)
    _, table_bytes = table_span(path)
    assert table_bytes == count * ROW.size
    expected = runs_of(keys)
    absent = {("b0", "m0-999"): set(), ("b9", "m999999-0"): set(), ("b0", "m1-7"): set()}
    hashed.clear()  # what the writer hashed
    with no_warnings():
        lazy = opened(path)
        assert table_bytes == 0 or table_bytes not in hashed  # not verified whole
        assert_lookups(lazy, {**expected, **absent})
        assert max(hashed, default=0) <= max(BLOCK, 64)
        assert len(list(lazy.entries())) == count  # a walk verifies the whole table
        assert table_bytes in hashed
        whole = opened(path, lazy=False)
        assert_lookups(whole, {**expected, **absent})
        assert lazy.deep_damage() is None
        assert whole.deep_damage() is None


def test_a_cold_lookup_verifies_at_most_three_blocks(tmp_path: Path, hashed: list[int]) -> None:
    keys = [ExecutionKey(f"block-{i % 10}", f"module-{i}", T0 + i) for i in range(20_000)]
    path = snapshot_of(tmp_path / "s.snap", keys)
    _, table_bytes = table_span(path)
    with no_warnings():
        snapshot = opened(path)
        for key in keys[::997]:
            hashed.clear()
            (found,) = snapshot.lookup(key.block_id, key.module_hash)
            assert found.metadata.key == key
            assert hashed.count(BLOCK) <= 3  # those that may hold it, and the next
            assert max(hashed) <= BLOCK
            assert sum(hashed) <= 3 * BLOCK + 1024  # the blocks and one entry record
        hashed.clear()
        opened(path)
        assert sum(hashed) < 2048  # header and directory: 16 bytes per 256 entries
        hashed.clear()
        opened(path, lazy=False)
        assert table_bytes in hashed  # verification at open: the whole table


def test_a_store_opens_its_snapshot_through_the_directory(
    make_store: StoreFactory, store_path: Path, hashed: list[int]
) -> None:
    keys, path = store_with_a_snapshot(make_store, store_path, 1200)
    _, table_bytes = table_span(path)
    hashed.clear()
    reader = make_store()
    for i in (0, 611, 1199):
        entry = reader.get(keys[i])
        assert entry is not None
        assert entry.variables == {"i": i}
    assert hashed.count(BLOCK) <= 9  # three blocks per cold lookup at most
    assert max(hashed) < table_bytes
    assert len(make_store().entries()) == 1200  # listing verifies it whole


# -- damage ----------------------------------------------------------------------------


def test_a_damaged_block_costs_its_own_rows_only(
    make_store: StoreFactory, store_path: Path
) -> None:
    keys, path = store_with_a_snapshot(make_store, store_path, 1000)
    start, _ = table_span(path)
    in_block = keys_in_rows(path, 256, 512)
    assert len(in_block) == 256
    flip_byte(path, start + 300 * ROW.size + 3)

    reader = make_store()
    with store_warnings() as caught:
        for i, key in enumerate(keys):
            entry = reader.get(key)
            if key in in_block:
                assert entry is None
            else:
                assert entry is not None, key
                assert entry.variables == {"i": i}
        listed = {metadata.key for metadata in reader.entries()}
    assert listed == set(keys) - in_block  # a walk reads the blocks that verify
    assert any("key table fails its checksum" in str(w.message) for w in caught)
    # Verification at open rejects it, as every reader before directories does.
    assert SnapshotFile.inspect(str(path)) == (None, "its key table fails its checksum")


def test_a_damaged_directory_falls_back_to_the_whole_table(
    tmp_path: Path, hashed: list[int]
) -> None:
    keys = [ExecutionKey("b", f"module-{i}", T0) for i in range(700)]
    path = snapshot_of(tmp_path / "s.snap", keys)
    start, table_bytes = table_span(path)
    directory_at, _ = directory_span(path)
    flip_byte(path, directory_at + FRAME.size + 30)
    hashed.clear()
    with no_warnings():
        snapshot = opened(path)
        assert table_bytes in hashed  # verified whole at open
        hashed.clear()
        assert_lookups(snapshot, runs_of(keys))
        assert BLOCK not in hashed
        assert snapshot.deep_damage() == "its body does not match the hash in its header"
    flip_byte(path, start + 5)  # and the table too: ignored with a warning, as before
    assert SnapshotFile.inspect(str(path), lazy=True) == (None, "its key table fails its checksum")
    with store_warnings() as caught:
        assert read_snapshots(str(tmp_path), lazy=True).damaged == [str(path)]
    assert len(caught) == 1


def test_a_damaged_tombstones_length_never_misplaces_the_directory(tmp_path: Path) -> None:
    keys = [ExecutionKey("b", f"module-{i}", T0) for i in range(300)]
    expected = runs_of(keys)
    for length in (0, 2, 2**32 - 1):  # the true length is 1 (an empty list)
        path = snapshot_of(tmp_path / f"{length}.snap", keys)
        data = path.read_bytes()
        tombstones_at, _, _ = FOOTER.unpack_from(data, len(data) - FOOTER.size)
        path.write_bytes(
            data[:tombstones_at] + struct.pack("<I", length) + data[tombstones_at + 4 :]
        )
        with store_warnings():
            snapshot = opened(path)
            assert_lookups(snapshot, expected)
            assert snapshot.tombstones() == {}
            assert snapshot.deep_damage() is not None


def directory_bytes(rows: bytes, per_block: int = 256) -> bytes:
    """The `b` field of a valid directory of `rows`."""
    payload = framing.unpack(memoryview(table_directory(rows, per_block))[FRAME.size :])
    assert payload is not None
    blocks: bytes = payload["b"]
    return blocks


def directory(per_block: Any = 256, **fields: Any) -> Callable[[bytes], bytes]:
    """A directory frame with `per_block` and any field replaced (by a value
    or a function of the table rows)."""

    def make(rows: bytes) -> bytes:
        document: dict[str, Any] = {"t": "tabledir", "rows": per_block, "b": directory_bytes(rows)}
        for name, value in fields.items():
            document[name] = value(rows) if callable(value) else value
        return frame(pack(document))

    return make


def _wrong_firsts(rows: bytes) -> bytes:
    blocks = bytearray(directory_bytes(rows))
    for at in range(0, len(blocks), 16):
        blocks[at] ^= 1
    return bytes(blocks)


def _wrong_checksums(rows: bytes) -> bytes:
    blocks = bytearray(directory_bytes(rows))
    blocks[-1] ^= 1
    return bytes(blocks)


def _reversed(rows: bytes) -> bytes:
    blocks = directory_bytes(rows)
    return b"".join(blocks[at : at + 16] for at in reversed(range(0, len(blocks), 16)))


HOSTILE_DIRECTORIES: dict[str, Callable[[bytes], bytes]] = {
    "none (an older writer)": lambda rows: b"",
    "valid": table_directory,
    "valid, one row per block": lambda rows: table_directory(rows, 1),
    "valid, 1000 rows per block": lambda rows: table_directory(rows, 1000),
    "valid, one block of 2**63 rows": lambda rows: table_directory(rows, 2**63),
    "rows 0": directory(0, b=b""),
    "rows -1": directory(-1),
    "rows True": directory(True),
    "rows a string": directory("256"),
    "rows a float": directory(256.0),
    "b not bytes": directory(b="x" * 48),
    "b not a multiple of 16": directory(b=lambda rows: directory_bytes(rows) + b"x"),
    "b a block short": directory(b=lambda rows: directory_bytes(rows)[:-16]),
    "b a block long": directory(b=lambda rows: directory_bytes(rows) + bytes(16)),
    "b empty": directory(b=b""),
    "b a MiB": directory(b=bytes(2**20)),
    "first hashes wrong": directory(b=_wrong_firsts),
    "a checksum wrong": directory(b=_wrong_checksums),
    "blocks reversed": directory(b=_reversed),
    "another type": directory(t="keydir"),
    "no type": lambda rows: frame(pack({"rows": 256, "b": directory_bytes(rows)})),
    "not a map": lambda rows: frame(pack([256, directory_bytes(rows)])),
    "an empty frame": lambda rows: frame(b""),
    "garbage": lambda rows: b"\xff" * 40,
    "a frame header only": lambda rows: FRAME.pack(2**32 - 1, 0),
    "three bytes": lambda rows: b"\x00\x00\x00",
    "a directory then garbage": lambda rows: table_directory(rows) + bytes(5),
    "two directories": lambda rows: table_directory(rows) * 2,
    "a frame that verifies but is no msgpack": lambda rows: frame(b"\xc1\xc1"),
}
VALID = {
    "none (an older writer)",
    "valid",
    "valid, one row per block",
    "valid, 1000 rows per block",
    "valid, one block of 2**63 rows",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_DIRECTORIES))
def test_a_hostile_directory_costs_speed_never_an_entry(tmp_path: Path, name: str) -> None:
    """The table is intact: whatever lies before it, every lookup and walk
    finds everything, with no warning; verify reports all but valid ones."""
    keys = [ExecutionKey(f"b{i % 3}", f"module-{i // 2}", T0 + i) for i in range(600)]
    path = hostile_snapshot(tmp_path, keys, HOSTILE_DIRECTORIES[name])
    with no_warnings():
        snapshot = opened(path)
        assert_lookups(snapshot, runs_of(keys))
        assert {s.metadata.key for s in snapshot.entries()} == set(keys)
        again = opened(path)
        assert {s.metadata.key for s in again.entries()} == set(keys)  # a walk first
        assert_lookups(again, runs_of(keys))
        assert (snapshot.deep_damage() is None) == (name in VALID), snapshot.deep_damage()


@pytest.mark.parametrize("block", [0, 3, 9])
def test_a_first_hash_claimed_too_high_where_no_lookup_reads_costs_no_entry(
    tmp_path: Path, block: int
) -> None:
    # Block `block` of 8-row blocks claims a first hash above its real one
    # (the claims stay sorted, every checksum is right): a lookup of a hash
    # between the two must not be sent to the block before, unchecked.
    keys = [ExecutionKey("b", f"module-{i}", T0 + i) for i in range(80)]

    def claiming_higher(rows: bytes) -> bytes:
        step = 8 * ROW.size
        firsts = [ROW.unpack_from(rows, start)[0] for start in range(0, len(rows), step)]
        claimed = firsts[block + 1] - 1 if block + 1 < len(firsts) else 2**64 - 1
        parts = b"".join(
            ROW.pack(claimed if index == block else first, record_checksum(rows[at : at + step]))
            for index, (first, at) in enumerate(zip(firsts, range(0, len(rows), step), strict=True))
        )
        return frame(pack({"t": "tabledir", "rows": 8, "b": parts}))

    path = hostile_snapshot(tmp_path, keys, claiming_higher)
    with no_warnings():
        assert_lookups(opened(path), runs_of(keys))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    per_block=st.one_of(st.integers(-3, 2**64 - 1), st.none(), st.binary(max_size=8)),
    blocks=st.one_of(st.binary(max_size=96), st.none()),
    raw=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_any_directory_is_harmless(
    tmp_path_factory: pytest.TempPathFactory,
    per_block: Any,
    blocks: bytes | None,
    raw: bytes | None,
) -> None:
    keys = [ExecutionKey("b", f"module-{i % 40}", T0 + i) for i in range(80)]

    def make(rows: bytes) -> bytes:
        if raw is not None:
            return raw
        if blocks is None and type(per_block) is int and per_block > 0:
            return table_directory(rows, per_block)
        return frame(pack({"t": "tabledir", "rows": per_block, "b": blocks or b""}))

    path = hostile_snapshot(tmp_path_factory.mktemp("s"), keys, make)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a raw tail can cover the tombstones: they warn
        snapshot = opened(path)
        assert_lookups(snapshot, runs_of(keys))
        snapshot.deep_damage()


# -- compatibility ---------------------------------------------------------------------


def old_reader_problem(data: bytes) -> str | None:
    """What a reader before table directories finds wrong with a snapshot,
    from docs/format.md §9 alone: §9.7 at open, then verify's checks of
    every byte (§9.2 `body`, `count`, every entry and the tombstones)."""
    if len(data) < FOOTER.size + FRAME.size:
        return "too short"
    tombstones_at, table_at, magic = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    region = data[: len(data) - FOOTER.size]

    def payload(at: int, end: int) -> bytes | None:
        if at + FRAME.size > end:
            return None
        length, checksum = FRAME.unpack_from(data, at)
        body = data[at + FRAME.size : at + FRAME.size + length]
        ok = at + FRAME.size + length <= end and xxhash.xxh3_64_intdigest(body) == checksum
        return body if ok else None

    header = payload(0, tombstones_at)
    table = payload(table_at, len(region))
    if magic != b"msnap01\n" or not tombstones_at < table_at < len(region):
        return "footer"
    if header is None or table is None or table_at + FRAME.size + len(table) != len(region):
        return "header or table"
    document = msgpack.unpackb(header)
    if document.get("t") != "snapshot" or len(table) % ROW.size:
        return "header"
    header_end = FRAME.size + len(header)
    if xxhash.xxh3_128_hexdigest(data[header_end:table_at]) != document["body"]:
        return "body"
    if document["count"] != len(table) // ROW.size or payload(tombstones_at, table_at) is None:
        return "count or tombstones"
    for row in range(len(table) // ROW.size):
        offset = ROW.unpack_from(table, row * ROW.size)[1]
        entry = payload(offset, tombstones_at)
        if entry is None or msgpack.unpackb(entry)["t"] != "entry":
            return "entry"
    return None


def test_readers_before_directories_accept_the_new_snapshots(tmp_path: Path) -> None:
    for count in (0, 1, 300, 2000):
        keys = [ExecutionKey("b", f"module-{i % 500}", T0 + i) for i in range(count)]
        path = snapshot_of(tmp_path / f"{count}.snap", keys)
        data = path.read_bytes()
        assert old_reader_problem(data) is None
        # Between the tombstones frame and the table: exactly one directory frame.
        start, end = directory_span(path)
        length, checksum = FRAME.unpack_from(data, start)
        assert start + FRAME.size + length == end
        assert xxhash.xxh3_64_intdigest(data[start + FRAME.size : end]) == checksum
        document = msgpack.unpackb(data[start + FRAME.size : end])
        assert document == {
            "t": "tabledir",
            "rows": 256,
            "b": directory_bytes(data[end + FRAME.size : len(data) - FOOTER.size]),
        }
        with no_warnings():
            assert opened(path, lazy=False).deep_damage() is None


def test_snapshots_without_a_directory_are_verified_whole_at_open(
    tmp_path: Path, hashed: list[int]
) -> None:
    keys = [ExecutionKey(f"b{i % 3}", f"module-{i // 3}", T0 + i) for i in range(900)]
    path = hostile_snapshot(tmp_path, keys, None)
    data = path.read_bytes()
    assert old_reader_problem(data) is None
    _, table_bytes = table_span(path)
    hashed.clear()
    with no_warnings():
        snapshot = opened(path)
        assert table_bytes in hashed
        hashed.clear()
        assert_lookups(snapshot, runs_of(keys))
        assert BLOCK not in hashed
        assert snapshot.deep_damage() is None
    start, _ = table_span(path)
    flip_byte(path, start + 700)
    assert SnapshotFile.inspect(str(path), lazy=True) == (None, "its key table fails its checksum")
