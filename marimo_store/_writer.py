"""The write path: `EntryWriter` turns an entry into objects and one log record.

A `put` serializes each variable into objects (deduplicated by content
hash, or inline in the record when small), then appends one entry record
to this instance's own log segment. No lock orders puts against each
other: one writer per segment (`WriterSession`, created again in a forked
child) and write-once objects make them safe for any number of processes.
The invariant kept here: object GC never runs between writing (or
reusing) an object and appending the record that references it, since
the put holds the shared `objects` lock across both.

A store imports this module at its first write (`WriteSide`), so a process
that only reads never loads it, the `objects` lock or the cleanup trigger.

Implements W1, W6, W7, W8 (docs/format.md §14).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import warnings
from functools import partial
from types import MappingProxyType

from marimo_store._cleanup_trigger import BackgroundCleanup, CleanupTrigger
from marimo_store._entry import Entry, EntryMetadata, Environment, ObjectRef, now_ms
from marimo_store._environment import current_environment, platform_tag, python_version
from marimo_store._errors import (
    ExecutionKeyClash,
    InvalidArgumentError,
    StoreIOError,
    StoreWarning,
    os_error,
)
from marimo_store._format.framing import pack
from marimo_store._format.keyindex import index_key
from marimo_store._format.layout import temp_name
from marimo_store._format.records import (
    TOMBSTONE_TYPE,
    StoredEntry,
    check_user_metadata,
    encode_entry,
    encode_key_record,
    same_contents,
)
from marimo_store._format.segments import segment_header
from marimo_store._hashing import content_digest, text_digest
from marimo_store._locks import LocalLock
from marimo_store._log import SegmentWriter, new_writer_id
from marimo_store._objects import ObjectDirectory
from marimo_store._serialize import serialize_contents, store_contents
from marimo_store._signing import object_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from marimo_store._entry import ExecutionKey, StoredFormat
    from marimo_store._format.layout import Layout
    from marimo_store._hashed_objects import VerifiedObjects
    from marimo_store._options import StoreOptions
    from marimo_store._refresh import LiveIndex
    from marimo_store._serialize import SerializedValue
    from marimo_store._trust import TrustPolicy


class WriteSide:
    """What one store instance builds at its first write (a put, a delete,
    a batch of access records, a cleanup): its `EntryWriter`, the `objects`
    lock the writer shares with object GC, and the cleanup trigger a put
    consults (with the thread it starts)."""

    __slots__ = ("background", "objects_lock", "trigger", "writer")

    def __init__(
        self,
        layout: Layout,
        options: StoreOptions,
        *,
        lock: threading.RLock,
        live: LiveIndex,
        trust: TrustPolicy,
        verified: VerifiedObjects,
        on_new_session: Callable[[], None],
    ) -> None:
        self.objects_lock = LocalLock(layout.objects_lock)
        self.writer = EntryWriter(
            options,
            live,
            trust,
            lock,
            objects_lock=self.objects_lock,
            new_session=partial(new_session, layout, options, verified),
            on_new_session=on_new_session,
        )
        self.trigger = CleanupTrigger(options, live)
        self.background = BackgroundCleanup()


def new_session(layout: Layout, options: StoreOptions, verified: VerifiedObjects) -> WriterSession:
    """A writer for this process, with its segment header."""
    writer_id = new_writer_id()
    context = Environment(python_version(), platform_tag())
    header = segment_header(writer_id, now_ms(), context)
    return WriterSession(
        layout, options, verified, writer_id=writer_id, context=context, header=header
    )


class WriterSession:
    """What a store instance needs to write in one process: its writer id,
    log segment, object directory and temp names. Created on the first
    write, and again after a fork, so that two processes never share a
    writer."""

    def __init__(
        self,
        layout: Layout,
        options: StoreOptions,
        verified: VerifiedObjects,
        *,
        writer_id: str,
        context: Environment,
        header: dict[str, Any],
    ) -> None:
        self.pid = os.getpid()
        self.writer_id = writer_id
        self._temp_dir = layout.tmp
        self._temp_counter = itertools.count()
        self.context = context
        self.objects = ObjectDirectory(
            layout.objects,
            quarantine_dir=layout.quarantine,
            quarantine_after_seconds=options.object_grace_seconds,
            temp_path=self.temp_path,
            durable=options.durable,
            verify_reads=options.verify_reads,
            verified=verified,
        )
        self.header = header
        self.segments = SegmentWriter(layout.log, writer_id, header, durable=options.durable)
        layout.create(self.temp_path(), durable=options.durable)

    @property
    def own_segment_prefix(self) -> str:
        """How the names of this writer's log segments start."""
        return f"{self.writer_id}."

    def temp_path(self) -> str:
        """A fresh name under `tmp/` that no other writer can pick."""
        return os.path.join(self._temp_dir, temp_name(self.writer_id, next(self._temp_counter)))


