"""`TieredStore`: a fast store in front of a slower one, as one store.

`TieredStore([MemoryStore("2GB"), FsPersistentStore("shared/dir")])`:

- writes go to every tier, the slowest first (it assigns `created_at`, and
  a failed write there leaves nothing in the faster ones): nothing is ever
  kept in memory only;
- a read picks the run from the metadata of all tiers (the newest that any
  tier holds, at or before `created_at`), then loads it from the fastest
  tier that holds it, and copies it into the faster tiers that did not
  (fill on hit). So a newer version saved through the slow tier by another
  process is found, and a value read once is read from memory after that.

It pickles as its tiers, with every `MemoryStore` replaced by an empty one
of the same size: a worker gets its own memory tier in front of the same
persistent ones.
"""

from __future__ import annotations

import warnings

from marimo_store._entry import Entry, EntryMetadata, ExecutionKey, check_lookup_key
from marimo_store._errors import InvalidArgumentError, NotFoundError, StoreError, StoreWarning
from marimo_store._named import NamedObjects, missing_store_methods
from marimo_store._versions import check_policy, check_versions
from marimo_store.memory import MemoryStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any

    from marimo_store._protocol import Store
    from marimo_store._versions import VersionPolicy


def fill_copy(entry: Entry, metadata: EntryMetadata) -> Entry:
    """A hit from a slower tier as the entry to put into a faster one, its
    run pinned: JSON values stay JSON, anything else is pickled."""
    refs = [ref for refs in metadata.contents.values() for ref in refs.values()]
    as_json = bool(refs) and all(ref.format == "json" for ref in refs)
    return Entry(entry.key, entry.contents, entry.user_metadata, "json" if as_json else "pickle")


class _EmptyMemoryTier:
    """Stands for a `MemoryStore` tier in a pickled `TieredStore`: unpickles
    as a new, empty one of the same size (a `MemoryStore` itself refuses to
    be pickled)."""

    __slots__ = ("max_bytes",)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def __reduce__(self) -> tuple[Any, ...]:
        return (MemoryStore, (self.max_bytes,))


def _shippable(tier: Store) -> object:
    return _EmptyMemoryTier(tier.max_bytes) if isinstance(tier, MemoryStore) else tier


class TieredStore(NamedObjects):
    """Stores tried in order for reads, all written to (see the module docstring).

    `tiers`: fastest first, e.g. `[MemoryStore(...), FsPersistentStore(...)]`.
    """

    def __init__(self, tiers: Sequence[Store]) -> None:
        tiers = tuple(tiers)
        if not tiers:
            raise InvalidArgumentError("TieredStore needs at least one tier")
        for tier in tiers:
            missing = missing_store_methods(tier)
            if missing:
                raise InvalidArgumentError(
                    f"{tier!r} cannot be a tier of a TieredStore: it has no {', '.join(missing)}"
                )
        self.tiers: tuple[Store, ...] = tiers

    def __reduce__(self) -> tuple[Any, ...]:
        return (TieredStore, (tuple(map(_shippable, self.tiers)),))

    def __repr__(self) -> str:
        return f"TieredStore([{', '.join(map(repr, self.tiers))}])"

    # -- writing -------------------------------------------------------------------

    def put(self, entry: Entry) -> EntryMetadata:
        """Store an entry in every tier, the slowest first; return its metadata there."""
        if not isinstance(entry, Entry):
            raise InvalidArgumentError(f"put() takes an Entry, got {type(entry).__name__}")
        metadata = self.tiers[-1].put(entry)
        if len(self.tiers) > 1:
            pinned = Entry(metadata.key, entry.contents, entry.user_metadata, entry.format)
            for tier in reversed(self.tiers[:-1]):
                tier.put(pinned)
        return metadata

    def delete_entries(self, keys: Iterable[ExecutionKey]) -> int:
        """Delete entries from every tier; return how many runs the tier that
        held the most had."""
        keys = list(keys)
        return max(tier.delete_entries(keys) for tier in self.tiers)

    # -- reading -------------------------------------------------------------------

    def _runs(self, key: ExecutionKey, *, exact: bool) -> list[tuple[EntryMetadata, list[int]]]:
        """The runs any tier holds for `key`, newest first, each with the
        indexes of the tiers holding it (fastest first). The metadata is the
        slowest holder's: what `put` returned, describing the lasting copy."""
        check_lookup_key(key, exact)
        found: dict[int, tuple[EntryMetadata, list[int]]] = {}
        for index in reversed(range(len(self.tiers))):
            for metadata in self.tiers[index].history(key):
                if not exact or metadata.created_at == key.created_at:
                    found.setdefault(metadata.created_at, (metadata, []))[1].insert(0, index)
        return [found[created_at] for created_at in sorted(found, reverse=True)]

    def get(
        self,
        key: ExecutionKey,
        exact_match_created_at: bool = False,
        *,
        version_policy: VersionPolicy = "warn",
    ) -> Entry | None:
        """The entry for `key` from the fastest tier that holds it, or None.

        `key.created_at` and `version_policy` as in `FsPersistentStore.get`;
        faster tiers that lacked the run receive a copy.
        """
        check_policy(version_policy)
        for metadata, holders in self._runs(key, exact=exact_match_created_at):
            check_versions(metadata, version_policy, stacklevel=2)
            for index in holders:
                entry = self.tiers[index].get(
                    metadata.key, exact_match_created_at=True, version_policy="ignore"
                )
                if entry is not None:
                    self._fill(self.tiers[:index], entry, metadata)
                    return entry
        return None

    def _fill(self, faster: Sequence[Store], entry: Entry, metadata: EntryMetadata) -> None:
        """Copy a hit into the faster tiers; a tier that refuses costs a warning."""
        if not faster:
            return
        copy = fill_copy(entry, metadata)
        for tier in faster:
            try:
                tier.put(copy)
            except StoreError as error:
                warnings.warn(
                    f"marimo_store: could not copy {entry.key} into {tier!r}: {error}",
                    StoreWarning,
                    stacklevel=4,
                )

    def load_variable(self, key: ExecutionKey, name: str, *, kind: str = "variables") -> Any:
        """One variable of the newest run of `key`, from the fastest tier holding it."""
        for metadata, holders in self._runs(key, exact=False):
            for index in holders:
                try:
                    return self.tiers[index].load_variable(metadata.key, name, kind=kind)
                except NotFoundError:
                    continue
        raise NotFoundError(f"no loadable entry for {key}")

    def history(self, key: ExecutionKey) -> list[EntryMetadata]:
        """Metadata of the runs any tier holds, newest first (as `FsPersistentStore.history`)."""
        return [metadata for metadata, _ in self._runs(key, exact=False)]

    def entries(self) -> list[EntryMetadata]:
        """Metadata of every entry of any tier, oldest first (the slowest
        holder's metadata where several hold one)."""
        merged: dict[ExecutionKey, EntryMetadata] = {}
        for tier in reversed(self.tiers):
            for metadata in tier.entries():
                merged.setdefault(metadata.key, metadata)
        return sorted(
            merged.values(), key=lambda metadata: (metadata.created_at, metadata.key.block_id)
        )

    def __len__(self) -> int:
        return len(self.entries())

    def __iter__(self) -> Iterator[EntryMetadata]:
        return iter(self.entries())

    # -- lifecycle -----------------------------------------------------------------

    def refresh(self) -> None:
        """Catch every tier up with other writers."""
        for tier in self.tiers:
            tier.refresh()

    def close(self) -> None:
        """Close every tier."""
        for tier in self.tiers:
            tier.close()
