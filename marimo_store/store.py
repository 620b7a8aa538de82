"""`FsPersistentStore`: the persistent, content-addressed execution cache.

A `put` serializes each variable into objects (deduplicated by content
hash), then appends one entry record to this instance's own log segment. A
`get` looks the key up in an in-memory index merged from every writer's
segments and loads the objects, verifying each one. No lock is taken on
either path: one writer per segment and write-once objects make them safe
for any number of processes, and a damaged or missing file is only a miss.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
import time
import warnings
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping
from types import MappingProxyType

from marimo_store import _fs
from marimo_store._cleanup import (
    CleanupReport,
    CleanupStrategy,
    DefaultCleanupStrategy,
    DroppedEntry,
    collect_garbage,
    delete_consumed_segments,
    delete_stale_temp_files,
    drop_everything,
)
from marimo_store._dangling import dangling_since, overdue
from marimo_store._entry import (
    Entry,
    EntryMetadata,
    Environment,
    ExecutionKey,
    ObjectRef,
    check_keys,
    check_lookup_key,
    now_ms,
)
from marimo_store._environment import current_environment, platform_tag, python_version
from marimo_store._errors import (
    ConfigError,
    ExecutionKeyClash,
    InvalidArgumentError,
    NotFoundError,
    StoreIOError,
    StoreWarning,
    UnreadableFiles,
)
from marimo_store._format.framing import pack
from marimo_store._format.layout import (
    SNAPSHOT_SUFFIX,
    Layout,
    check_store_directory,
    scan_real_directory,
)
from marimo_store._format.records import (
    ACCESS_TYPE,
    TOMBSTONE_TYPE,
    KeyRecord,
    StoredEntry,
    check_user_metadata,
    encode_access,
    encode_entry,
    encode_key_record,
    same_contents,
)
from marimo_store._format.segments import segment_header, writer_of
from marimo_store._hashing import content_digest, text_digest
from marimo_store._index import EntryIndex
from marimo_store._locks import LocalLock
from marimo_store._log import LogReader, SegmentWriter, new_writer_id, writer_is_local
from marimo_store._named import NamedObjects
from marimo_store._objects import ObjectDirectory
from marimo_store._retired import MAX_MARKER_BYTES, in_git_work_tree, remove
from marimo_store._serialize import (
    MISSING,
    SerializedValue,
    deserialize,
    serialize_contents,
    store_contents,
    unloadable,
)
from marimo_store._signing import load_signing_key, object_digest
from marimo_store._snapshot import (
    SnapshotSet,
    StoreState,
    encode_snapshot,
    merge,
    read_snapshots,
)
from marimo_store._trust import SignatureStatus, TrustPolicy, check_trust_options, needs_trust
from marimo_store._verified import VerifiedObjects, prune_ledgers
from marimo_store._versions import check_policy, check_versions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal, Protocol, TypeAlias

    from marimo_store._changes import ChangeNotifier
    from marimo_store._entry import StoredFormat
    from marimo_store._findings import Finding, VerifyReport
    from marimo_store._objects import MmapMode
    from marimo_store._trust import VerifyMode
    from marimo_store._verify import Progress
    from marimo_store._versions import VersionPolicy

    Durability: TypeAlias = Literal["flush", "fsync"]
    ObjectIdMode: TypeAlias = Literal["deduplication", "execution_key_qualified"]

    class _RecordTarget(Protocol):
        """Where log records are applied: the live index or a cleanup's state."""

        def add_entry(self, stored: StoredEntry) -> None: ...
        def add_tombstone(self, key: ExecutionKey, deleted_at: int) -> None: ...
        def add_access(self, key: ExecutionKey, accessed_at: int, hits: int = 0) -> None: ...


_DAY_MS = 86_400_000
_ACCESS_RECORD_INTERVAL_MS = 60_000
"""At most one access record per entry per minute per writer: recency for
LRU cleanup without a write on every hit."""
_TRIGGER_BACKOFF_SECONDS = 30.0
_WATCH_SAFETY_SECONDS = 5.0
"""With change notification, a miss still re-reads after this long: some
file systems (FUSE mounts, container volume mounts) fail to report changes."""
_MAX_ANCESTORS = 1000
MAX_INLINE_THRESHOLD = 1 << 20
"""Values kept inside log records stay small: a record holds every inline
value of its entry, and every reader of the log reads every record."""
_MAX_SEGMENTS_BEFORE_CLEANUP = 64

_CHOICES: dict[str, tuple[Any, ...]] = {
    "object_id_mode": ("deduplication", "execution_key_qualified"),
    "auto_variables_format": ("pickle", "json"),
    "durability": ("flush", "fsync"),
    "mmap_mode": ("c", "r"),
}


_reopened: weakref.WeakValueDictionary[tuple[Any, ...], FsPersistentStore] = (
    weakref.WeakValueDictionary()
)


def _reopen(cls: type[FsPersistentStore], config: dict[str, Any]) -> FsPersistentStore:
    """Unpickle a store: copies of one configuration are one instance per
    process (while it is alive), so a worker that receives the store with
    every task (and every handle) opens it once and writes one log segment,
    not one per task."""
    identity = (cls, *sorted(config.items(), key=lambda item: item[0]))
    try:
        store = _reopened.get(identity)
    except TypeError:  # an unhashable cleanup strategy: no sharing
        return cls(**config)
    if store is None:
        store = _reopened[identity] = cls(**config)
    return store


class _Writing:
    """What a store instance needs to write: created on the first put, and
    again after a fork, so that two processes never share a writer."""

    def __init__(self, store: FsPersistentStore) -> None:
        layout = store.layout
        self.pid = os.getpid()
        self.writer_id = new_writer_id()
        self._temp_dir = layout.tmp
        self._temp_counter = itertools.count()
        self.context = Environment(python_version(), platform_tag())
        self.objects = ObjectDirectory(
            layout.objects,
            quarantine_dir=layout.quarantine,
            quarantine_after_seconds=store.object_grace_seconds,
            temp_path=self.temp_path,
            durable=store.durability == "fsync",
            verify_reads=store.verify_reads,
            verified=store._verified,
        )
        self.header = segment_header(self.writer_id, now_ms(), self.context)
        self.segments = SegmentWriter(
            layout.log, self.writer_id, self.header, durable=store.durability == "fsync"
        )
        layout.create(self.temp_path(), durable=store.durability == "fsync")

    @property
    def own_segment_prefix(self) -> str:
        """How the names of this writer's log segments start."""
        return f"{self.writer_id}."

    def temp_path(self) -> str:
        """A fresh name under `tmp/` that no other writer can pick."""
        return os.path.join(self._temp_dir, f"{self.writer_id}-{next(self._temp_counter)}.tmp")


def _apply(decoded: StoredEntry | KeyRecord, target: _RecordTarget) -> None:
    """Apply one decoded log record (see `LogReader.read_new`)."""
    if isinstance(decoded, StoredEntry):
        target.add_entry(decoded)
    elif decoded.kind == ACCESS_TYPE:
        target.add_access(decoded.key, decoded.at, decoded.hits)
    else:
        target.add_tombstone(decoded.key, decoded.at)


