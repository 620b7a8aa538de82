"""`FsPersistentStore`: the persistent, content-addressed execution cache.

A `put` serializes each variable into objects (deduplicated by content
hash), then appends one entry record to this instance's own log segment. A
`get` looks the key up in an in-memory index merged from every writer's
segments and loads the objects, verifying each one. No lock is taken on
either path: one writer per segment and write-once objects make them safe
for any number of processes, and a damaged or missing file is only a miss.

This module is the facade: it holds the options and the lock, and hands
each call to the part that does it: `_writer.py` (the write path),
`_reader.py` (the read path and the trust gate), `_refresh.py` (the live
index and change watching), `_accesses.py` (access batching),
`_cleanup_trigger.py` (when a cleanup runs by itself) and `_compaction.py`
(cleanup, snapshot retention and object GC). Only the read path loads with
the package: the write path (with the `objects` lock and the cleanup
trigger) is imported by the first write, the cleanup by the first cleanup.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping
from types import MappingProxyType

from marimo_store._accesses import AccessBatcher
from marimo_store._entry import Entry, EntryMetadata, ExecutionKey, check_keys
from marimo_store._errors import NotFoundError, StoreIOError, StoreWarning
from marimo_store._format.layout import Layout, check_store_directory
from marimo_store._hashed_objects import VerifiedObjects
from marimo_store._instances import ExitHook, LazyWriteSide, reopen
from marimo_store._named import NamedObjects
from marimo_store._options import ARGUMENTS_DOC, OPTION_NAMES, StoreOptions
from marimo_store._reader import EntryReader
from marimo_store._refresh import LiveIndex
from marimo_store._signing import load_signing_key
from marimo_store._trust import SignatureStatus, TrustPolicy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from marimo_store._cleanup import CleanupReport, CleanupStrategy
    from marimo_store._cleanup_plan import CleanupPlan
    from marimo_store._compaction import Compactor
    from marimo_store._findings import Finding, VerifyReport
    from marimo_store._maintenance import Maintenance
    from marimo_store._objects import MmapMode
    from marimo_store._options import Durability, ObjectIdMode
    from marimo_store._trust import VerifyMode
    from marimo_store._verify import Progress
    from marimo_store._versions import VersionPolicy
    from marimo_store._writer import WriteSide
    from marimo_store.remote._tier import RemoteTier


class FsPersistentStore(NamedObjects):
    __doc__ = f"""A persistent execution cache in a directory (see docs/format.md).

    {ARGUMENTS_DOC}"""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        object_id_mode: ObjectIdMode = StoreOptions.object_id_mode,
        auto_variables_format: Literal["pickle", "json"] = StoreOptions.auto_variables_format,
        inline_threshold: int = StoreOptions.inline_threshold,
        durability: Durability = StoreOptions.durability,
        verify_reads: bool = StoreOptions.verify_reads,
        cloudpickle_fallback: bool = StoreOptions.cloudpickle_fallback,
        memory_map: bool = StoreOptions.memory_map,
        mmap_mode: MmapMode = StoreOptions.mmap_mode,
        refresh_interval: float = StoreOptions.refresh_interval,
        cleanup_strategy: CleanupStrategy | None = StoreOptions.cleanup_strategy,
        entry_merge_timeout_seconds: float = StoreOptions.entry_merge_timeout_seconds,
        max_entries_in_log: int = StoreOptions.max_entries_in_log,
        cleanup_on_exit: bool = StoreOptions.cleanup_on_exit,
        tombstone_ttl_days: float = StoreOptions.tombstone_ttl_days,
        object_grace_seconds: float = StoreOptions.object_grace_seconds,
        lock_timeout: float = StoreOptions.lock_timeout,
        signing_key: str | os.PathLike[str] | None = StoreOptions.signing_key,
        verify_signatures: VerifyMode = StoreOptions.verify_signatures,
        trusted_signers: Collection[str] = StoreOptions.trusted_signers,
        allow_other_files: bool = StoreOptions.allow_other_files,
        remote: str = StoreOptions.remote,
        remote_write: Literal["through", "back"] = StoreOptions.remote_write,
        remote_timeout: float = StoreOptions.remote_timeout,
    ) -> None:
        arguments = dict(locals())
        del arguments["self"]
        self.options = options = StoreOptions.of(arguments)
        self.path: str = options.path
        self._trust = TrustPolicy(
            self.path,
            options.verify_signatures,
            load_signing_key(options.signing_key),
            tuple(options.trusted_signers),
        )
        self.layout = layout = Layout(self.path)
        check_store_directory(self.path, allow_other_files=options.allow_other_files)
        self._lock = lock = threading.RLock()
        verified = VerifiedObjects(layout.local)
        self._exit_hook = ExitHook(self._exit)
        self._live = live = LiveIndex(layout, options, lock)
        trust, arm_exit = self._trust, self._exit_hook.arm

        def build_write_side() -> WriteSide:  # closes over parts, never over the store
            from marimo_store._writer import WriteSide  # noqa: PLC0415 - writes only

            return WriteSide(
                layout,
                options,
                lock=lock,
                live=live,
                trust=trust,
                verified=verified,
                on_new_session=arm_exit,
            )

        self._write_side = LazyWriteSide(build_write_side, lock)
        self._accesses = AccessBatcher(live, self._write_side, lock, self._exit_hook.arm)
        self._reader = EntryReader(
            layout, options, live, self._trust, verified, note_access=self._accesses.note
        )
        self._compaction: Compactor | None = None  # built by the first cleanup
        self._remote: RemoteTier | None = None
        if options.remote:
            from marimo_store.remote._tier import open_tier  # noqa: PLC0415 - remote only

            self._remote = open_tier(options, layout.local)

    def _compactor(self) -> Compactor:
        """This store's cleanup, imported and built at its first use: most
        processes never clean up, and none pays for it at import."""
        with self._lock:
            if self._compaction is None:
                from marimo_store._compaction import Compactor  # noqa: PLC0415 - cleanups only

                writing = self._write_side()
                self._compaction = Compactor(
                    self.layout,
                    self.options,
                    self._live,
                    writing.writer,
                    self._reader,
                    lock=self._lock,
                    objects_lock=writing.objects_lock,
                    flush_accesses=self._accesses.flush,
                )
            return self._compaction

    # -- configuration and pickling -------------------------------------------------

    @property
    def config(self) -> Mapping[str, Any]:
        """The constructor arguments: all that a pickled copy carries."""
        return MappingProxyType(self.options.config())

    @property
    def cleanup_strategy(self) -> CleanupStrategy:
        """What `cleanup()` drops when it is given no strategy."""
        return self.options.strategy

    def __getattr__(self, name: str) -> Any:
        """Every other option as an attribute of the same name (`store.lock_timeout`)."""
        options = self.__dict__.get("options")
        if options is None or name not in OPTION_NAMES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(options, name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (reopen, (type(self), self.options.config()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FsPersistentStore):
            return NotImplemented
        return type(self) is type(other) and self.options.config() == other.options.config()

    def __hash__(self) -> int:
        items = sorted(self.options.config().items(), key=lambda kv: kv[0])
        return hash((type(self), tuple(items)))

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
        writing = self._write_side()
        stored = writing.writer.put(entry, then=self._accesses.flush)
        if writing.trigger.due():
            writing.background.start(weakref.ref(self))
        if self._remote is not None:
            key = stored.metadata.key
            self._remote.push(Entry(key, entry.contents, entry.user_metadata, entry.format))
        return stored.metadata

    def delete_entries(self, keys: Iterable[ExecutionKey]) -> int:
        """Delete entries by appending tombstones; return how many were live.

        A key with `created_at` deletes that run; without, every run of its
        computation. Deleted entries read as misses here at once and in
        other processes at their next refresh; the next `cleanup()` drops
        them and object GC frees objects nothing else references. With a
        `remote`, they are deleted there too (else a miss here would bring
        them back from it).
        """
        keys = check_keys(keys, "delete_entries")
        deleted = self._write_side().writer.delete(keys)
        if self._remote is not None:
            self._remote.delete(keys)
        return deleted

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
        return self._reader.lookup(key)

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
        found = self._reader.get(key, exact_match_created_at, version_policy)
        if found is None and self._remote is not None:
            return self._remote.fetch(key, exact_match_created_at, version_policy, self._keep)
        return found

    def _keep(self, entry: Entry) -> None:
        """Store a copy of a remote hit here (read-through)."""
        self._write_side().writer.put(entry, then=self._accesses.flush)

    def load_variable(self, key: ExecutionKey, name: str, *, kind: str = "variables") -> Any:
        """Load one variable of an entry without loading the others.

        Raises `NotFoundError` when the entry or the variable is not stored
        or cannot be loaded (with a warning saying why).
        """
        try:
            return self._reader.load_one(key, name, kind, only_bytes=False)
        except NotFoundError:
            if self._remote is None:
                raise
            return self._remote.load_variable(key, name, kind, self._keep)

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
        loaded: bytes = self._reader.load_one(
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
        return self._reader.signature_status(key)

    def history(self, key: ExecutionKey) -> list[EntryMetadata]:
        """Metadata of the runs of `key`'s computation, newest first: every
        run at or before `key.created_at` (all when it is None).

        Catches up with other writers first (at most every
        `refresh_interval`), so a name saved elsewhere is seen; nothing is
        unpickled and objects are not checked.
        """
        local = self._live.history(key)
        return local if self._remote is None else self._remote.history_beside(key, local)

    def entries(self) -> list[EntryMetadata]:
        """Metadata of every live entry, oldest first; nothing is unpickled."""
        return self._live.entries()

    def refresh(self) -> None:
        """Catch up with other writers now, whatever `refresh_interval` says.

        For a caller that knows another process has just put what it is
        about to look up (a single-flight waiter whose lease was released).
        """
        with self._lock:
            self._live.refresh_now()

    def __len__(self) -> int:
        return len(self.entries())

    def __iter__(self) -> Iterator[EntryMetadata]:
        return iter(self.entries())

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
        changes nothing and reports what would be dropped (the report of
        `plan_cleanup(strategy)`).
        """
        return self._compactor().run(
            strategy or self.options.strategy, include_content is not False, dry_run=dry_run
        )

    def plan_cleanup(
        self, strategy: CleanupStrategy | None = None, *, include_content: bool | None = None
    ) -> CleanupPlan:
        """What `cleanup(strategy)` would do, decided now without changing
        anything; `plan.execute()` does it (see `CleanupPlan`, docs/cleanup.md)."""
        return self._compactor().plan(
            strategy or self.options.strategy, include_content is not False
        )

    def clear(self, *, dry_run: bool = False) -> CleanupReport:
        """Drop every entry and delete the objects they used: a cleanup whose
        strategy drops everything (so the same lock, snapshot and object GC
        rules; objects of entries still arriving from another machine wait
        `object_grace_seconds`, as the report's `spared` says). Entries put
        while it runs are kept. `dry_run` lists what would go."""
        from marimo_store._cleanup import drop_everything  # noqa: PLC0415 - cleanups only

        return self.cleanup(drop_everything, dry_run=dry_run)

    # -- checking and repairing ----------------------------------------------------

    def maintenance(self) -> Maintenance:
        """The handle `verify()` and `doctor()` work through (internal; `_maintenance.py`)."""
        from marimo_store._maintenance import Maintenance  # noqa: PLC0415 - maintenance only

        return Maintenance(
            self.options,
            self.layout,
            merged_state=self._compactor().merged_state,
            temp_path=lambda: self._write_side().writer.session_for_this_process().temp_path(),
            cleanup=self.cleanup,
        )

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
            return verify_store(
                self.maintenance(), repair=repair, drop_dangling=drop_dangling, progress=progress
            )
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

        return diagnose(self.maintenance())

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Write waiting access records and seal this instance's log segment
        (and send queued writes to the remote, if any).
        The store stays usable; a later put simply starts a new segment."""
        self._accesses.flush()
        writing = self._write_side.built
        if writing is not None:  # else nothing was written: no segment to seal
            writing.writer.close()
        if self._remote is not None:
            self._remote.close()

    def _exit(self) -> None:
        """At interpreter exit: clean up what this instance stored (or the
        segments that readers left), then seal."""
        try:
            writing = self._write_side()
            if self.options.cleanup_on_exit and (
                writing.writer.wrote_entries or writing.trigger.too_many_segments()
            ):
                self.cleanup()
            self.close()
        except Exception as error:  # exit must never fail because of the cache
            warnings.warn(
                f"marimo_store: cleanup at exit of {self.path} failed: {error}",
                StoreWarning,
                stacklevel=1,
            )
