"""The in-memory index of live entries, merged from every writer.

Two writers may store different contents under one key (a nondeterministic
computation finishing in the same millisecond on two machines). Every
reader must then pick the same winner whatever order it read the records
in, so the rule is a total order on the entries themselves: larger total
content size, then larger canonical encoding.
"""

from __future__ import annotations

from collections.abc import Iterator

from marimo_store._entry import ExecutionKey
from marimo_store._records import StoredEntry


def _rank(entry: StoredEntry) -> tuple[int, int, bytes]:
    encoding = entry.canonical_bytes()
    return entry.metadata.content_size, len(encoding), encoding


def winner(a: StoredEntry, b: StoredEntry) -> StoredEntry:
    """The entry every reader keeps when `a` and `b` share a key."""
    if a.metadata == b.metadata:
        return a
    return a if _rank(a) >= _rank(b) else b


class EntryIndex:
    """Entries by computation `(block_id, module_hash)`, then by `created_at`."""

    def __init__(self) -> None:
        self._by_computation: dict[tuple[str, str], dict[int, StoredEntry]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[StoredEntry]:
        for runs in self._by_computation.values():
            yield from runs.values()

    def add(self, entry: StoredEntry) -> None:
        """Insert an entry; on a key clash keep the deterministic winner."""
        key = entry.metadata.key
        runs = self._by_computation.setdefault((key.block_id, key.module_hash), {})
        created_at = entry.metadata.created_at
        present = runs.get(created_at)
        if present is None:
            runs[created_at] = entry
            self._count += 1
        else:
            runs[created_at] = winner(present, entry)

    def exact(self, key: ExecutionKey) -> StoredEntry | None:
        """The entry stored under exactly `key` (which must have `created_at`)."""
        runs = self._by_computation.get((key.block_id, key.module_hash))
        return None if runs is None or key.created_at is None else runs.get(key.created_at)

    def runs(self, key: ExecutionKey, *, exact: bool) -> list[StoredEntry]:
        """Candidate runs for `key`, newest first.

        `exact`: only the run at `key.created_at`. Otherwise every run at or
        before `key.created_at` (all runs when it is None).
        """
        if exact:
            found = self.exact(key)
            return [] if found is None else [found]
        runs = self._by_computation.get((key.block_id, key.module_hash))
        if not runs:
            return []
        limit = key.created_at
        return [
            runs[created_at]
            for created_at in sorted(runs, reverse=True)
            if limit is None or created_at <= limit
        ]