def _store_path(path: object) -> str:
    """The absolute store path; `ConfigError` for what cannot name a store
    directory (an empty path would make the working directory a store)."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"path must be a str or os.PathLike, got {path!r}")
    if not os.fspath(path):
        raise ConfigError(
            "path must not be empty (it would make the working directory a store); "
            "name the store directory, for example '__marimo__/persist'"
        )
    return os.path.abspath(os.fspath(path))


def _key_record(record_type: str, key: ExecutionKey, at: int) -> dict[str, Any]:
    """A log record about one entry: an access or a tombstone."""
    return encode_key_record(record_type, key, at)


_locations_logged: set[str] = set()


def _log_location(path: str) -> None:
    """Say once per process where a store writes (logger `marimo_store`,
    INFO): a default store's place is resolved, not chosen, so a user must
    be able to see it."""
    if path in _locations_logged:
        return
    _locations_logged.add(path)
    import logging  # noqa: PLC0415 - ~5 ms; only the first write of a store needs it

    logging.getLogger("marimo_store").info("marimo_store: writing to the store at %s", path)


def _access_record(key: ExecutionKey, at: int, hits: int) -> dict[str, Any]:
    """An access record: the entry was last read at `at`, `hits` times since
    this writer's previous record of it."""
    return encode_access(key, at, hits)


def _shared_with_other_hosts(state: StoreState) -> bool:
    """Whether a writer on another host wrote any segment the merged state
    knows (snapshots keep the ids of consumed segments): a store synced
    between machines."""
    return not all(writer_is_local(writer_of(segment)[0]) for segment in state.consumed)


def _at_exit(reference: weakref.ref[FsPersistentStore]) -> None:
    store = reference()
    if store is not None:
        store._exit()


