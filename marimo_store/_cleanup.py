"""Cleanup strategies: which entries a cleanup drops, and why.

A strategy is a pure function of the entries' metadata (and the time), so
it can be tested without a store, run in `dry_run` mode, and reasoned about
by users: every dropped key comes with the reason the report shows.
`DroppedEntry` and `CleanupReport` say what was (or would be) dropped.
Deleting files is not done here: `_cleanup_files.py` deletes, when
`_compaction.py` executes a plan (`_cleanup_plan.py`).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping

from marimo_store._entry import CALL_METADATA_KEY, EXPIRE, EntryMetadata, ExecutionKey
from marimo_store._errors import ConfigError
from marimo_store._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re


_DAY_MS = 86_400_000
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


CleanupStrategy = Callable[[Collection[EntryMetadata], int], Mapping[ExecutionKey, str]]
"""Decides which entries a cleanup drops.

Called with the metadata of every live entry (sizes, formats, creation and
last-access times; nothing unpickled) and the current time in ms; returns
the keys to drop, each with a short human-readable reason.
"""


@functools.cache
def _size_pattern() -> re.Pattern[str]:
    import re  # noqa: PLC0415 - only configuration needs it

    return re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?)b?\s*$", re.IGNORECASE)


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
    match = _size_pattern().match(value) if isinstance(value, str) else None
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


_OLDER = "older than the newest {{limit}} entries of its {noun}"


def is_function_call(entry: EntryMetadata) -> bool:
    """Whether `persistent_cache` stored this entry (one call of a function)."""
    return CALL_METADATA_KEY in entry.user_metadata


def expiry_of(entry: EntryMetadata) -> int | None:
    """When a call stored with `persistent_cache(expire=...)` expires (ms), else None."""
    record = entry.user_metadata.get(CALL_METADATA_KEY)
    expire = record.get(EXPIRE) if isinstance(record, Mapping) else None
    if isinstance(expire, int) and not isinstance(expire, bool) and expire > 0:
        return entry.created_at + expire
    return None


def last_used(entry: EntryMetadata) -> int:
    """When an entry was last written or read (ms): the recency LRU goes by."""
    return max(entry.created_at, entry.last_access or 0)


class DefaultCleanupStrategy(Value):
    """Keep what is likely to be used again, within size, age and count limits.

    By default only the size limit is on (1 GB, as diskcache's): no result
    of a sweep that fits it is ever dropped. The count limits are opt-in.

    - the newest `max_entries_per_module` runs of each computation
      `(block_id, module_hash)`, and the newest `max_entries_per_block`
      entries of each block (older runs of edited code go first);
    - calls of a `persistent_cache` function are not runs of one block in
      time but results for different arguments, all valid together: for
      them the block rule gives way to `max_calls_per_function`, the most
      recently used calls of each function (one block) that are kept;
    - entries not used (written or read) for `max_entry_age_days`;
    - calls of a `persistent_cache(expire=...)` function older than that;
    - above `max_total_content_size` (bytes or a string like `"10GB"`;
      objects shared by several entries count once), the least recently
      used entries go first, an entry that is the newest of its block only
      after every entry that is not.
    `None` switches a rule off.
    """

    __slots__ = (
        "max_entries_per_block",
        "max_entries_per_module",
        "max_entry_age_days",
        "max_total_content_size",
        "max_calls_per_function",
    )
    max_entries_per_block: int | None
    max_entries_per_module: int | None
    max_entry_age_days: float | None
    max_total_content_size: int | str | None
    max_calls_per_function: int | None

    def __init__(
        self,
        max_entries_per_block: int | None = None,
        max_entries_per_module: int | None = None,
        max_entry_age_days: float | None = None,
        max_total_content_size: int | str | None = "1GB",
        max_calls_per_function: int | None = None,
    ) -> None:
        _check_count(max_entries_per_block, "max_entries_per_block")
        _check_count(max_entries_per_module, "max_entries_per_module")
        _check_days(max_entry_age_days, "max_entry_age_days")
        parse_size(max_total_content_size, name="max_total_content_size")
        _check_count(max_calls_per_function, "max_calls_per_function")
        self._assign(
            max_entries_per_block=max_entries_per_block,
            max_entries_per_module=max_entries_per_module,
            max_entry_age_days=max_entry_age_days,
            max_total_content_size=max_total_content_size,
            max_calls_per_function=max_calls_per_function,
        )

    def __call__(
        self, entries: Collection[EntryMetadata], now_ms: int
    ) -> Mapping[ExecutionKey, str]:
        drop: dict[ExecutionKey, str] = {}
        for entry in entries:
            expires = expiry_of(entry)
            if expires is not None and expires < now_ms:
                drop[entry.key] = "expired (its function's expire=)"
        self._keep_newest(entries, drop)
        if self.max_entry_age_days is not None:
            horizon = now_ms - int(self.max_entry_age_days * _DAY_MS)
            for entry in entries:
                if entry.key not in drop and last_used(entry) < horizon:
                    drop[entry.key] = f"unused for more than {self.max_entry_age_days:g} days"
        limit = parse_size(self.max_total_content_size, name="max_total_content_size")
        if limit is not None:
            kept = [entry for entry in entries if entry.key not in drop]
            for key in _evict_to_fit(kept, limit):
                drop[key] = f"total content above {limit} bytes (least recently used)"
        return drop

    def _keep_newest(self, entries: Iterable[EntryMetadata], drop: dict[ExecutionKey, str]) -> None:
        def newest(e: EntryMetadata) -> tuple[int, str]:
            return (e.created_at, e.key.module_hash)

        def recent(e: EntryMetadata) -> tuple[int, int, str]:
            return (last_used(e), e.created_at, e.key.module_hash)

        rules = (
            (self.max_entries_per_module, False, None, newest, _OLDER.format(noun="computation")),
            (self.max_entries_per_block, True, False, newest, _OLDER.format(noun="block")),
            (
                self.max_calls_per_function,
                True,
                True,
                recent,
                "not among the {limit} most recently used calls of its function",
            ),
        )
        for limit, by_block, calls, order, reason in rules:
            if limit is None:
                continue
            groups: dict[tuple[str, str], list[EntryMetadata]] = defaultdict(list)
            for entry in entries:
                if entry.key not in drop and (calls is None or is_function_call(entry) == calls):
                    key = entry.key
                    groups[(key.block_id, "" if by_block else key.module_hash)].append(entry)
            for members in groups.values():
                members.sort(key=order, reverse=True)
                for entry in members[limit:]:
                    drop[entry.key] = reason.format(limit=limit)


CLEARED = "cleared (clear())"


def drop_everything(entries: Collection[EntryMetadata], now_ms: int) -> Mapping[ExecutionKey, str]:
    """The strategy of `clear()`: every live entry goes."""
    return dict.fromkeys((entry.key for entry in entries), CLEARED)


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


class DroppedEntry(Value):
    """One entry a cleanup removed (or, in a dry run, would remove)."""

    __slots__ = ("key", "reason", "content_size")
    key: ExecutionKey
    reason: str
    content_size: int

    def __init__(self, key: ExecutionKey, reason: str, content_size: int) -> None:
        self._assign(key=key, reason=reason, content_size=content_size)


class CleanupReport:
    """What a cleanup did, or with `dry_run` would do.

    `dropped` lists every entry removed with its reason. `bytes_freed` and
    `objects_deleted` count object files deleted by object GC (only with
    `include_content`); `skipped` says what was not done and why (a busy
    lock, for instance), so a cleanup never fails silently; `spared` says
    which unreferenced objects object GC kept and why (`objects_spared` and
    `bytes_spared` count them).
    """

    __slots__ = (
        "bytes_freed",
        "bytes_spared",
        "dropped",
        "dry_run",
        "entries_kept",
        "objects_deleted",
        "objects_spared",
        "segments_deleted",
        "skipped",
        "spared",
        "snapshot",
        "snapshots_deleted",
        "temp_files_deleted",
    )

    def __init__(self, *, dry_run: bool = False) -> None:
        self.dry_run = dry_run
        self.dropped: list[DroppedEntry] = []
        self.entries_kept = 0
        self.snapshot: str | None = None
        self.snapshots_deleted = 0
        self.segments_deleted = 0
        self.temp_files_deleted = 0
        self.objects_deleted = 0
        self.bytes_freed = 0
        self.objects_spared = 0
        self.bytes_spared = 0
        self.skipped: list[str] = []
        self.spared: list[str] = []

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self.__slots__))
        return f"CleanupReport({fields})"
