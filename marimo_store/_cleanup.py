"""Cleanup strategies: which entries a cleanup drops, and why.

A strategy is a pure function of the entries' metadata (and the time), so
it can be tested without a store, run in `dry_run` mode, and reasoned about
by users: every dropped key comes with the reason the report shows.

Implements M3, M5, M7 (docs/format.md §14).
"""

from __future__ import annotations

import functools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

from marimo_store import _fs
from marimo_store._entry import CALL_METADATA_KEY, EXPIRE, EntryMetadata, ExecutionKey
from marimo_store._errors import ConfigError
from marimo_store._format.layout import scan_real_directory
from marimo_store._format.objects import ObjectNames
from marimo_store._format.segments import writer_of, writer_of_file
from marimo_store._log import is_sealed, newest_segments, writer_is_gone, writer_is_local
from marimo_store._retired import is_retired, remove
from marimo_store._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

    from marimo_store._log import SegmentState

_DAY_MS = 86_400_000
_DROP_SLACK_NS = 1_000_000_000
"""File times within a second after a drop still count as before it: file
system timestamps can run slightly ahead of the clock that stamped the
drop. Puts in flight here are kept by the objects lock, not by this."""
_STALE_TEMP_SECONDS = 86_400
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


def collect_garbage(
    objects_dir: str,
    referenced: Collection[str],
    dropped: Mapping[str, int],
    grace_seconds: float,
    report: CleanupReport,
    *,
    retire: bool,
    temp_path: Callable[[], str],
) -> None:
    """Delete (`retire`: retire, see `_retired.py`) the objects no live
    entry references, by the rule of docs/format.md §10.7.

    Called under the exclusive objects lock, after re-reading the log: a put
    holds the shared lock from writing (or reusing) its objects until its
    record is appended, so no put is in flight here and every finished one
    is in `referenced`. What is left unreferenced is of two kinds:

    - `dropped` (object id -> when its last referencing entry was dropped,
      ms): objects of entries this store knew and dropped. They go at once,
      unless the file was written, touched by a deduplicating put or
      delivered by a sync tool after the drop: then somebody may use it
      again, and it waits like an unknown one.
    - unknown objects: maybe another machine's put whose log has not arrived
      yet (sync tools can deliver `objects/` before `log/`, and `rsync -a`
      keeps old mtimes). They go only once `grace_seconds` passed since this
      machine first saw them: by mtime *and* ctime, which a delivery sets.

    Each file is stat'ed again right before it is deleted and spared if it
    changed. What is spared is counted in the report, with the reason.
    """
    grace_ns = int(grace_seconds * 1e9)
    young = _Spared()
    for path, object_id in ObjectNames(objects_dir).stored():
        if object_id in referenced:
            continue
        try:
            seen = os.stat(path)
            seen_ns = max(seen.st_mtime_ns, seen.st_ctime_ns)
            dropped_at = dropped.get(object_id)
            unused_since_drop = (
                dropped_at is not None and seen_ns < dropped_at * 1_000_000 + _DROP_SLACK_NS
            )
            if not unused_since_drop and time.time_ns() - seen_ns < grace_ns:
                young.add(seen.st_size)
                continue
            if is_retired(path, seen.st_size):
                continue
            now = os.stat(path)
        except FileNotFoundError:
            continue
        if (now.st_ino, now.st_size, now.st_mtime_ns, now.st_ctime_ns) != (
            seen.st_ino,
            seen.st_size,
            seen.st_mtime_ns,
            seen.st_ctime_ns,
        ):
            continue
        remove(path, retire=retire, temp_path=temp_path)
        report.objects_deleted += 1
        report.bytes_freed += seen.st_size
    if young.count:
        report.objects_spared += young.count
        report.bytes_spared += young.size
        report.spared.append(
            f"{young.count} objects ({young.size} bytes) that no entry known here references, "
            f"first seen here less than object_grace_seconds ({grace_seconds:g} s) ago: they may "
            "belong to another machine's entries whose log has not arrived yet"
        )


class _Spared:
    """A count of spared objects and their bytes."""

    __slots__ = ("count", "size")

    def __init__(self) -> None:
        self.count = 0
        self.size = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.size += size


def delete_consumed_segments(
    log_dir: str,
    segments: Mapping[str, SegmentState],
    report: CleanupReport,
    *,
    retire: bool,
    temp_path: Callable[[], str],
) -> None:
    """Delete segments that are sealed and whose every readable byte a snapshot holds.

    Sealed means no more appends can come: the writer closed it, moved on
    to a later segment, or (on this host) its process is gone. A sealed
    segment of this host is final as it stands, so a torn tail (a write cut
    short by a crash or a full disk) does not keep it alive; one of another
    host may still be arriving through a sync tool, so it goes only once
    every byte was read and it is at least as long as what a snapshot
    already holds of it (a shorter copy is still arriving, or is an old copy
    the newer one will replace). A file named after a dead writer of this
    host that never got its header (the writer died creating it) goes too.
    `retire`: retire them instead (a store in git, see `_retired.py`).
    """
    newest = newest_segments(state.segment_id for state in segments.values() if state.segment_id)
    for name, state in segments.items():
        if not state.segment_id:
            owner = writer_of_file(name)
            path = os.path.join(log_dir, name)
            if owner is not None and writer_is_gone(owner) and not is_retired(path, state.size):
                remove(path, retire=retire, temp_path=temp_path)
                report.segments_deleted += 1
            continue
        if not is_sealed(state.segment_id, state.closed, newest):
            continue
        local = writer_is_local(writer_of(state.segment_id)[0])
        if (state.offset < state.size or state.behind) and not local:
            continue  # another host's segment still arriving: the rest may follow
        path = os.path.join(log_dir, name)
        try:
            if os.stat(path).st_size != state.size:
                continue  # changed since it was read: keep it for the next cleanup
        except FileNotFoundError:
            continue
        remove(path, retire=retire, temp_path=temp_path)
        report.segments_deleted += 1


def stale_temp_files(tmp_dir: str) -> Iterator[tuple[str, str]]:
    """`(path, why)` of every temp file no writer will finish: its writer
    died (on this host), or it is more than a day old."""
    items = scan_real_directory(tmp_dir)
    horizon = time.time() - _STALE_TEMP_SECONDS
    for item in items:
        try:
            old = item.stat().st_mtime < horizon
        except FileNotFoundError:
            continue
        if not item.is_file():
            continue
        if old:
            yield item.path, "older than a day"
        elif writer_is_gone(item.name.rsplit("-", 1)[0]):
            yield item.path, "its writer is gone"


def delete_stale_temp_files(tmp_dir: str, report: CleanupReport) -> None:
    """Remove the temp files that `stale_temp_files` names."""
    for path, _ in stale_temp_files(tmp_dir):
        _fs.unlink(path)
        report.temp_files_deleted += 1