class FsPersistentStore(NamedObjects):
    """A persistent execution cache in a directory (see docs/format.md).

    Arguments (each also a `.marimo.toml` key of the same name):

    - `path`: the store directory; created on the first `put`. It must be
      missing, empty or a store: a directory holding other files (a project,
      the working directory through `""`) raises `ConfigError`, since the
      store's files at its root would mix with them.
    - `object_id_mode`: `"deduplication"` (default) names objects by content
      alone, so equal values share one file; `"execution_key_qualified"`
      adds the entry's key to the name, so no object is shared across
      entries (for stores that several machines clean up concurrently).
    - `auto_variables_format`: what `format="auto"` means (`"pickle"` or
      `"json"`).
    - `inline_threshold`: serialized values smaller than this many bytes
      (at most 1 MiB) are kept inside the entry record instead of as files.
    - `durability`: `"flush"` (default) hands writes to the OS; a power cut
      may lose the newest entries, which then read as misses, never as
      wrong values (every read is verified). `"fsync"` makes each `put`
      durable before it returns. Snapshots are always fsynced.
    - `verify_reads`: check every object's hash before using it (default).
      Objects this process wrote or already verified, and that have not
      changed since, are not hashed again; objects of 4 MiB or more that
      any process of this machine verified since boot neither.
    - `cloudpickle_fallback`: pickle lambdas, closures and `__main__`
      classes by value with cloudpickle; when False they raise
      `SerializationError`.
    - `memory_map`: load out-of-band buffers (numpy arrays, ...) by memory
      mapping (no copy) rather than reading them into memory.
    - `mmap_mode`: how they are mapped, as joblib's option of that name:
      `"c"` (default) copy-on-write, so a hit returns writable arrays as the
      miss did, and a write copies the page it touches, privately (the
      object file never changes); `"r"` read-only arrays (a write raises
      `ValueError`; the miss still returns the function's own value).
    - `refresh_interval`: seconds between re-reads of other writers' logs
      and snapshots after a miss where no change notification runs, and
      before a put in any case (0: on every miss, with no watch).
    - `cleanup_strategy`: what `cleanup()` drops; default
      `DefaultCleanupStrategy()` (least recently used above 1 GB; count
      limits opt-in).
    - `entry_merge_timeout_seconds`: a put starts a background cleanup when
      the oldest entry not yet in a snapshot is older than this.
    - `max_entries_in_log`: ... or when more entries than this wait in the
      log (-1: no limit).
    - `cleanup_on_exit`: clean up at interpreter exit if this instance
      stored entries, or if more than 64 log segments have piled up (never
      raises).
    - `tombstone_ttl_days`: how long a snapshot remembers deleted keys, so a
      machine syncing late cannot bring them back.
    - `object_grace_seconds`: object GC spares objects younger than this
      (they may belong to entries not visible here yet), and a damaged
      object this young stays in place instead of going to quarantine (it
      may be a sync tool's copy still arriving).
    - `lock_timeout`: seconds to wait for a local lock; on timeout a put
      goes on without it and a cleanup is skipped and reported.
    - `signing_key`: a PEM Ed25519 private key file; every entry put is
      signed with it. None: `$MARIMO_STORE_SIGNING_KEY` (the PEM text) or
      `$MARIMO_STORE_SIGNING_KEY_FILE` (a path) when set, else no signing.
    - `verify_signatures`: `"off"` (default) loads what it finds; `"on"`
      unpickles only values of entries signed by this store's key or a
      `trusted_signers` key, after checking every object's SHA-256 (others
      are a miss, with one warning per signer); `"strict"` raises
      `UntrustedEntryError` instead. JSON and bytes values load either way.
    - `trusted_signers`: fingerprints of the keys whose entries are trusted
      (from arguments or the user's configuration file, never a project's).
      docs/security.md has the threat model and a team's set-up.
    - `allow_other_files`: make a store in a directory that holds other
      files anyway. The store then writes no `.gitignore` or
      `.gitattributes` there (they would apply to those files too).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        object_id_mode: ObjectIdMode = "deduplication",
        auto_variables_format: Literal["pickle", "json"] = "pickle",
        inline_threshold: int = 512,
        durability: Durability = "flush",
        verify_reads: bool = True,
        cloudpickle_fallback: bool = True,
        memory_map: bool = True,
        mmap_mode: MmapMode = "c",
        refresh_interval: float = 0.2,
        cleanup_strategy: CleanupStrategy | None = None,
        entry_merge_timeout_seconds: float = 3600,
        max_entries_in_log: int = -1,
        cleanup_on_exit: bool = True,
        tombstone_ttl_days: float = 30,
        object_grace_seconds: float = 3600,
        lock_timeout: float = 10,
        signing_key: str | os.PathLike[str] | None = None,
        verify_signatures: VerifyMode = "off",
        trusted_signers: Collection[str] = (),
        allow_other_files: bool = False,
    ) -> None:
        self._config: dict[str, Any] = {
            "path": _store_path(path),
            "object_id_mode": object_id_mode,
            "auto_variables_format": auto_variables_format,
            "inline_threshold": inline_threshold,
            "durability": durability,
            "verify_reads": verify_reads,
            "cloudpickle_fallback": cloudpickle_fallback,
            "memory_map": memory_map,
            "mmap_mode": mmap_mode,
            "refresh_interval": refresh_interval,
            "cleanup_strategy": cleanup_strategy,
            "entry_merge_timeout_seconds": entry_merge_timeout_seconds,
            "max_entries_in_log": max_entries_in_log,
            "cleanup_on_exit": cleanup_on_exit,
            "tombstone_ttl_days": tombstone_ttl_days,
            "object_grace_seconds": object_grace_seconds,
            "lock_timeout": lock_timeout,
            "signing_key": signing_key,
            "verify_signatures": verify_signatures,
            "trusted_signers": trusted_signers,
            "allow_other_files": allow_other_files,
        }
        validate_options(self._config)
        # Hashable and independent of order: the configuration is the store's identity.
        self._config["trusted_signers"] = tuple(sorted(set(trusted_signers)))
        self.path: str = self._config["path"]
        self.object_id_mode: ObjectIdMode = object_id_mode
        self.auto_variables_format = auto_variables_format
        self.inline_threshold = inline_threshold
        self.durability: Durability = durability
        self.verify_reads = verify_reads
        self.cloudpickle_fallback = cloudpickle_fallback
        self.memory_map = memory_map
        self.mmap_mode: MmapMode = mmap_mode
        self.refresh_interval = float(refresh_interval)
        self.cleanup_strategy: CleanupStrategy = cleanup_strategy or DefaultCleanupStrategy()
        self.entry_merge_timeout_seconds = float(entry_merge_timeout_seconds)
        self.max_entries_in_log = max_entries_in_log
        self.cleanup_on_exit = cleanup_on_exit
        self.tombstone_ttl_days = float(tombstone_ttl_days)
        self.object_grace_seconds = float(object_grace_seconds)
        self.lock_timeout = float(lock_timeout)
        self.signing_key = signing_key
        self.verify_signatures: VerifyMode = verify_signatures
        self.trusted_signers: tuple[str, ...] = self._config["trusted_signers"]
        self._trust = TrustPolicy(
            self.path, verify_signatures, load_signing_key(signing_key), self.trusted_signers
        )
        self.layout = Layout(self.path)
        check_store_directory(self.path, allow_other_files=allow_other_files)
        self._lock = threading.RLock()
        self._index = EntryIndex()
        self._log_reader = LogReader(self.layout.log)
        self._snapshot_names: tuple[str, ...] | None = None
        self._unreadable = UnreadableFiles()
        self._last_refresh = -float("inf")
        self._verified = VerifiedObjects(self.layout.local)
        self._watch: ChangeNotifier | None = None
        self._watch_unavailable = False
        self._watch_starting = 0
        self._reader_objects = ObjectDirectory(
            self.layout.objects,
            quarantine_dir=self.layout.quarantine,
            quarantine_after_seconds=object_grace_seconds,
            temp_path=lambda: "",  # the reading side never writes objects
            durable=False,
            verify_reads=verify_reads,
            verified=self._verified,
        )
        self._objects_lock = LocalLock(self.layout.objects_lock)
        self._modification_lock = LocalLock(self.layout.modification_lock)
        self._writing: _Writing | None = None
        self._cannot_write = False
        self._wrote_entries = False
        self._exit_registered = False
        self._accesses_noted: dict[ExecutionKey, int] = {}
        self._pending_accesses: dict[ExecutionKey, int] = {}
        self._pending_since = 0
        self._hits_waiting: dict[ExecutionKey, int] = {}
        self._background: threading.Thread | None = None
        self._trigger_not_before = 0.0

    # -- configuration and pickling -------------------------------------------------

    @property
    def config(self) -> Mapping[str, Any]:
        """The constructor arguments: all that a pickled copy carries."""
        return MappingProxyType(self._config)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (type(self), dict(self._config)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FsPersistentStore):
            return NotImplemented
        return type(self) is type(other) and self._config == other._config

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self._config.items(), key=lambda kv: kv[0]))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    @property
    def signer(self) -> str | None:
        """The fingerprint of this store's signing key (None: it does not sign)."""
        return None if self._trust.key is None else self._trust.key.fingerprint

    # -- writing -------------------------------------------------------------------

    def put(self, entry: Entry) -> EntryMetadata:
        """Store an entry; return its metadata (with `created_at` filled in).

        Putting the same key with the same contents again is a no-op that
        returns the stored metadata; with different contents it raises
        `ExecutionKeyClash`. Without `created_at`, the key gets the current
        time, or one millisecond after the newest `created_at` this store has
        seen if that is later (a writer whose clock runs ahead cannot make
        later runs look older), moved on by a millisecond if that run is taken.
        """
        if not isinstance(entry, Entry):
            raise InvalidArgumentError(f"put() takes an Entry, got {type(entry).__name__}")
        user_metadata = check_user_metadata(entry.user_metadata)
        requested = entry.format if entry.format != "auto" else self.auto_variables_format
        serialized = serialize_contents(
            entry.contents, requested, cloudpickle_fallback=self.cloudpickle_fallback
        )
        writing = self._writing_for_this_process()
        needs_files = any(
            len(part) >= self.inline_threshold
            for variables in serialized.values()
            for value in variables.values()
            for part in (value.stream, *value.buffers)
        )
        # Object GC must not run between writing (or reusing) an object and
        # appending the record that references it: hold the shared lock.
        guard = (
            self._objects_lock.hold(exclusive=False, timeout=self.lock_timeout)
            if needs_files
            else contextlib.nullcontext(True)
        )
        try:
            with guard as locked:
                if not locked:
                    warnings.warn(
                        f"marimo_store: {self.path}: object GC held the objects lock for "
                        f"{self.lock_timeout:g} s; storing without it",
                        StoreWarning,
                        stacklevel=2,
                    )
                stored = self._write(writing, entry.key, serialized, user_metadata)
        except OSError as error:
            raise StoreIOError(f"cannot write to the store at {self.path}: {error}") from error
        self._maybe_clean_up_in_background()
        return stored.metadata

    def _write(
        self,
        writing: _Writing,
        requested_key: ExecutionKey,
        serialized: Mapping[str, Mapping[str, SerializedValue]],
        user_metadata: Mapping[str, Any],
    ) -> StoredEntry:
        qualifier = (
            text_digest(f"{requested_key.block_id}\x00{requested_key.module_hash}").hex()
            if self.object_id_mode == "execution_key_qualified"
            else ""
        )
        inline: dict[str, bytes] = {}
        contents, modules = store_contents(
            serialized, lambda value: self._store_value(writing, value, qualifier, inline)
        )
        environment = current_environment(modules)
        with self._lock:
            self._refresh(putting=True)
            key = self._assign_created_at(requested_key, contents)
            stored = StoredEntry(
                EntryMetadata(key, MappingProxyType(contents), environment, user_metadata),
                MappingProxyType(inline),
            )
            present = self._index.exact(key)
            if present is not None:
                if same_contents(present.metadata.contents, stored.metadata.contents):
                    return present
                raise ExecutionKeyClash(
                    f"{key} is already stored with different contents; use a new "
                    "created_at (or leave it None) for a new run of the same computation"
                )
            stored = self._trust.sign(stored)
            self._append(writing, encode_entry(stored, writing.context))
            self._index.add_entry(stored)
            self._wrote_entries = True
            self._flush_accesses(writing)  # the writer exists now: accesses ride along
        return stored

    def _append(self, writing: _Writing, *records: dict[str, Any]) -> None:
        name, offset = writing.segments.append(*map(pack, records))
        self._log_reader.adopt(
            name, writing.segments.segment_id, writing.segments.identity, offset, writing.header
        )

    def _store_value(
        self,
        writing: _Writing,
        serialized: SerializedValue,
        qualifier: str,
        inline: dict[str, bytes],
    ) -> ObjectRef:
        buffers = tuple(
            self._store_object(writing, buffer, "buffer", qualifier=qualifier, inline=inline)
            for buffer in serialized.buffers
        )
        return self._store_object(
            writing,
            serialized.stream,
            serialized.format,
            qualifier=qualifier,
            inline=inline,
            buffers=buffers,
        )

    def _store_object(
        self,
        writing: _Writing,
        data: bytes | memoryview,
        stored_format: StoredFormat,
        *,
        qualifier: str,
        inline: dict[str, bytes],
        buffers: tuple[ObjectRef, ...] = (),
    ) -> ObjectRef:
        """One object: inside the entry record when small, else a file."""
        size = len(data)
        if size < self.inline_threshold:
            object_id = content_digest(data).hex()
            inline[object_id] = bytes(data)
            return ObjectRef(object_id, size, stored_format, buffers, True)
        # A signature covers a file's bytes through their SHA-256 (see _trust.py).
        digest = object_digest(data) if self._trust.key is not None else None
        object_id = writing.objects.write(data, qualifier=qualifier, digest=digest)
        return ObjectRef(object_id, size, stored_format, buffers, digest=digest)

    def _assign_created_at(
        self, key: ExecutionKey, contents: Mapping[str, Mapping[str, ObjectRef]]
    ) -> ExecutionKey:
        if key.created_at is not None:
            return key
        # A hybrid logical clock: a run written after another was seen comes
        # after it, whatever the writers' clocks say (a clock ahead by a day
        # must not make every later run look older).
        pinned = key.at(max(now_ms(), self._index.newest_created_at() + 1))
        while True:
            present = self._index.exact(pinned)
            # A run deleted in this very millisecond keeps its key dead: move on.
            deleted = present is None and self._index.is_removed(pinned)
            if not deleted and (
                present is None or same_contents(present.metadata.contents, contents)
            ):
                return pinned
            assert pinned.created_at is not None
            pinned = pinned.at(pinned.created_at + 1)

    def _writing_for_this_process(self) -> _Writing:
        writing = self._writing
        if writing is None or writing.pid != os.getpid():
            with self._lock:
                writing = self._writing
                if writing is None or writing.pid != os.getpid():
                    try:
                        writing = _Writing(self)
                    except OSError as error:
                        raise StoreIOError(
                            f"cannot create the store at {self.path}: {error}"
                        ) from error
                    self._writing = writing
                    _log_location(self.path)
                    self._register_exit()
                    watch = self._watch
                    if watch is not None and watch.pid == writing.pid:
                        watch.own_segment_prefix = writing.own_segment_prefix
        return writing

    def _register_exit(self) -> None:
        """Run `_exit` at interpreter exit once this instance has something to
        write or seal (never for a store that was only constructed)."""
        if not self._exit_registered:
            atexit.register(_at_exit, weakref.ref(self))
            self._exit_registered = True

    def delete_entries(self, keys: Iterable[ExecutionKey]) -> int:
        """Delete entries by appending tombstones; return how many were live.

        A key with `created_at` deletes that run; without, every run of its
        computation. Deleted entries read as misses here at once and in
        other processes at their next refresh; the next `cleanup()` drops
        them and object GC frees objects nothing else references.
        """
        keys = check_keys(keys, "delete_entries")
        with self._lock:
            self._refresh()
            runs = list(
                dict.fromkeys(
                    stored.metadata.key
                    for key in keys
                    for stored in self._index.runs(key, exact=key.created_at is not None)
                )
            )
            if not runs:
                return 0
            now = now_ms()
            try:
                self._append(
                    self._writing_for_this_process(),
                    *(_key_record(TOMBSTONE_TYPE, run, now) for run in runs),
                )
            except OSError as error:
                raise StoreIOError(f"cannot write to the store at {self.path}: {error}") from error
            for run in runs:
                self._index.add_tombstone(run, now)
        return len(runs)

    # -- reading -------------------------------------------------------------------

    def lookup(self, key: ExecutionKey) -> EntryMetadata | None:
        """The metadata of the run `get(key)` would load, without loading it.

        That is the newest run at or before `key.created_at` (any run when
        it is None) whose objects are all present at their recorded sizes.
        Hashes are checked only when values are loaded, so a damaged object
        found here can still make the load a miss. Records no access. With
        `verify_signatures` on, runs `get` would refuse to unpickle are
        passed over (without a warning or an error: nothing is loaded here).
        """
        for stored in self._candidates(key, exact=False):
            if self._objects_here(stored) and self._admits(stored, quiet=True):
                return stored.metadata
        return None

    def get(
        self,
        key: ExecutionKey,
        exact_match_created_at: bool = False,
        *,
        version_policy: VersionPolicy = "warn",
    ) -> Entry | None:
        """The stored entry for `key`, with its values, or None (a miss).

        Without `exact_match_created_at`, `key.created_at` is an upper
        bound: the newest run at or before it (or the newest of all when it
        is None) that loads completely is returned. A hit is always
        complete: any missing or damaged object makes that run a miss.
        `version_policy` judges the run's recorded Python and package
        versions before anything is unpickled (see docs/objects.md).
        """
        check_policy(version_policy)
        for stored in self._candidates(key, exact_match_created_at):
            if not self._admits(stored):
                continue
            check_versions(stored.metadata, version_policy, stacklevel=2)
            contents = self._load_contents(stored)
            if contents is not None:
                metadata = stored.metadata
                self._note_access(metadata.key)
                return Entry._trusted(metadata.key, contents, metadata.user_metadata, metadata)
        return None

    def load_variable(self, key: ExecutionKey, name: str, *, kind: str = "variables") -> Any:
        """Load one variable of an entry without loading the others.

        Raises `NotFoundError` when the entry or the variable is not stored
        or cannot be loaded (with a warning saying why).
        """
        return self._load_one(key, name, kind, only_bytes=False)

    def load_bytes(
        self,
        key: ExecutionKey,
        name: str,
        *,
        kind: str = "variables",
        requires_trust: bool = False,
    ) -> bytes:
        """`load_variable` for a value stored with `format="bytes"`.

        Never runs code: a variable stored in another format raises
        `NotFoundError` instead of being unpickled. For callers that hand
        the bytes to a reader with its own checks (marimo's signed caches),
        which a pickle planted in a shared store must not get around.
        `requires_trust`: the caller will unpickle the bytes itself, so with
        `verify_signatures` on they are treated like a pickled value (only
        from a trusted entry, every object's SHA-256 checked).
        """
        loaded: bytes = self._load_one(
            key, name, kind, only_bytes=True, requires_trust=requires_trust
        )
        return loaded

    def signature_status(self, key: ExecutionKey) -> SignatureStatus | None:
        """What this store makes of the signature of the run `key` names
        (`created_at` required), or None when no such run is stored.

        Checks the signature against the entry and the trusted keys; reads
        no object and unpickles nothing, whatever `verify_signatures` says.
        Checking a signed entry needs `cryptography` (else `ConfigError`).
        """
        found = self._candidates(key, exact=True)
        return self._trust.status(found[0]) if found else None

    def _admits(
        self,
        stored: StoredEntry,
        refs: Iterable[ObjectRef] | None = None,
        *,
        requires_trust: bool = False,
        quiet: bool = False,
    ) -> bool:
        """Whether `verify_signatures` lets these values of `stored` load
        (`refs`: all of them when None; warns or raises as the mode says,
        unless `quiet`). With checks off (the default) this is all it does:
        the references are looked at only when a mode needs them."""
        trust = self._trust
        if not trust.checks:
            return True
        if refs is None:
            refs = stored.metadata.objects().values()
        executable = requires_trust or needs_trust(refs)
        if quiet:
            return trust.would_admit(stored, executable=executable)
        return trust.admits(stored, executable=executable)

    def _load_one(
        self,
        key: ExecutionKey,
        name: str,
        kind: str,
        *,
        only_bytes: bool,
        requires_trust: bool = False,
    ) -> Any:
        for stored in self._candidates(key, exact=False):
            ref = stored.metadata.contents.get(kind, {}).get(name)
            if ref is None:
                raise NotFoundError(f"entry {stored.metadata.key} has no {kind} {name!r}")
            if only_bytes and ref.format != "bytes":
                raise NotFoundError(
                    f"{kind} {name!r} of entry {stored.metadata.key} is stored as "
                    f"{ref.format}, not as bytes"
                )
            if not self._admits(stored, (ref,), requires_trust=requires_trust):
                continue
            loaded = self._load_value(stored, ref)
            if loaded is not MISSING:
                self._note_access(stored.metadata.key)
                return loaded
        raise NotFoundError(f"no loadable entry for {key}")

    def history(self, key: ExecutionKey) -> list[EntryMetadata]:
        """Metadata of the runs of `key`'s computation, newest first: every
        run at or before `key.created_at` (all when it is None).

        Catches up with other writers first (at most every
        `refresh_interval`), so a name saved elsewhere is seen; nothing is
        unpickled and objects are not checked.
        """
        with self._lock:
            self._refresh()
            return [stored.metadata for stored in self._candidates(key, exact=False)]

    def entries(self) -> list[EntryMetadata]:
        """Metadata of every live entry, oldest first; nothing is unpickled."""
        with self._lock:
            self._refresh()
            return sorted(
                (stored.metadata for stored in self._index),
                key=lambda metadata: (metadata.created_at, metadata.key.block_id),
            )

    def refresh(self) -> None:
        """Catch up with other writers now, whatever `refresh_interval` says.

        For a caller that knows another process has just put what it is
        about to look up (a single-flight waiter whose lease was released).
        """
        with self._lock:
            self._last_refresh = -float("inf")
            self._refresh()

    def __len__(self) -> int:
        return len(self.entries())

    def __iter__(self) -> Iterator[EntryMetadata]:
        return iter(self.entries())

    def _candidates(self, key: ExecutionKey, exact: bool) -> list[StoredEntry]:
        check_lookup_key(key, exact)
        with self._lock:
            if self._snapshot_names is None:
                self._refresh()
            found = self._index.runs(key, exact=exact)
            if not found:
                self._refresh(miss=True)
                found = self._index.runs(key, exact=exact)
            return found

    def _refresh(self, *, miss: bool = False, putting: bool = False) -> None:
        """Catch up with other writers, when they may have written something.

        With change notification (started by the first refresh after a
        miss), only when `log/` or `snapshots/` changed since the last
        refresh, or `_WATCH_SAFETY_SECONDS` passed (for events a file system
        fails to report); otherwise (polling) at most every
        `refresh_interval`, and on every miss when that is 0. A put
        (`putting`: it only orders `created_at` after the runs it knows)
        refreshes at most every `refresh_interval` either way: asking the
        watch costs a few microseconds, and a miss-then-put asked just before.

        A changed set of snapshot files means a cleanup ran: the index is
        rebuilt on the new heads. Otherwise only new log bytes are read.
        """
        now = time.monotonic()
        watch = self._change_watch(start=miss)
        if self._index.base_truncated:
            self._snapshot_names = None  # rebuild without it
        if self._snapshot_names is not None:
            if watch is not None and not putting:
                if not watch.take_change() and now - self._last_refresh < _WATCH_SAFETY_SECONDS:
                    return
            elif now - self._last_refresh < self.refresh_interval:
                return
        self._last_refresh = now
        try:
            names = self._list_snapshots()
            if names != self._snapshot_names:
                self._reload(names)
            self._unreadable.read(self.layout.snapshots)
        except OSError as error:  # snapshots/ unreadable right now: go on with what we know
            self._unreadable.failed(self.layout.snapshots, error)
        for decoded in self._log_reader.read_new():
            _apply(decoded, self._index)

    def _change_watch(self, *, start: bool) -> ChangeNotifier | None:
        """The running change notification, or None: poll meanwhile.

        `start` (a miss) starts it in a background thread, so that no call
        waits for watchdog where it is used (off Linux: 40 ms to import, and
        starting or stopping watches can wait for its threads); until it
        runs, misses poll. Not with `refresh_interval=0`: every miss
        refreshes anyway, and an event may arrive a moment after the write
        it reports.
        """
        watch = self._watch
        pid = os.getpid()
        if watch is not None and watch.pid != pid:
            self._watch = watch = None  # inherited through fork(): the parent's
        if watch is not None or not start or self._watch_unavailable:
            return watch
        if self._watch_starting == pid or self.refresh_interval == 0:
            return None
        if not os.path.isdir(self.path):
            return None  # a directory created later is watched from a later miss on
        self._watch_starting = pid
        threading.Thread(
            target=_start_watching,
            args=(weakref.ref(self),),
            name="marimo_store-watch",
            daemon=True,
        ).start()
        return None

    def _list_snapshots(self) -> tuple[str, ...]:
        return tuple(
            sorted(
                e.name
                for e in scan_real_directory(self.layout.snapshots)
                if e.name.endswith(SNAPSHOT_SUFFIX)
            )
        )

    def _reload(self, names: tuple[str, ...]) -> None:
        heads = read_snapshots(self.layout.snapshots).heads if names else []
        if len(heads) == 1:
            self._index = EntryIndex(base=heads[0])
            consumed = heads[0].consumed
        else:
            state = merge(heads)
            self._index = EntryIndex(merged=state)
            consumed = state.consumed
        self._log_reader = LogReader(
            self.layout.log, {segment: offset for segment, (offset, _) in consumed.items()}
        )
        self._snapshot_names = names

    def _note_access(self, key: ExecutionKey) -> None:
        """Remember a hit for LRU cleanup, to be written with the next batch.

        A hit writes nothing: the access records wait in memory until the
        next put, `close()`, `cleanup()`, exit, or until the oldest has
        waited `_ACCESS_RECORD_INTERVAL_MS`. So a process that only reads
        never pays for creating a log segment on its first hit, and steady
        hits pay no write. Every hit is counted (each record carries the hits
        since the writer's previous one), for the hit counts of `ls` and
        `info`. (A killed process loses its last batch: recency and counts
        are statistics, never a correctness matter.)
        """
        now = now_ms()
        if self._cannot_write:
            return
        waiting = self._hits_waiting
        waiting[key] = waiting.get(key, 0) + 1
        if now - self._accesses_noted.get(key, 0) < _ACCESS_RECORD_INTERVAL_MS:
            return
        self._accesses_noted[key] = now
        with self._lock:
            self._index.add_access(key, now)
            if not self._pending_accesses:
                self._pending_since = now
            self._pending_accesses[key] = now
            due = now - self._pending_since >= _ACCESS_RECORD_INTERVAL_MS
            self._register_exit()
        if due:
            self._flush_accesses()

    def _flush_accesses(self, writing: _Writing | None = None) -> None:
        """Append the waiting access records in one write (no-op when none wait).

        A store that cannot write (a read-only copy) drops them and stops
        collecting: hits still work.
        """
        with self._lock:
            if not (self._pending_accesses or self._hits_waiting) or self._cannot_write:
                return
            pending, self._pending_accesses = self._pending_accesses, {}
            hits, self._hits_waiting = self._hits_waiting, {}
            counted = [
                (key, at, max(count, 1))
                for key, count in {**dict.fromkeys(pending, 0), **hits}.items()
                if (at := pending.get(key) or self._accesses_noted.get(key, 0))
            ]
            if not counted:
                return
            records = [_access_record(key, at, count) for key, at, count in counted]
            try:
                self._append(writing or self._writing_for_this_process(), *records)
            except (OSError, StoreIOError):
                self._cannot_write = True
                return
            for key, at, count in counted:
                self._index.add_access(key, at, count)  # our own records are not read back

    def _load_contents(self, stored: StoredEntry) -> dict[str, dict[str, Any]] | None:
        contents: dict[str, dict[str, Any]] = {}
        for kind, refs in stored.metadata.contents.items():
            values: dict[str, Any] = {}
            for name, ref in refs.items():
                value = self._load_value(stored, ref)
                if value is MISSING:
                    return None
                values[name] = value
            contents[kind] = values
        return contents

    def _load_value(self, stored: StoredEntry, ref: ObjectRef) -> Any:
        mode = self.mmap_mode if self.memory_map else None
        # A bytes value is copied out whole anyway: a read-only map saves one copy.
        stream = self._read_object(
            stored, ref, memory_map="r" if self.memory_map and ref.format == "bytes" else None
        )
        loaded = [self._read_object(stored, buffer, memory_map=mode) for buffer in ref.buffers]
        buffers = [buffer for buffer in loaded if buffer is not None]
        if stream is None or len(buffers) != len(loaded):
            return MISSING
        try:
            return deserialize(ref.format, stream, buffers)
        except Exception as error:  # a value that no longer loads is a miss, not a crash
            return unloadable(error, stored.metadata.key, stacklevel=4)

    def _read_object(
        self, stored: StoredEntry, ref: ObjectRef, *, memory_map: MmapMode | None
    ) -> Any:
        """An object's verified bytes (from the record when inline), or None.
        With `verify_signatures` on, a recorded SHA-256 is checked too."""
        if ref.inline:
            return stored.inline[ref.id]
        digest = ref.digest if self._trust.checks else None
        return self._reader_objects.read(ref.id, ref.size, memory_map=memory_map, digest=digest)

    # -- cleanup -------------------------------------------------------------------

    def cleanup(
        self,
        strategy: CleanupStrategy | None = None,
        *,
        include_content: bool | None = None,
        dry_run: bool = False,
    ) -> CleanupReport:
        """Compact the log into a new snapshot, dropping what `strategy` says.

        The only way a snapshot is made. Under the local `modification` lock:
        merge every head and the log after them, apply the strategy (and drop
        entries whose objects are gone), write the new snapshot and fsync it,
        then delete the snapshots it replaces, the log segments it fully
        holds, and stale temp files; then delete the objects no entry
        references any more (object GC, under the exclusive `objects` lock:
        objects of dropped entries at once, unknown ones after
        `object_grace_seconds`; docs/cleanup.md). `include_content=False`
        skips object GC (None, the default, and True run it). `dry_run`
        changes nothing and reports what would be dropped.
        """
        report = CleanupReport(dry_run=dry_run)
        if not self.layout.require_store_directory(
            allow_other_files=self._config["allow_other_files"]
        ):
            return report
        if not dry_run:
            self._flush_accesses()  # so that this process's hits count for LRU
        try:
            with self._modification_lock.hold(
                exclusive=True, timeout=self.lock_timeout
            ) as acquired:
                if not acquired:
                    report.skipped.append(
                        "another process is cleaning up "
                        f"(modification lock busy for {self.lock_timeout:g} s)"
                    )
                    return report
                self._clean_up_locked(
                    strategy or self.cleanup_strategy, include_content is not False, report
                )
        except StoreIOError:
            raise
        except OSError as error:  # the lock file included (a read-only copy, a full disk)
            raise StoreIOError(f"cleanup of {self.path} failed: {error}") from error
        if not dry_run:
            with self._lock:
                self._snapshot_names = None  # adopt the new snapshot at the next lookup
                self._wrote_entries = False
        return report

    def clear(self, *, dry_run: bool = False) -> CleanupReport:
        """Drop every entry and delete the objects they used: a cleanup whose
        strategy drops everything (so the same lock, snapshot and object GC
        rules; objects of entries still arriving from another machine wait
        `object_grace_seconds`, as the report's `spared` says). Entries put
        while it runs are kept. `dry_run` lists what would go."""
        return self.cleanup(drop_everything, dry_run=dry_run)

    def _clean_up_locked(
        self, strategy: CleanupStrategy, include_content: bool, report: CleanupReport
    ) -> None:
        now = now_ms()
        state, reader, snapshots = self._merged_state()
        live = state.live()
        decisions = dict(strategy([stored.metadata for stored in live], now))
        # Late is not lost: an entry whose objects are not here (yet) stays,
        # a miss, until it has dangled on this machine for the grace period.
        dangling = [
            s.metadata.key
            for s in live
            if s.metadata.key not in decisions and self._objects_here(s) is False
        ]
        temp_path = None if report.dry_run else self._writing_for_this_process().temp_path()
        since = dangling_since(self.layout.local, dangling, now, temp_path=temp_path)
        decisions.update(overdue(since, now))
        sizes = {stored.metadata.key: stored.metadata.content_size for stored in live}
        report.dropped = [
            DroppedEntry(key, reason, sizes[key]) for key, reason in decisions.items()
        ]
        report.entries_kept = len(live) - len(decisions)
        if report.dry_run:
            return
        for key in decisions:
            state.add_tombstone(key, now)
        dropped = state.dropped  # before the snapshot: what it forgets, GC still knows
        retire = in_git_work_tree(self.path)  # never delete under git (see _retired.py)
        self._write_snapshot(state, reader, snapshots, now, report, retire=retire)
        temp = self._writing_for_this_process().temp_path
        delete_consumed_segments(
            self.layout.log, reader.segments(), report, retire=retire, temp_path=temp
        )
        delete_stale_temp_files(self.layout.tmp, report)
        prune_ledgers(
            self.layout.local,
            self._reader_objects.path_of,
            self._writing_for_this_process().temp_path(),
        )
        if include_content:
            self._collect_garbage(state, dropped, reader, now, report, retire=retire)

    def _merged_state(self) -> tuple[StoreState, LogReader, SnapshotSet]:
        """Every head merged, plus every log record after them: the whole
        current state, the log reader that read it, and the snapshot files."""
        snapshots = read_snapshots(self.layout.snapshots)
        state = merge(snapshots.heads)
        reader = LogReader(
            self.layout.log, {segment: offset for segment, (offset, _) in state.consumed.items()}
        )
        for decoded in reader.read_new():
            _apply(decoded, state)
        return state, reader, snapshots

    def _write_snapshot(
        self,
        state: StoreState,
        reader: LogReader,
        snapshots: SnapshotSet,
        now: int,
        report: CleanupReport,
        *,
        retire: bool,
    ) -> None:
        horizon = now - int(self.tombstone_ttl_days * _DAY_MS)
        # Offsets only for segments that still exist: a deleted segment that a
        # sync tool brings back is harmless to re-read (entries are idempotent
        # and tombstones keep dropped keys dropped), and the header stays as
        # small as the set of live segments. A reader's offset is never less
        # than what the heads had consumed (not even for a copy shorter than
        # that: a sync tool still delivering it), so no offset moves back.
        consumed: dict[str, tuple[int, int]] = {}
        for segment in reader.segments().values():
            if segment.segment_id:
                known = max(consumed.get(segment.segment_id, (0, 0))[0], segment.offset)
                consumed[segment.segment_id] = (known, now)
        state.consumed = consumed
        state.tombstones = {k: at for k, at in state.tombstones.items() if at >= horizon}
        # Ancestors tell a snapshot a sync tool resurrects from a head. Bounded
        # by age and count: a resurrected snapshot older than that only brings
        # back entries that are valid (or misses), never wrong ones.
        recent = sorted(state.ancestors.items(), key=lambda item: item[1], reverse=True)
        state.ancestors = {k: at for k, at in recent[:_MAX_ANCESTORS] if at >= horizon}
        writing = self._writing_for_this_process()
        snapshot_id, data = encode_snapshot(state, writer=writing.writer_id, created_at=now)
        _fs.makedirs(self.layout.snapshots)
        path = os.path.join(self.layout.snapshots, snapshot_id + SNAPSHOT_SUFFIX)
        _fs.write_new_file(path, data, temp_path=writing.temp_path(), durable=True)
        report.snapshot = snapshot_id
        # Only now that the new one is durable. It merges every head, and every
        # other file read is some head's ancestor: all of them are superseded.
        # (A snapshot that arrived after they were read is not in the list.)
        for snapshot in snapshots.files:
            if snapshot.path != path:
                remove(snapshot.path, retire=retire, temp_path=writing.temp_path)
                report.snapshots_deleted += 1
        # A damaged snapshot goes to quarantine once it is old: a young one may
        # be another machine's snapshot still arriving through a sync tool.
        old = time.time_ns() - int(self.object_grace_seconds * 1e9)
        for damaged in snapshots.damaged:
            with contextlib.suppress(FileNotFoundError):
                seen = os.stat(damaged)
                if max(seen.st_mtime_ns, seen.st_ctime_ns) < old:
                    _fs.makedirs(self.layout.quarantine)
                    _fs.replace(damaged, self.layout.quarantine_path(damaged, now))

    def _objects_here(self, stored: StoredEntry) -> bool | None:
        """Whether every object file of the entry is here at its recorded size.

        False: one is absent or has another size (not delivered yet, or
        still being copied: the entry dangles). None: none is known to be
        absent, but one cannot be read right now."""
        here: bool | None = True
        for ref in stored.metadata.objects().values():
            if ref.inline or ref.size == 0:
                continue
            try:
                if _fs.stat(self._reader_objects.path_of(ref.id)).st_size != ref.size:
                    return False
            except (FileNotFoundError, NotADirectoryError):
                return False
            except OSError:
                here = None
        return here

    def _collect_garbage(
        self,
        state: StoreState,
        dropped: Mapping[ExecutionKey, StoredEntry],
        reader: LogReader,
        started: int,
        report: CleanupReport,
        *,
        retire: bool,
    ) -> None:
        """Object GC (see `collect_garbage`). A drop counts from its tombstone's
        time, but never from later than this cleanup's start (`started`, ms):
        a tombstone from a machine whose clock is ahead must not make a file
        written, reused or delivered since look older than its drop.

        Objects of dropped entries go at once only in a store no other host
        has written to (every segment id the merged state knows is this
        host's): in a shared store another machine may, unseen yet, have
        reused one by deduplication, so they wait `object_grace_seconds`
        like an object no entry known here references."""
        with self._objects_lock.hold(exclusive=True, timeout=self.lock_timeout) as acquired:
            if not acquired:
                report.skipped.append("object GC: puts held the objects lock; objects kept")
                return
            for decoded in reader.read_new():  # puts that finished meanwhile
                _apply(decoded, state)
            referenced = {
                ref.id
                for stored in state.entries.values()
                for ref in stored.metadata.objects().values()
                if not ref.inline
            }
            dropped_at: dict[str, int] = {}
            if not _shared_with_other_hosts(state):
                for key, stored in dropped.items():
                    at = min(state.tombstones.get(key, 0), started)
                    for ref in stored.metadata.objects().values():
                        if not ref.inline:
                            dropped_at[ref.id] = max(at, dropped_at.get(ref.id, 0))
            collect_garbage(
                self.layout.objects,
                referenced,
                dropped_at,
                self.object_grace_seconds,
                report,
                retire=retire,
                temp_path=self._writing_for_this_process().temp_path,
            )

    def _maybe_clean_up_in_background(self) -> None:
        """Start a cleanup thread when a trigger fired; the put does not wait."""
        index = self._index
        too_many = 0 <= self.max_entries_in_log < index.log_entries
        oldest = index.oldest_log_entry
        too_old = oldest is not None and now_ms() - oldest > self.entry_merge_timeout_seconds * 1000
        if not (too_many or too_old or self._too_many_segments()):
            return
        if time.monotonic() < self._trigger_not_before:
            return
        if self._background is not None and self._background.is_alive():
            return
        self._trigger_not_before = time.monotonic() + _TRIGGER_BACKOFF_SECONDS
        self._background = threading.Thread(
            target=_clean_up_in_background,
            args=(weakref.ref(self),),
            name="marimo_store-cleanup",
            daemon=True,
        )
        self._background.start()

    # -- checking and repairing ----------------------------------------------------

    def verify(
        self,
        *,
        repair: bool = False,
        drop_dangling: bool = False,
        progress: Progress | None = None,
    ) -> VerifyReport:
        """Check every file of the store; with `repair`, fix what is wrong.

        Rehashes every object (conflicted copies and misplaced files too),
        checks every snapshot and segment byte for byte and every entry's
        objects, and looks at `format.json`, `.gitignore`, `.gitattributes`
        and `tmp/`. With `repair=True`: verified copies go to their true
        names, damaged files to `quarantine/`, stale temp files are deleted,
        and a fresh snapshot is written; a second `verify()` then reports
        nothing but the entries that still dangle. An entry whose objects are
        missing or damaged (a *dangling* entry: perhaps a sync tool has not
        delivered them yet) is kept as a miss until it has dangled on this
        machine for 7 days, as in every cleanup; `drop_dangling=True` drops
        it at once.
        `progress(bytes_hashed, total_bytes)` is called while hashing.
        Never needed for correctness: every read verifies what it loads.
        """
        from marimo_store._verify import verify_store  # noqa: PLC0415 - rarely used

        try:
            return verify_store(self, repair=repair, drop_dangling=drop_dangling, progress=progress)
        except StoreIOError:
            raise
        except OSError as error:
            raise StoreIOError(f"verify of {self.path} failed: {error}") from error

    def doctor(self) -> list[Finding]:
        """What about where and how this store is kept deserves attention.

        Warns when the store is on a network file system or inside a
        Dropbox, OneDrive, iCloud Drive, Syncthing, Google Drive or Nextcloud
        folder (with the settings to choose), holds conflicted copies or
        stale temp files, or a record is far ahead of this machine's clock;
        notes when change notification falls back to polling; warns when
        marimo, run from the working directory, would ignore a configured
        `fs_persistent` store (docs/marimo.md). Reads only.
        """
        from marimo_store._doctor import diagnose  # noqa: PLC0415 - rarely used

        return diagnose(self)

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Write waiting access records and seal this instance's log segment.
        The store stays usable; a later put simply starts a new segment."""
        self._flush_accesses()
        with self._lock:
            writing = self._writing
            self._writing = None
        if writing is not None and writing.pid == os.getpid():
            try:
                writing.segments.close()
            except OSError as error:
                raise StoreIOError(f"cannot close the log of {self.path}: {error}") from error

    def _too_many_segments(self) -> bool:
        """Whether the log holds more segment files than a cleanup should let
        pile up. Every process that only reads still leaves one small segment
        (its access records), so entry counts alone would never trigger.
        The markers of retired segments (a store in git) do not count."""
        segments = self._log_reader.segments().values()
        files = sum(1 for s in segments if s.segment_id or s.size > MAX_MARKER_BYTES)
        return files > _MAX_SEGMENTS_BEFORE_CLEANUP

    def _exit(self) -> None:
        """At interpreter exit: clean up what this instance stored (or the
        segments that readers left), then seal."""
        try:
            if self.cleanup_on_exit and (self._wrote_entries or self._too_many_segments()):
                self.cleanup()
            self.close()
        except Exception as error:  # exit must never fail because of the cache
            warnings.warn(
                f"marimo_store: cleanup at exit of {self.path} failed: {error}",
                StoreWarning,
                stacklevel=1,
            )


def _start_watching(reference: weakref.ref[FsPersistentStore]) -> None:
    """Start a store's change notification (in a thread of its own)."""
    from marimo_store._changes import start_change_watch  # noqa: PLC0415

    store = reference()
    path = store.path if store is not None else ""
    del store  # not kept alive while the watch starts
    watch = start_change_watch(path) if path else None
    store = reference()
    if store is None or watch is None:
        if watch is not None:
            watch.close()
        if store is not None:
            store._watch_unavailable = True
        return
    weakref.finalize(store, watch.close).atexit = False
    writing = store._writing
    if writing is not None and writing.pid == watch.pid:
        watch.own_segment_prefix = writing.own_segment_prefix
    store._watch = watch


