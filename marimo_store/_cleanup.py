"""Cleanup strategies: which entries a cleanup drops, and why.

A strategy is a pure function of the entries' metadata (and the time), so
it can be tested without a store, run in `dry_run` mode, and reasoned about
by users: every dropped key comes with the reason the report shows.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from marimo_store._entry import EntryMetadata, ExecutionKey
from marimo_store._errors import ConfigError

_DAY_MS = 86_400_000
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?)b?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


class CleanupStrategy(Protocol):
    """Decides which entries a cleanup drops.

    Called with the metadata of every live entry (sizes, formats, creation
    and last-access times; nothing unpickled) and the current time in ms.
    Returns the keys to drop, each with a short human-readable reason.
    """

    def __call__(
        self, entries: Collection[EntryMetadata], now_ms: int
    ) -> Mapping[ExecutionKey, str]: ...


def parse_size(value: int | str | None, *, name: str) -> int | None:
    """Bytes from an int or a string such as `"10GB"`, `"512 MiB"`, `"1.5g"`.

    Decimal units (kB, MB, GB) are powers of 1000, binary ones (KiB, MiB,
    GiB) powers of 1024, as on disk-usage tools.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0 bytes, got {value}")
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(
            f"{name} must be a number of bytes or a size such as '500MB' or '10GiB', got {value!r}"
        )
    number, prefix, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** _POWERS[prefix.lower()])


def _check_count(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1 or None (no limit), got {value!r}")
    return value


def _check_days(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number of days > 0 or None, got {value!r}")
    return float(value)


def last_used(entry: EntryMetadata) -> int:
    """When an entry was last written or read (ms): the recency LRU goes by."""
    return max(entry.created_at, entry.last_access or 0)


@dataclass(frozen=True)
class DefaultCleanupStrategy:
    """Keep what is likely to be used again, within count, age and size limits.

    - the newest `max_entries_per_module` runs of each computation
      `(block_id, module_hash)`, and the newest `max_entries_per_block`
      entries of each block (older runs of edited code go first);
    - entries not used (written or read) for `max_entry_age_days`;
    - above `max_total_content_size` (bytes or a string like `"10GB"`;
      objects shared by several entries count once), the least recently
      used entries go first, an entry that is the newest of its block only
      after every entry that is not.
    `None` switches a rule off.
    """

    max_entries_per_block: int | None = 3
    max_entries_per_module: int | None = 2
    max_entry_age_days: float | None = None
    max_total_content_size: int | str | None = None
    _size_limit: int | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        _check_count(self.max_entries_per_block, "max_entries_per_block")
        _check_count(self.max_entries_per_module, "max_entries_per_module")
        _check_days(self.max_entry_age_days, "max_entry_age_days")
        limit = parse_size(self.max_total_content_size, name="max_total_content_size")
        object.__setattr__(self, "_size_limit", limit)

    def __call__(
        self, entries: Collection[EntryMetadata], now_ms: int
    ) -> Mapping[ExecutionKey, str]:
        drop: dict[ExecutionKey, str] = {}
        self._keep_newest(entries, drop)
        if self.max_entry_age_days is not None:
            horizon = now_ms - int(self.max_entry_age_days * _DAY_MS)
            for entry in entries:
                if entry.key not in drop and last_used(entry) < horizon:
                    drop[entry.key] = f"unused for more than {self.max_entry_age_days:g} days"
        if self._size_limit is not None:
            kept = [entry for entry in entries if entry.key not in drop]
            for key in _evict_to_fit(kept, self._size_limit):
                drop[key] = f"total content above {self._size_limit} bytes (least recently used)"
        return drop

    def _keep_newest(self, entries: Iterable[EntryMetadata], drop: dict[ExecutionKey, str]) -> None:
        rules = (
            (self.max_entries_per_module, lambda k: (k.block_id, k.module_hash), "computation"),
            (self.max_entries_per_block, lambda k: (k.block_id, ""), "block"),
        )
        for limit, group_of, noun in rules:
            if limit is None:
                continue
            groups: dict[tuple[str, str], list[EntryMetadata]] = defaultdict(list)
            for entry in entries:
                if entry.key not in drop:
                    groups[group_of(entry.key)].append(entry)
            for members in groups.values():
                members.sort(key=lambda e: (e.created_at, e.key.module_hash), reverse=True)
                for entry in members[limit:]:
                    drop[entry.key] = f"older than the newest {limit} entries of its {noun}"


def _evict_to_fit(entries: list[EntryMetadata], limit: int) -> list[ExecutionKey]:
    """Keys to evict, least recently used first, until the rest fits `limit`."""
    references: dict[str, int] = defaultdict(int)
    sizes: dict[str, int] = {}
    for entry in entries:
        for object_id, ref in entry.objects().items():
            references[object_id] += 1
            sizes[object_id] = ref.size
    total = sum(sizes.values())
    if total <= limit:
        return []
    newest_of_block: dict[str, EntryMetadata] = {}
    for entry in entries:
        best = newest_of_block.get(entry.key.block_id)
        if best is None or entry.created_at > best.created_at:
            newest_of_block[entry.key.block_id] = entry
    order = sorted(
        entries,
        key=lambda e: (newest_of_block[e.key.block_id] is e, last_used(e), e.created_at),
    )
    evicted: list[ExecutionKey] = []
    for entry in order:
        if total <= limit:
            break
        evicted.append(entry.key)
        for object_id in entry.objects():
            references[object_id] -= 1
            if references[object_id] == 0:
                total -= sizes[object_id]
    return evicted
