"""`FsPersistentStore`: the persistent, content-addressed execution cache.

A `put` serializes each variable into objects (deduplicated by content
hash), then appends one entry record to this instance's own log segment. A
`get` looks the key up in an in-memory index merged from every writer's
segments and loads the objects, verifying each one. No lock is taken on
either path: one writer per segment and write-once objects make them safe
for any number of processes, and a damaged or missing file is only a miss.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal, cast

from marimo_store._entry import (
    ContentFormat,
    Entry,
    EntryMetadata,
    Environment,
    ExecutionKey,
    ObjectRef,
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
)
from marimo_store._hashing import content_digest, text_digest
from marimo_store._index import EntryIndex
from marimo_store._layout import FORMAT_VERSION, Layout
from marimo_store._log import HEADER_TYPE, LogReader, SegmentWriter, new_writer_id, pack
from marimo_store._objects import ObjectDirectory
from marimo_store._records import (
    ENTRY_TYPE,
    StoredEntry,
    check_user_metadata,
    decode_entry,
    encode_entry,
    same_contents,
)
from marimo_store._serialize import (
    SerializedValue,
    deserialize,
    serialize_json,
    serialize_pickle,
)

Durability = Literal["flush", "fsync"]
ObjectIdMode = Literal["deduplication", "execution_key_qualified"]

_CHOICES: dict[str, tuple[Any, ...]] = {
    "object_id_mode": ("deduplication", "execution_key_qualified"),
    "auto_variables_format": ("pickle", "json"),
    "durability": ("flush", "fsync"),
}


def _reopen(cls: type[FsPersistentStore], config: dict[str, Any]) -> FsPersistentStore:
    return cls(**config)


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
            temp_path=self.temp_path,
            durable=store.durability == "fsync",
            verify_reads=store.verify_reads,
        )
        self.header: dict[str, Any] = {
            "t": HEADER_TYPE,
            "v": FORMAT_VERSION,
            "writer": self.writer_id,
            "created_at": now_ms(),
            "python": self.context.python,
            "platform": self.context.platform,
        }
        self.segments = SegmentWriter(
            layout.log, self.writer_id, self.header, durable=store.durability == "fsync"
        )
        layout.create(self.temp_path(), durable=store.durability == "fsync")

    def temp_path(self) -> str:
        """A fresh name under `tmp/` that no other writer can pick."""
        return os.path.join(self._temp_dir, f"{self.writer_id}-{next(self._temp_counter)}.tmp")


class FsPersistentStore:
    """A persistent execution cache in a directory (see docs/format.md).

    Arguments (each also a `.marimo.toml` key of the same name):

    - `path`: the store directory; created on the first `put`.
    - `object_id_mode`: `"deduplication"` (default) names objects by content
      alone, so equal values share one file; `"execution_key_qualified"`
      adds the entry's key to the name, so no object is shared across
      entries (for stores that several machines clean up concurrently).
    - `auto_variables_format`: what `format="auto"` means (`"pickle"` or
      `"json"`).
    - `inline_threshold`: serialized values smaller than this many bytes
      are kept inside the entry record instead of as files.
    - `durability`: `"flush"` (default) hands writes to the OS; a power cut
      may lose the newest entries, which then read as misses, never as
      wrong values (every read is verified). `"fsync"` makes each `put`
      durable before it returns, at a cost (see docs/format.md).
    - `verify_reads`: check every object's hash before using it (default).
      Objects this process wrote or already verified, and that have not
      changed since, are not hashed again.
    - `cloudpickle_fallback`: pickle lambdas, closures and `__main__`
      classes by value with cloudpickle; when False they raise
      `SerializationError`.
    - `memory_map`: load out-of-band buffers (numpy arrays, ...) by memory
      mapping (read-only arrays, no copy) rather than reading them.
    - `refresh_interval`: seconds between re-reads of other writers' logs
      after a miss; a miss within this interval of the last re-read does
      not look at the disk again.
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
        refresh_interval: float = 0.2,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise ConfigError(f"path must be a str or os.PathLike, got {path!r}")
        self._config: dict[str, Any] = {
            "path": os.path.abspath(os.fspath(path)),
            "object_id_mode": object_id_mode,
            "auto_variables_format": auto_variables_format,
            "inline_threshold": inline_threshold,
            "durability": durability,
            "verify_reads": verify_reads,
            "cloudpickle_fallback": cloudpickle_fallback,
            "memory_map": memory_map,
            "refresh_interval": refresh_interval,
        }
        _validate(self._config)
        self.path: str = self._config["path"]
        self.object_id_mode: ObjectIdMode = object_id_mode
        self.auto_variables_format = auto_variables_format
        self.inline_threshold = inline_threshold
        self.durability: Durability = durability
        self.verify_reads = verify_reads
        self.cloudpickle_fallback = cloudpickle_fallback
        self.memory_map = memory_map
        self.refresh_interval = float(refresh_interval)
        self.layout = Layout(self.path)
        self.layout.check_format()
        self._lock = threading.RLock()
        self._index = EntryIndex()
        self._log_reader = LogReader(self.layout.log)
        self._last_refresh = -float("inf")
        self._reader_objects = ObjectDirectory(
            self.layout.objects,
            quarantine_dir=self.layout.quarantine,
            temp_path=lambda: "",  # the reading side never writes objects
            durable=False,
            verify_reads=verify_reads,
        )
        self._writing: _Writing | None = None

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
        return hash((type(self), tuple(sorted(self._config.items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    # -- writing -------------------------------------------------------------------

    def put(self, entry: Entry) -> EntryMetadata:
        """Store an entry; return its metadata (with `created_at` filled in).

        Putting the same key with the same contents again is a no-op that
        returns the stored metadata; with different contents it raises
        `ExecutionKeyClash`. Without `created_at`, the key gets the current
        time (moved on by a millisecond if that run is taken).
        """
        if not isinstance(entry, Entry):
            raise InvalidArgumentError(f"put() takes an Entry, got {type(entry).__name__}")
        user_metadata = check_user_metadata(entry.user_metadata)
        writing = self._writing_for_this_process()
        requested = entry.format if entry.format != "auto" else self.auto_variables_format
        draft_key = entry.key if entry.key.created_at is not None else entry.key.at(0)
        qualifier = (
            text_digest(f"{draft_key.block_id}\x00{draft_key.module_hash}").hex()
            if self.object_id_mode == "execution_key_qualified"
            else ""
        )
        inline: dict[str, bytes] = {}
        modules: set[str] = set()
        contents: dict[str, Mapping[str, ObjectRef]] = {}
        try:
            for kind, variables in sorted(entry.contents.items()):
                refs: dict[str, ObjectRef] = {}
                for name in sorted(variables):
                    serialized = self._serialize(name, variables[name], requested)
                    modules |= serialized.modules
                    refs[name] = self._store_value(writing, serialized, qualifier, inline)
                contents[kind] = MappingProxyType(refs)
        except OSError as error:
            raise StoreIOError(f"cannot write objects under {self.path}: {error}") from error
        environment = current_environment(modules)
        with self._lock:
            key = self._assign_created_at(entry.key, contents)
            stored = StoredEntry(
                EntryMetadata(key, MappingProxyType(contents), environment, user_metadata),
                MappingProxyType(inline),
            )
            present = self._index.exact(key)
            if present is not None:
                if same_contents(present.metadata.contents, stored.metadata.contents):
                    return present.metadata
                raise ExecutionKeyClash(
                    f"{key} is already stored with different contents; use a new "
                    "created_at (or leave it None) for a new run of the same computation"
                )
            payload = pack(encode_entry(stored, writing.context))
            try:
                name, offset = writing.segments.append(payload)
            except OSError as error:
                raise StoreIOError(f"cannot append to the log of {self.path}: {error}") from error
            self._log_reader.adopt(name, writing.segments.identity, offset, writing.header)
            self._index.add(stored)
        return stored.metadata

    def _serialize(self, name: str, value: Any, requested: ContentFormat) -> SerializedValue:
        if requested == "json":
            return serialize_json(name, value)
        return serialize_pickle(name, value, cloudpickle_fallback=self.cloudpickle_fallback)

    def _store_value(
        self,
        writing: _Writing,
        serialized: SerializedValue,
        qualifier: str,
        inline: dict[str, bytes],
    ) -> ObjectRef:
        buffers = tuple(
            ObjectRef(writing.objects.write(buffer, qualifier=qualifier), buffer.nbytes, "buffer")
            for buffer in serialized.buffers
        )
        stream = serialized.stream
        if len(stream) < self.inline_threshold:
            ref = ObjectRef(
                content_digest(stream).hex(), len(stream), serialized.format, buffers, True
            )
            inline[ref.id] = stream
            return ref
        object_id = writing.objects.write(stream, qualifier=qualifier)
        return ObjectRef(object_id, len(stream), serialized.format, buffers)

    def _assign_created_at(
        self, key: ExecutionKey, contents: Mapping[str, Mapping[str, ObjectRef]]
    ) -> ExecutionKey:
        if key.created_at is not None:
            return key
        pinned = key.at(now_ms())
        while True:
            present = self._index.exact(pinned)
            if present is None or same_contents(present.metadata.contents, contents):
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
        return writing

    # -- reading -------------------------------------------------------------------

    def get(self, key: ExecutionKey, exact_match_created_at: bool = False) -> Entry | None:
        """The stored entry for `key`, with its values, or None (a miss).

        Without `exact_match_created_at`, `key.created_at` is an upper
        bound: the newest run at or before it (or the newest of all when it
        is None) that loads completely is returned. A hit is always
        complete: any missing or damaged object makes that run a miss.
        """
        for stored in self._candidates(key, exact_match_created_at):
            contents = self._load_contents(stored)
            if contents is not None:
                metadata = stored.metadata
                return Entry(metadata.key, contents, metadata.user_metadata, metadata=metadata)
        return None

    def load_variable(self, key: ExecutionKey, name: str, *, kind: str = "variables") -> Any:
        """Load one variable of an entry without loading the others.

        Raises `NotFoundError` when the entry or the variable is not stored
        or cannot be loaded (with a warning saying why).
        """
        for stored in self._candidates(key, exact=False):
            ref = stored.metadata.contents.get(kind, {}).get(name)
            if ref is None:
                raise NotFoundError(f"entry {stored.metadata.key} has no {kind} {name!r}")
            loaded = self._load_value(stored, ref)
            if loaded is not _MISSING:
                return loaded
        raise NotFoundError(f"no loadable entry for {key}")

    def entries(self) -> list[EntryMetadata]:
        """Metadata of every live entry, oldest first; nothing is unpickled."""
        with self._lock:
            self._refresh()
            return sorted(
                (stored.metadata for stored in self._index),
                key=lambda metadata: (metadata.created_at, metadata.key.block_id),
            )

    def __len__(self) -> int:
        return len(self.entries())

    def __iter__(self) -> Iterator[EntryMetadata]:
        return iter(self.entries())

    def _candidates(self, key: ExecutionKey, exact: bool) -> list[StoredEntry]:
        if not isinstance(key, ExecutionKey):
            raise InvalidArgumentError(f"expected an ExecutionKey, got {type(key).__name__}")
        if exact and key.created_at is None:
            raise InvalidArgumentError("exact_match_created_at needs a key with created_at")
        with self._lock:
            found = self._index.runs(key, exact=exact)
            if not found:
                self._refresh()
                found = self._index.runs(key, exact=exact)
            return found

    def _refresh(self) -> None:
        """Read what other writers appended, at most every `refresh_interval`.

        The first call always reads: it is what opening the store means.
        """
        now = time.monotonic()
        if now - self._last_refresh < self.refresh_interval:
            return
        self._last_refresh = now
        for header, record in self._log_reader.read_new():
            if record.get("t") != ENTRY_TYPE:
                continue
            python, platform = header.get("python"), header.get("platform")
            if not isinstance(python, str) or not isinstance(platform, str):
                continue
            stored = decode_entry(record, Environment(python, platform))
            if stored is not None:
                self._index.add(stored)

    def _load_contents(self, stored: StoredEntry) -> dict[str, dict[str, Any]] | None:
        contents: dict[str, dict[str, Any]] = {}
        for kind, refs in stored.metadata.contents.items():
            values: dict[str, Any] = {}
            for name, ref in refs.items():
                value = self._load_value(stored, ref)
                if value is _MISSING:
                    return None
                values[name] = value
            contents[kind] = values
        return contents

    def _load_value(self, stored: StoredEntry, ref: ObjectRef) -> Any:
        objects = self._objects_for_reading()
        stream = (
            stored.inline[ref.id]
            if ref.inline
            else objects.read(ref.id, ref.size, memory_map=False)
        )
        buffers = [
            objects.read(buffer.id, buffer.size, memory_map=self.memory_map)
            for buffer in ref.buffers
        ]
        if stream is None or any(buffer is None for buffer in buffers):
            return _MISSING
        try:
            return deserialize(ref.format, stream, cast(list[memoryview], buffers))
        except Exception as error:  # a value that no longer loads is a miss, not a crash
            warnings.warn(
                f"marimo_store: cannot load a value of entry {stored.metadata.key}: "
                f"{type(error).__name__}: {error}; treated as a miss",
                StoreWarning,
                stacklevel=4,
            )
            return _MISSING

    def _objects_for_reading(self) -> ObjectDirectory:
        # The writer's directory knows which files this process wrote itself.
        writing = self._writing
        if writing is not None and writing.pid == os.getpid():
            return writing.objects
        return self._reader_objects

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Seal this instance's log segment. The store stays usable; a later
        put simply starts a new segment."""
        with self._lock:
            writing = self._writing
            self._writing = None
        if writing is not None and writing.pid == os.getpid():
            try:
                writing.segments.close()
            except OSError as error:
                raise StoreIOError(f"cannot close the log of {self.path}: {error}") from error

    def __enter__(self) -> FsPersistentStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_MISSING: Any = object()


def _validate(config: Mapping[str, Any]) -> None:
    for name, allowed in _CHOICES.items():
        if config[name] not in allowed:
            raise ConfigError(
                f"{name} must be one of {', '.join(map(repr, allowed))}, got {config[name]!r}"
            )
    threshold = config["inline_threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ConfigError(f"inline_threshold must be an int >= 0, got {threshold!r}")
    interval = config["refresh_interval"]
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        raise ConfigError(f"refresh_interval must be a number >= 0, got {interval!r}")
    for name in ("verify_reads", "cloudpickle_fallback", "memory_map"):
        if not isinstance(config[name], bool):
            raise ConfigError(f"{name} must be True or False, got {config[name]!r}")