def _clean_up_in_background(reference: weakref.ref[FsPersistentStore]) -> None:
    store = reference()
    if store is None:
        return
    try:
        store.cleanup()
    except Exception as error:  # a background cleanup reports, it never kills anything
        warnings.warn(
            f"marimo_store: background cleanup of {store.path} failed: {error}",
            StoreWarning,
            stacklevel=1,
        )


def validate_options(config: Mapping[str, Any]) -> None:
    """Raise `ConfigError` naming the first option that is out of range.

    `config` holds every constructor argument; configuration files check
    their values through this too, so both say the same thing.
    """
    for name, allowed in _CHOICES.items():
        if config[name] not in allowed:
            raise ConfigError(
                f"{name} must be one of {', '.join(map(repr, allowed))}, got {config[name]!r}"
            )
    threshold = config["inline_threshold"]
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int)
        or not 0 <= threshold <= MAX_INLINE_THRESHOLD
    ):
        raise ConfigError(
            f"inline_threshold must be an int from 0 to {MAX_INLINE_THRESHOLD} (1 MiB), "
            f"got {threshold!r}"
        )
    limit = config["max_entries_in_log"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < -1:
        raise ConfigError(
            f"max_entries_in_log must be an int >= 0, or -1 for no limit, got {limit!r}"
        )
    for name in (
        "refresh_interval",
        "entry_merge_timeout_seconds",
        "tombstone_ttl_days",
        "object_grace_seconds",
        "lock_timeout",
    ):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
    for name in (
        "verify_reads",
        "cloudpickle_fallback",
        "memory_map",
        "cleanup_on_exit",
        "allow_other_files",
    ):
        if not isinstance(config[name], bool):
            raise ConfigError(f"{name} must be True or False, got {config[name]!r}")
    check_trust_options(config)
    strategy = config["cleanup_strategy"]
    if strategy is not None and not callable(strategy):
        raise ConfigError(f"cleanup_strategy must be callable, got {strategy!r}")
