"""`MemoryStore`: entries kept in this process, within a byte budget.

The fast tier of a `TieredStore`, or a store for tests and short scripts.
Values are kept *serialized* (pickle protocol 5, large buffers as separate
byte strings), like on disk: `get` returns a fresh value (large numpy
buffers come back as read-only arrays over the stored bytes, without a
copy), so a caller that mutates what it got or what it put cannot change
the stored value, and `max_bytes` counts real bytes. Equal objects are held
once. When the budget is exceeded, the least recently used entries go
first; an entry larger than the whole budget is not kept at all.

It cannot be pickled: its contents live in one process. To ship a store to
workers, use an `FsPersistentStore` on a directory they all see.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import partial
from types import MappingProxyType

from marimo_store._cleanup import parse_size
from marimo_store._entry import (
    Entry,
    EntryMetadata,
    ExecutionKey,
    ObjectRef,
    check_keys,
    check_lookup_key,
    now_ms,
)
from marimo_store._environment import current_environment
from marimo_store._errors import (
    ExecutionKeyClash,
    InvalidArgumentError,
    NotFoundError,
)
from marimo_store._format.records import check_user_metadata, same_contents
from marimo_store._hashing import content_digest
from marimo_store._index import newest_first
from marimo_store._named import NamedObjects
from marimo_store._serialize import (
    MISSING,
    SerializedValue,
    deserialize,
    load_contents,
    serialize_contents,
    store_contents,
    unloadable,
)
from marimo_store._versions import check_policy, check_versions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Any, NoReturn

    from marimo_store._versions import VersionPolicy


class MemoryStore(NamedObjects):
    """An in-process store of at most `max_bytes` serialized bytes (LRU).

    `max_bytes`: an int or a size such as `"512MB"` or `"2GiB"`. The same
    `put`, `get`, `load_variable`, `history`, `entries`, `delete_entries`
    and named objects as `FsPersistentStore`; no cleanup (eviction is
    continuous) and no pickling (`TypeError`).
    """

    def __init__(self, max_bytes: int | str = "1GiB") -> None:
        budget = parse_size(max_bytes, name="max_bytes")
        if budget is None:
            raise InvalidArgumentError("max_bytes must be a number of bytes, got None")
        self.max_bytes = budget
        self._lock = threading.RLock()
        self._objects: dict[str, bytes] = {}
        self._users: dict[str, int] = {}
        self._runs: dict[tuple[str, str], dict[int, EntryMetadata]] = {}
        self._recency: OrderedDict[ExecutionKey, None] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Serialized bytes held now (objects shared by entries counted once)."""
        return self._bytes

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(
            "a MemoryStore cannot be pickled: its entries live in this process only. "
            "To share a store with workers or other processes, use an FsPersistentStore "
            "on a directory they all see (or a TieredStore([MemoryStore(), "
            "FsPersistentStore(...)]), which pickles with an empty memory tier)."
        )

    def __repr__(self) -> str:
        return (
            f"MemoryStore(max_bytes={self.max_bytes}): {len(self._recency)} entries, "
            f"{self._bytes} bytes"
        )

    # -- writing -------------------------------------------------------------------

    def put(self, entry: Entry) -> EntryMetadata:
        """Keep an entry; return its metadata (with `created_at` filled in).

        As `FsPersistentStore.put`: the same key and contents again is a
        no-op, the same pinned key with other contents raises
        `ExecutionKeyClash`.
        """
        if not isinstance(entry, Entry):
            raise InvalidArgumentError(f"put() takes an Entry, got {type(entry).__name__}")
        user_metadata = check_user_metadata(entry.user_metadata)
        serialized = serialize_contents(entry.contents, entry.format, cloudpickle_fallback=True)
        held: dict[str, bytes] = {}

        def hold(value: SerializedValue) -> ObjectRef:
            buffers = tuple(
                ObjectRef(_keep(bytes(buffer), held), buffer.nbytes, "buffer")
                for buffer in value.buffers
            )
            stream = bytes(value.stream)
            return ObjectRef(_keep(stream, held), len(stream), value.format, buffers)

        contents, modules = store_contents(serialized, hold)
        environment = current_environment(modules)
        with self._lock:
            key, present = self._pin(entry.key, contents)
            if present is not None:
                return present
            metadata = EntryMetadata(key, MappingProxyType(contents), environment, user_metadata)
            if metadata.content_size <= self.max_bytes:
                self._insert(metadata, held)
                self._evict()
        return metadata

    def _pin(
        self, key: ExecutionKey, contents: Mapping[str, Mapping[str, ObjectRef]]
    ) -> tuple[ExecutionKey, EntryMetadata | None]:
        """The run `key` is put as, and the entry already there if it is equal."""
        runs = self._runs.get((key.block_id, key.module_hash), {})
        created_at = now_ms() if key.created_at is None else key.created_at
        while True:
            present = runs.get(created_at)
            if present is None:
                return key.at(created_at), None
            if same_contents(present.contents, contents):
                return present.key, present
            if key.created_at is not None:
                raise ExecutionKeyClash(f"{key} is already stored with different contents")
            created_at += 1  # another run took this millisecond

    def _insert(self, metadata: EntryMetadata, held: Mapping[str, bytes]) -> None:
        for object_id in metadata.objects():
            if object_id not in self._objects:
                self._objects[object_id] = held[object_id]
                self._bytes += len(held[object_id])
            self._users[object_id] = self._users.get(object_id, 0) + 1
        key = metadata.key
        self._runs.setdefault((key.block_id, key.module_hash), {})[metadata.created_at] = metadata
        self._recency[key] = None

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._recency:
            oldest = next(iter(self._recency))
            self._remove(oldest)

    def _remove(self, key: ExecutionKey) -> None:
        computation = (key.block_id, key.module_hash)
        runs = self._runs[computation]
        assert key.created_at is not None  # held keys are pinned
        metadata = runs.pop(key.created_at)
        if not runs:
            del self._runs[computation]
        del self._recency[key]
        for object_id in metadata.objects():
            self._users[object_id] -= 1
            if not self._users[object_id]:
                del self._users[object_id]
                self._bytes -= len(self._objects.pop(object_id))

    def delete_entries(self, keys: Iterable[ExecutionKey]) -> int:
        """Forget entries: one run, or every run of a key without `created_at`."""
        keys = check_keys(keys, "delete_entries")
        with self._lock:
            runs = {
                metadata.key: None
                for key in keys
                for metadata in self._candidates(key, exact=key.created_at is not None)
            }
            for run in runs:
                self._remove(run)
        return len(runs)

    # -- reading -------------------------------------------------------------------

    def get(
        self,
        key: ExecutionKey,
        exact_match_created_at: bool = False,
        *,
        version_policy: VersionPolicy = "warn",
    ) -> Entry | None:
        """The entry for `key` with fresh values, or None; as `FsPersistentStore.get`."""
        check_policy(version_policy)
        with self._lock:
            candidates = self._candidates(key, exact=exact_match_created_at)
        for metadata in candidates:
            check_versions(metadata, version_policy, stacklevel=2)
            contents = load_contents(metadata.contents, partial(self._load, metadata))
            if contents is not None:
                return Entry._trusted(metadata.key, contents, metadata.user_metadata, metadata)
        return None

    def load_variable(self, key: ExecutionKey, name: str, *, kind: str = "variables") -> Any:
        """One variable of the newest run of `key` (`NotFoundError` if absent)."""
        for metadata in self.history(key):
            ref = metadata.contents.get(kind, {}).get(name)
            if ref is None:
                raise NotFoundError(f"entry {metadata.key} has no {kind} {name!r}")
            value = self._load(metadata, ref)
            if value is not MISSING:
                return value
        raise NotFoundError(f"no loadable entry for {key}")

    def _load(self, metadata: EntryMetadata, ref: ObjectRef) -> Any:
        with self._lock:
            if metadata.key not in self._recency:
                return MISSING  # evicted or deleted since it was looked up
            self._recency.move_to_end(metadata.key)
            stream = self._objects[ref.id]
            # Private copies: a hit returns writable arrays, as the miss did,
            # and writing into them never changes what the store holds.
            buffers = [bytearray(self._objects[buffer.id]) for buffer in ref.buffers]
        try:
            return deserialize(ref.format, stream, buffers)
        except Exception as error:  # a value that no longer loads is a miss, not a crash
            return unloadable(error, metadata.key, where=" (memory)", stacklevel=4)

    def history(self, key: ExecutionKey) -> list[EntryMetadata]:
        """Metadata of the held runs of `key`'s computation at or before
        `key.created_at` (all when None), newest first."""
        with self._lock:
            return self._candidates(key, exact=False)

    def _candidates(self, key: ExecutionKey, *, exact: bool) -> list[EntryMetadata]:
        check_lookup_key(key, exact)
        runs = self._runs.get((key.block_id, key.module_hash), {})
        if not exact:
            return newest_first(runs, key.created_at)
        found = None if key.created_at is None else runs.get(key.created_at)
        return [] if found is None else [found]

    def entries(self) -> list[EntryMetadata]:
        """Metadata of every held entry, oldest first."""
        with self._lock:
            held = [metadata for runs in self._runs.values() for metadata in runs.values()]
        return sorted(held, key=lambda metadata: (metadata.created_at, metadata.key.block_id))

    def __len__(self) -> int:
        return len(self._recency)

    def __iter__(self) -> Iterator[EntryMetadata]:
        return iter(self.entries())

    # -- lifecycle -----------------------------------------------------------------

    def refresh(self) -> None:
        """Nothing to catch up with: no other process writes here."""

    def close(self) -> None:
        """Nothing to close; the entries stay."""


def _keep(data: bytes, held: dict[str, bytes]) -> str:
    """Add `data` to the objects an entry brings; its content id."""
    object_id = content_digest(data).hex()
    held[object_id] = data
    return object_id