class EntryWriter:
    """Puts entries and appends log records for one store instance.

    `new_session` makes this process's `WriterSession`; `on_new_session`
    runs after (the store arms its exit hook, to seal the segment)."""

    def __init__(
        self,
        options: StoreOptions,
        live: LiveIndex,
        trust: TrustPolicy,
        lock: threading.RLock,
        *,
        objects_lock: LocalLock,
        new_session: Callable[[], WriterSession],
        on_new_session: Callable[[], None],
    ) -> None:
        self._options = options
        self._live = live
        self._trust = trust
        self._lock = lock
        self._objects_lock = objects_lock
        self._new_session = new_session
        self._on_new_session = on_new_session
        self._path = options.path
        self.session: WriterSession | None = None
        self.wrote_entries = False
        """Whether this instance stored an entry since its last cleanup."""

    def put(self, entry: Entry, then: Callable[[WriterSession], None]) -> StoredEntry:
        """Store an entry (see `FsPersistentStore.put`); `then(session)` runs
        under the store lock right after its record is appended."""
        if not isinstance(entry, Entry):
            raise InvalidArgumentError(f"put() takes an Entry, got {type(entry).__name__}")
        options = self._options
        user_metadata = check_user_metadata(entry.user_metadata)
        requested = entry.format if entry.format != "auto" else options.auto_variables_format
        serialized = serialize_contents(
            entry.contents, requested, cloudpickle_fallback=options.cloudpickle_fallback
        )
        session = self.session_for_this_process()
        needs_files = any(
            len(part) >= options.inline_threshold
            for variables in serialized.values()
            for value in variables.values()
            for part in (value.stream, *value.buffers)
        )
        # Object GC must not run between writing (or reusing) an object and
        # appending the record that references it: hold the shared lock.
        guard = (
            self._objects_lock.hold(exclusive=False, timeout=options.lock_timeout)
            if needs_files
            else contextlib.nullcontext(True)
        )
        try:
            with guard as locked:
                if not locked:
                    warnings.warn(
                        f"marimo_store: {options.path}: object GC held the objects lock for "
                        f"{options.lock_timeout:g} s; storing without it",
                        StoreWarning,
                        stacklevel=3,
                    )
                return self._write(session, entry.key, serialized, user_metadata, then)
        except OSError as error:
            raise StoreIOError(
                f"cannot write to the store at {options.path}: {error}"
            ) from os_error(error)

    def _write(
        self,
        session: WriterSession,
        requested_key: ExecutionKey,
        serialized: Mapping[str, Mapping[str, SerializedValue]],
        user_metadata: Mapping[str, Any],
        then: Callable[[WriterSession], None],
    ) -> StoredEntry:
        qualifier = (
            text_digest(f"{requested_key.block_id}\x00{requested_key.module_hash}").hex()
            if self._options.object_id_mode == "execution_key_qualified"
            else ""
        )
        inline: dict[str, bytes] = {}
        contents, modules = store_contents(
            serialized, lambda value: self._store_value(session, value, qualifier, inline)
        )
        environment = current_environment(modules)
        with self._lock:
            self._live.refresh(putting=True)
            key = self._assign_created_at(requested_key, contents)
            stored = StoredEntry(
                EntryMetadata(key, MappingProxyType(contents), environment, user_metadata),
                MappingProxyType(inline),
            )
            present = self._live.index.exact(key)
            if present is not None:
                if same_contents(present.metadata.contents, stored.metadata.contents):
                    return present
                raise ExecutionKeyClash(
                    f"{key} is already stored with different contents; use a new "
                    "created_at (or leave it None) for a new run of the same computation"
                )
            stored = self._trust.sign(stored)
            segment = self.append(session, encode_entry(stored, session.context))
            self._live.index.add_entry(stored, segment)
            self.wrote_entries = True
            then(session)  # the writer exists now: accesses ride along
        return stored

    def append(self, session: WriterSession, *records: dict[str, Any]) -> str:
        """Append records to this process's segment (the live index adopts
        the bytes: its own records are not read back); return its file name."""
        keys = [index_key(record) for record in records]
        name, offset = session.segments.append(*map(pack, records), keys=keys)
        self._live.log_reader.adopt(
            name, session.segments.segment_id, session.segments.identity, offset, session.header
        )
        return name

    def _store_value(
        self,
        session: WriterSession,
        serialized: SerializedValue,
        qualifier: str,
        inline: dict[str, bytes],
    ) -> ObjectRef:
        buffers = tuple(
            self._store_object(session, buffer, "buffer", qualifier=qualifier, inline=inline)
            for buffer in serialized.buffers
        )
        return self._store_object(
            session,
            serialized.stream,
            serialized.format,
            qualifier=qualifier,
            inline=inline,
            buffers=buffers,
        )

    def _store_object(
        self,
        session: WriterSession,
        data: bytes | memoryview,
        stored_format: StoredFormat,
        *,
        qualifier: str,
        inline: dict[str, bytes],
        buffers: tuple[ObjectRef, ...] = (),
    ) -> ObjectRef:
        """One object: inside the entry record when small, else a file."""
        size = len(data)
        if size < self._options.inline_threshold:
            object_id = content_digest(data).hex()
            inline[object_id] = bytes(data)
            return ObjectRef(object_id, size, stored_format, buffers, True)
        # A signature covers a file's bytes through their SHA-256 (see _trust.py).
        digest = object_digest(data) if self._trust.key is not None else None
        object_id = session.objects.write(data, qualifier=qualifier, digest=digest)
        return ObjectRef(object_id, size, stored_format, buffers, digest=digest)

    def _assign_created_at(
        self, key: ExecutionKey, contents: Mapping[str, Mapping[str, ObjectRef]]
    ) -> ExecutionKey:
        if key.created_at is not None:
            return key
        index = self._live.index
        # A hybrid logical clock: a run written after another was seen comes
        # after it, whatever the writers' clocks say (a clock ahead by a day
        # must not make every later run look older).
        pinned = key.at(max(now_ms(), index.newest_created_at() + 1))
        while True:
            present = index.exact(pinned)
            # A run deleted in this very millisecond keeps its key dead: move on.
            deleted = present is None and index.is_removed(pinned)
            if not deleted and (
                present is None or same_contents(present.metadata.contents, contents)
            ):
                return pinned
            assert pinned.created_at is not None
            pinned = pinned.at(pinned.created_at + 1)

    def session_for_this_process(self) -> WriterSession:
        """This process's writer, created (with the store directory) on first use."""
        session = self.session
        if session is None or session.pid != os.getpid():
            with self._lock:
                session = self.session
                if session is None or session.pid != os.getpid():
                    try:
                        session = self._new_session()
                    except OSError as error:
                        raise StoreIOError(
                            f"cannot create the store at {self._options.path}: {error}"
                        ) from os_error(error)
                    self.session = session
                    _log_location(self._path)
                    self._on_new_session()
                    self._live.adopt_own_writer(session.pid, session.own_segment_prefix)
        return session

    def delete(self, keys: Iterable[ExecutionKey]) -> int:
        """Append a tombstone for each live run the keys name (see
        `FsPersistentStore.delete_entries`); return how many there were."""
        live = self._live
        with self._lock:
            live.refresh()
            runs = list(
                dict.fromkeys(
                    stored.metadata.key
                    for key in keys
                    for stored in live.index.runs(key, exact=key.created_at is not None)
                )
            )
            if not runs:
                return 0
            now = now_ms()
            try:
                self.append(
                    self.session_for_this_process(),
                    *(encode_key_record(TOMBSTONE_TYPE, run, now) for run in runs),
                )
            except OSError as error:
                message = f"cannot write to the store at {self._path}: {error}"
                raise StoreIOError(message) from os_error(error)
            for run in runs:
                live.index.add_tombstone(run, now)
        return len(runs)

    def close(self) -> None:
        """Seal this instance's log segment; a later write starts a new one."""
        with self._lock:
            session, self.session = self.session, None
            self._live.own_writer = None
        if session is not None and session.pid == os.getpid():
            try:
                session.segments.close()
            except OSError as error:
                message = f"cannot close the log of {self._path}: {error}"
                raise StoreIOError(message) from os_error(error)


_locations_logged: set[str] = set()


def _log_location(path: str) -> None:
    """Say once per process where a store writes (logger `marimo_store`,
    INFO): a default store's place is resolved, not chosen, so a user must
    be able to see it.

    Only where `logging` is imported already: a process that never imported
    it never configured it, and logging's last resort shows WARNING and up,
    so the record would reach no one. Importing it (with `traceback` and
    `tokenize`, ~8 ms) would then only slow the exit of a process that read
    a store, whose first write is its batch of access records."""
    logging = sys.modules.get("logging")
    if logging is None or path in _locations_logged:
        return
    _locations_logged.add(path)
    logging.getLogger("marimo_store").info("marimo_store: writing to the store at %s", path)
