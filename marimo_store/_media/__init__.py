"""The storage seam: what the store's format needs from where it is kept.

The format (docs/format.md) is content-addressed and write-once friendly:
objects are named by their hash and never change, a writer's records go to
segments only that writer extends, snapshots are replaced whole. So the
format needs only these operations from a medium, and nothing else:

- `put_once(key, parts)`: store bytes under a name unless something is
  already there (objects, sealed segments, leases). Never visible partly
  under its final name: a reader sees all of it or nothing (W1).
- `replace(key, data)`: set a small file whole, atomically (snapshots,
  tables, markers): a reader sees the old bytes or the new, never a mix.
- `read(key)`, `read_range(key, start, end)`: whole or part of one key.
- `head(key)`, `list(prefix)`: what is there, with sizes and times.
- `delete(key)`: forget one key; absent is not an error.
- `appender(key)`: start a new key and extend it in place, only where the
  medium can (`can_append`): local files. An object store cannot append; its writers
  seal each segment as a new `put_once` object instead.
- `lock(name)`: an exclusive lock between processes, only where the medium
  has one (`can_lock`): local files. An object store has none; maintenance
  there takes a lease with `put_once` instead (docs/remote.md).

Keys are relative names with `/` between parts ("objects/ab/cdef...",
"log/w1-000001.seg"): `check_key` refuses anything else, so no key read
from a listing can name a place outside the medium.

Implementations: `marimo_store._media.local.LocalMedium` (the local file
system, through `_fs`, which stays the fault-injection point) and
`marimo_store._media.object_store.ObjectStoreMedium` (obstore: S3, GCS,
Azure, a local directory or memory). `tests/media/` runs one contract suite
against every implementation, a real S3-compatible server included.

Every failure of the medium is a `MediumError` (a `StoreIOError`); an
absent key is `MediumMissing`; a `put_once` that finds the key taken
returns False rather than raising, an `appender` raises `MediumExists`.
The OS or client error is the `__cause__` (and an OS error's `errno` is
kept), so a caller can tell a full disk from a refused request.
"""

from __future__ import annotations

from marimo_store._errors import InvalidArgumentError, StoreIOError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from contextlib import AbstractContextManager
    from typing import Protocol

    from marimo_store._hashing import Buffer
else:
    Protocol = object  # `typing` costs import time on every `import marimo_store`


class MediumError(StoreIOError):
    """The medium failed an operation (a disk error, a server error, a timeout)."""


class MediumMissing(MediumError):  # noqa: N818 - reads as "the medium is missing the key"
    """The key is not in the medium (never written, or deleted)."""


class MediumExists(MediumError):  # noqa: N818 - reads as "the medium already has the key"
    """A key that must be new is taken (`Medium.appender`)."""


class KeyInfo:
    """One key as the medium lists it: its name, size in bytes and last change."""

    __slots__ = ("key", "modified_ns", "size")

    def __init__(self, key: str, size: int, modified_ns: int) -> None:
        self.key = key
        self.size = size
        self.modified_ns = modified_ns

    def __repr__(self) -> str:
        return f"KeyInfo({self.key!r}, size={self.size}, modified_ns={self.modified_ns})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyInfo):
            return NotImplemented
        return (self.key, self.size, self.modified_ns) == (other.key, other.size, other.modified_ns)

    def __hash__(self) -> int:
        return hash((self.key, self.size, self.modified_ns))


class Appender(Protocol):
    """A key being extended in place by its one writer (`Medium.appender`)."""

    def append(self, data: Buffer) -> None:
        """Add `data` at the end; durable once `sync` returns."""

    def sync(self) -> None:
        """Make everything appended so far durable."""

    def close(self) -> None:
        """Stop appending; what was synced stays."""


class Medium(Protocol):
    """Where a store's files live: the operations of the module docstring."""

    can_append: bool
    """`appender` works: records can be added to an existing key."""
    can_lock: bool
    """`lock` works: processes can exclude each other."""

    def put_once(self, key: str, parts: Iterable[Buffer]) -> bool:
        """Store the concatenated `parts` under `key` unless it exists.

        True if this call stored them, False if the key was already there
        (its bytes are left as they are: for a content-addressed key, they
        are the same bytes). Nothing is visible under `key` until all of it
        is: a failure leaves the key absent, never partly written.
        """

    def replace(self, key: str, data: Buffer) -> None:
        """Set `key` to `data` whole, atomically, whether or not it exists."""

    def read(self, key: str) -> bytes:
        """All bytes of `key`; `MediumMissing` if absent."""

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` (exclusive) of `key`, fewer at its end."""

    def head(self, key: str) -> KeyInfo | None:
        """Size and last change of `key`, or None if absent."""

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        """Every key under `prefix` (a directory-like name ending in `/`, or "")."""

    def delete(self, key: str) -> None:
        """Forget `key`; a key already absent is not an error."""

    def appender(self, key: str) -> Appender:
        """Create `key` to extend in place, by this writer only.

        `MediumExists` if the key is already there (a leftover or a copy: one
        writer never appends to another's file); `NotSupportedError` if not
        `can_append`.
        """

    def lock(self, name: str) -> AbstractContextManager[None]:
        """Hold an exclusive lock named `name` (a key) for the `with` block.

        `MediumError` when another process holds it past the medium's
        timeout; `NotSupportedError` if not `can_lock`.
        """


_KEY_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_key(key: str, *, prefix: bool = False) -> str:
    """Return `key` if it is a safe relative name, else raise `InvalidArgumentError`.

    Safe: parts of letters, digits, `.`, `_`, `-` joined by `/`, no part
    empty, `.` or `..`. Such a key cannot leave the medium's root on any
    file system, whatever a hostile listing holds. With `prefix`, the empty
    string and a trailing `/` are allowed too (a listing prefix).
    """
    if prefix and key == "":
        return key
    body = key[:-1] if prefix and key.endswith("/") else key
    parts = body.split("/")
    for part in parts:
        if part in ("", ".", "..") or not set(part) <= _KEY_CHARACTERS:
            raise InvalidArgumentError(f"not a valid storage key: {key!r}")
    return key
