"""What the hostile-folder tests share: a writer of the folder that frames
and checksums whatever it likes, and a tripwire outside the store.

The hostile writer works from docs/format.md alone (frames, segment
headers, snapshot layout), as someone with the folder and the format
description would; it never calls the store's own encoders for the bytes
it plants, except `frame` (a u32 length, the xxh3-64 and the payload).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import xxhash

from marimo_store._format.framing import frame
from marimo_store.cli import main

T0 = 1_700_000_000_000
_FOOTER = struct.Struct("<QQ8s")
_ROW = struct.Struct("<QQ")
_HASH = struct.Struct("<Q")


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def segment_header(writer: str = "mallory-1-000000000000", **fields: Any) -> dict[str, Any]:
    """A valid segment header (docs/format.md §6.2), `fields` overriding."""
    header = {
        "t": "header",
        "v": 1,
        "writer": writer,
        "segment": 0,
        "created_at": T0,
        "python": "3.11.7",
        "platform": "linux-x86_64",
    }
    header.update(fields)
    return header


def write_segment(
    store: Path, payloads: list[bytes], *, header: bytes | None = None, name: str = ""
) -> Path:
    """A log segment of framed `payloads` after a header, as another writer makes one."""
    head = header if header is not None else pack(segment_header())
    path = store / "log" / (name or "mallory-1-000000000000.0.log")
    path.write_bytes(frame(head) + b"".join(frame(p) for p in payloads))
    return path


def computation_hash(block_id: str, module_hash: str) -> int:
    digest = xxhash.xxh3_64_digest(f"{block_id}\x00{module_hash}".encode())
    return int.from_bytes(digest, "little")


def table_directory(rows: bytes, per_block: int = 256) -> bytes:
    """The table directory frame (docs/format.md §9.5.1) of the table `rows`:
    per block of `per_block` rows its first hash and the xxh3-64 of its bytes."""
    step = per_block * _ROW.size
    blocks = b"".join(
        rows[start : start + 8] + _HASH.pack(xxhash.xxh3_64_intdigest(rows[start : start + step]))
        for start in range(0, len(rows), step)
    )
    return frame(pack({"t": "tabledir", "rows": per_block, "b": blocks}))


def write_snapshot(
    store: Path,
    entries: list[tuple[int, bytes]],
    tombstones: bytes,
    header_fields: dict[str, Any] | None = None,
    *,
    raw_header: bytes | None = None,
    directory: Callable[[bytes], bytes] | None = None,
) -> Path:
    """A snapshot (docs/format.md §9) holding `entries` (table hash,
    payload) and a tombstones payload, with a consistent body hash.

    `directory(rows)`, given the table's rows, returns the bytes written
    between the tombstones frame and the table (a table directory, §9.5.1,
    or anything else); the body hash covers them. Without it the snapshot
    has the layout of writers before table directories."""
    entry_frames = [frame(payload) for _, payload in entries]
    tombstone_frame = frame(tombstones)
    header = {
        "t": "snapshot",
        "v": 1,
        "writer": "mallory",
        "created_at": T0,
        "parents": [],
        "ancestors": {},
        "consumed": {},
        "count": len(entries),
        "body": "0" * 32,  # as long as the hash: the rows' offsets come first
    }
    header.update(header_fields or {})
    header_bytes = len(frame(raw_header if raw_header is not None else pack(header)))
    rows = bytearray()
    offset = header_bytes
    order = sorted(range(len(entries)), key=lambda i: entries[i][0])
    offsets = {}
    for index, entry_frame in enumerate(entry_frames):
        offsets[index] = offset
        offset += len(entry_frame)
    for index in order:
        rows += _ROW.pack(entries[index][0], offsets[index])
    between = b"" if directory is None else directory(bytes(rows))
    if "body" not in (header_fields or {}):
        body = b"".join((*entry_frames, tombstone_frame, between))
        header["body"] = xxhash.xxh3_128_hexdigest(body)
    header_frame = frame(raw_header if raw_header is not None else pack(header))
    assert len(header_frame) == header_bytes
    tombstones_at = offset
    table_at = tombstones_at + len(tombstone_frame) + len(between)
    data = b"".join(
        (
            header_frame,
            *entry_frames,
            tombstone_frame,
            between,
            frame(bytes(rows)),
            _FOOTER.pack(tombstones_at, table_at, b"msnap01\n"),
        )
    )
    path = store / "snapshots" / "mallory.snap"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


CLI_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("info",),
    ("ls",),
    ("ls", "--json"),
    ("info", "--json"),
    ("doctor",),
    ("verify",),
    ("cleanup", "--dry-run"),
    ("verify", "--repair"),
    ("cleanup",),
)
"""Every command that reads a store, in an order where the repairs come last."""


def run_cli(*argv: str) -> tuple[int, str, str]:
    """`marimo-store ARGV` in this process: (exit code, stdout, stderr).

    In-process so that a property test can run it for every example; the
    subprocess tests run the installed script. Any exception but the ones
    `main` turns into exit 2 escapes and fails the test.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


class Tripwire:
    """Files outside the store whose bytes, mode and mtime must never change,
    and a directory in which nothing may appear.

    Symlinks planted in the store point here; `check()` fails the test if
    any operation wrote, created, truncated, chmodded or touched through one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = root / "outside"
        self.directory.mkdir(parents=True)
        self.file = self.directory / "precious.txt"
        self.file.write_bytes(b"the user's own file\n")
        old = 1_000_000_000
        os.utime(self.file, (old, old))
        self.empty = root / "outside-empty"
        self.empty.mkdir()
        self._before = self._state()

    def _state(self) -> dict[str, tuple[bytes, int, int]]:
        found = {}
        for base in (self.directory, self.empty):
            for path in sorted(base.rglob("*")):
                stat = path.lstat()
                data = path.read_bytes() if path.is_file() else b""
                found[str(path)] = (data, stat.st_mtime_ns, stat.st_mode)
            stat = base.lstat()
            found[str(base)] = (b"", stat.st_mtime_ns, stat.st_mode)
        return found

    def add_file(self, name: str, data: bytes) -> Path:
        """Another file outside the store to watch (e.g. an object's twin)."""
        path = self.directory / name
        path.write_bytes(data)
        old = 1_000_000_000
        os.utime(path, (old, old))
        self._before = self._state()
        return path

    def missing(self) -> Path:
        """A path outside the store that must never come to exist."""
        return self.directory / "created-through-a-link"

    def check(self) -> None:
        after = self._state()
        assert after == self._before, "something outside the store changed"
        assert not self.missing().exists()


@contextlib.contextmanager
def environment(home: Path) -> Iterator[None]:
    """An empty HOME and config for CLI runs in this process."""
    saved = {name: os.environ.get(name) for name in ("HOME", "XDG_CONFIG_HOME")}
    os.environ["HOME"] = str(home)
    os.environ["XDG_CONFIG_HOME"] = str(home / "xdg")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
