"""`RemoteStore`: the store's format on an object store, as a `Store`.

`RemoteStore("s3://bucket/team-cache")` holds what a store directory holds
(docs/format.md; docs/remote.md): objects by content hash, written once
(`RemoteObjects`), and each writer's records in sealed segments, one new
object per flush (`RemoteWriter`), never appended to or overwritten. A
reader lists the segments, keeps the sealed ones in a local cache, and
answers lookups from the index they make (`RemoteCatalog`). Every `put`
and `delete_entries` flushes at once, so what it returns is on the remote.

The trust rules of docs/security.md apply unchanged: a remote is a shared
folder, so with `verify_signatures` on only values of entries signed by a
trusted key are unpickled, after their objects' SHA-256 is checked. The
invariant: a value is built only from verified bytes of a whole sealed
segment's entry; anything missing, damaged or refused is a miss.
"""

from __future__ import annotations

import os
import threading
from functools import partial
from types import MappingProxyType

from marimo_store._entry import Entry, EntryMetadata, ObjectRef, check_keys, check_lookup_key
from marimo_store._entry import now_ms as _now_ms
from marimo_store._environment import current_environment
from marimo_store._errors import ExecutionKeyClash, InvalidArgumentError, NotFoundError
from marimo_store._format.records import (
    TOMBSTONE_TYPE,
    KeyRecord,
    StoredEntry,
    check_user_metadata,
    encode_entry,
    encode_key_record,
    same_contents,
)
from marimo_store._hashing import content_digest
from marimo_store._named import NamedObjects
from marimo_store._serialize import (
    MISSING,
    load_contents,
    load_value,
    serialize_contents,
    store_contents,
)
from marimo_store._signing import load_signing_key, object_digest
from marimo_store._trust import TrustPolicy, check_trust_options, needs_trust
from marimo_store._versions import check_policy, check_versions
from marimo_store.remote._catalog import RemoteCatalog
from marimo_store.remote._objects import RemoteObjects
from marimo_store.remote._segment_cache import SegmentCache
from marimo_store.remote._writer import RemoteWriter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping
    from typing import Any

    from marimo_store._entry import ExecutionKey
    from marimo_store._findings import VerifyReport
    from marimo_store._media import Medium
    from marimo_store._serialize import SerializedValue
    from marimo_store._trust import VerifyMode
    from marimo_store._verify import Progress
    from marimo_store._versions import VersionPolicy
    from marimo_store.remote._gc import RemoteGcReport


def open_medium(remote: str | Medium) -> Medium:
    """The medium of a remote URL (an `ObjectStoreMedium`), or `remote` itself."""
    if not isinstance(remote, str):
        return remote
    from marimo_store._media.object_store import ObjectStoreMedium  # noqa: PLC0415 - obstore

    return ObjectStoreMedium(remote)


class RemoteStore(NamedObjects):
    """A store on an object store (see the module docstring).

    `remote`: a URL (`s3://bucket/prefix`, `gs://...`, `az://...`,
    `file:///dir`, `memory://`) or a `Medium`. `cache_dir`: where sealed
    segments are kept locally (None: in memory only). `refresh_interval`:
    seconds between listings of the remote's segments. `inline_threshold`,
    `signing_key`, `verify_signatures`, `trusted_signers` as for
    `FsPersistentStore`. `part_bytes`, `parallel`: read large objects in
    ranged parts of this size, this many at once (None, the default: one
    GET each; `PART_BYTES`, 8 MiB, suits S3 itself; see `_objects.py`).
    """

    def __init__(
        self,
        remote: str | Medium,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        refresh_interval: float = 2.0,
        inline_threshold: int = 512,
        signing_key: str | os.PathLike[str] | None = None,
        verify_signatures: VerifyMode = "off",
        trusted_signers: Collection[str] = (),
        part_bytes: int | None = None,
        parallel: int = 8,
    ) -> None:
        check_trust_options(
            {
                "signing_key": signing_key,
                "verify_signatures": verify_signatures,
                "trusted_signers": tuple(trusted_signers),
            }
        )
        self._config: dict[str, Any] = {
            "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
            "refresh_interval": refresh_interval,
            "inline_threshold": inline_threshold,
            "signing_key": signing_key,
            "verify_signatures": verify_signatures,
            "trusted_signers": tuple(sorted(set(trusted_signers))),
            "part_bytes": part_bytes,
            "parallel": parallel,
        }
        self.remote = remote
        self.medium = medium = open_medium(remote)
        self._trust = TrustPolicy(
            repr(medium),
            verify_signatures,
            load_signing_key(signing_key),
            self._config["trusted_signers"],
        )
        self._inline_threshold = inline_threshold
        self.objects = RemoteObjects(medium, part_bytes=part_bytes, parallel=parallel)
        self.catalog = RemoteCatalog(
            medium, SegmentCache(self._config["cache_dir"]), refresh_interval
        )
        self._writer: RemoteWriter | None = None
        self._lock = threading.RLock()

    def __reduce__(self) -> tuple[Any, ...]:
        if not isinstance(self.remote, str):
            raise TypeError("a RemoteStore on a Medium object cannot be pickled; give a URL")
        return (partial(RemoteStore, **self._config), (self.remote,))

    def __repr__(self) -> str:
        return f"RemoteStore({self.remote!r})"

    # -- writing -------------------------------------------------------------------

    def put(self, entry: Entry) -> EntryMetadata:
        """Store an entry; as `FsPersistentStore.put`, flushed to the remote
        before it returns (its objects first, then one sealed segment)."""
        if not isinstance(entry, Entry):
            raise InvalidArgumentError(f"put() takes an Entry, got {type(entry).__name__}")
        user_metadata = check_user_metadata(entry.user_metadata)
        serialized = serialize_contents(
            entry.contents,
            "pickle" if entry.format == "auto" else entry.format,
            cloudpickle_fallback=True,
        )
        inline: dict[str, bytes] = {}
        contents, modules = store_contents(serialized, partial(self._store_value, inline=inline))
        environment = current_environment(modules)
        self.catalog.refresh()
        with self._lock:
            key, present = self._pin(entry.key, contents)
            if present is not None:
                return present.metadata
            stored = StoredEntry(
                EntryMetadata(key, MappingProxyType(contents), environment, user_metadata),
                MappingProxyType(inline),
            )
            stored = self._trust.sign(stored)
            writer = self._writer_for_this_process()
            segment = writer.flush([encode_entry(stored, writer.context)])
            self.catalog.apply(segment, [stored])
        return stored.metadata

    def _store_value(self, value: SerializedValue, *, inline: dict[str, bytes]) -> ObjectRef:
        buffers = tuple(self._store_object(buffer, "buffer", inline) for buffer in value.buffers)
        return self._store_object(value.stream, value.format, inline, buffers)

    def _store_object(
        self,
        data: bytes | memoryview,
        stored_format: Any,
        inline: dict[str, bytes],
        buffers: tuple[ObjectRef, ...] = (),
    ) -> ObjectRef:
        size = len(data)
        if size < self._inline_threshold:
            object_id = content_digest(data).hex()
            inline[object_id] = bytes(data)
            return ObjectRef(object_id, size, stored_format, buffers, True)
        digest = object_digest(data) if self._trust.key is not None else None
        return ObjectRef(self.objects.put(data), size, stored_format, buffers, digest=digest)

    def _pin(
        self, key: ExecutionKey, contents: Mapping[str, Mapping[str, ObjectRef]]
    ) -> tuple[ExecutionKey, StoredEntry | None]:
        """The run a put stores (a hybrid logical clock after every run seen,
        as a store directory's writer), and the equal entry already there."""
        index = self.catalog.index
        with self.catalog.lock:
            created_at = key.created_at
            if created_at is None:
                created_at = max(_now_ms(), index.newest_created_at() + 1)
            while True:
                pinned = key.at(created_at)
                present = index.exact(pinned)
                if present is not None and same_contents(present.metadata.contents, contents):
                    return present.metadata.key, present
                if present is None and not index.is_removed(pinned):
                    return pinned, None
                if key.created_at is not None:
                    raise ExecutionKeyClash(f"{pinned} is already stored with different contents")
                created_at += 1

    def _writer_for_this_process(self) -> RemoteWriter:
        writer = self._writer
        if writer is None or writer.pid != os.getpid():
            writer = self._writer = RemoteWriter(self.medium)
        return writer

    def delete_entries(self, keys: Iterable[ExecutionKey]) -> int:
        """Delete runs by putting a segment of tombstones; how many were live."""
        keys = check_keys(keys, "delete_entries")
        self.catalog.refresh(force=True)
        with self._lock:
            runs = list(dict.fromkeys(stored.metadata.key for stored in self._candidates(keys)))
            if not runs:
                return 0
            now = _now_ms()
            records = [encode_key_record(TOMBSTONE_TYPE, run, now) for run in runs]
            segment = self._writer_for_this_process().flush(records)
            self.catalog.apply(segment, [KeyRecord(TOMBSTONE_TYPE, run, now) for run in runs])
        return len(runs)

    def _candidates(self, keys: Iterable[ExecutionKey]) -> list[StoredEntry]:
        with self.catalog.lock:
            return [
                stored
                for key in keys
                for stored in self.catalog.index.runs(key, exact=key.created_at is not None)
            ]

    # -- reading -------------------------------------------------------------------

    def runs(self, key: ExecutionKey, *, exact: bool, refresh: bool = True) -> list[StoredEntry]:
        """The runs of `key` the remote holds, newest first (listing it first
        when `refresh` and the last listing is older than `refresh_interval`)."""
        check_lookup_key(key, exact)
        if refresh:
            self.catalog.refresh()
        with self.catalog.lock:
            return self.catalog.index.runs(key, exact=exact)

    def get(
        self,
        key: ExecutionKey,
        exact_match_created_at: bool = False,
        *,
        version_policy: VersionPolicy = "warn",
    ) -> Entry | None:
        """The entry for `key` or None; as `FsPersistentStore.get`."""
        check_policy(version_policy)
        return self.load_first(self.runs(key, exact=exact_match_created_at), version_policy)

    def load_first(
        self, runs: Iterable[StoredEntry], version_policy: VersionPolicy
    ) -> Entry | None:
        """The first of `runs` that the trust rules admit and that loads whole."""
        for stored in runs:
            if not self._trust.admits(
                stored, executable=needs_trust(stored.metadata.objects().values())
            ):
                continue
            check_versions(stored.metadata, version_policy, stacklevel=3)
            contents = load_contents(stored.metadata.contents, partial(self._load_value, stored))
            if contents is not None:
                metadata = stored.metadata
                return Entry._trusted(metadata.key, contents, metadata.user_metadata, metadata)
        return None

    def _load_value(self, stored: StoredEntry, ref: ObjectRef) -> Any:
        stream = self._read_object(stored, ref)
        loaded = [self._read_object(stored, buffer) for buffer in ref.buffers]
        key = stored.metadata.key
        return load_value(ref.format, stream, loaded, key, where=" (remote)", stacklevel=5)

    def _read_object(self, stored: StoredEntry, ref: ObjectRef) -> bytes | None:
        if ref.inline:
            return stored.inline[ref.id]
        digest = ref.digest if self._trust.checks else None
        return self.objects.read(ref.id, ref.size, digest)

    def load_variable(self, key: ExecutionKey, name: str, *, kind: str = "variables") -> Any:
        """One variable of the newest loadable run of `key` (`NotFoundError` if none)."""
        for stored in self.runs(key, exact=False):
            ref = stored.metadata.contents.get(kind, {}).get(name)
            if ref is None:
                raise NotFoundError(f"entry {stored.metadata.key} has no {kind} {name!r}")
            if not self._trust.admits(stored, executable=needs_trust((ref,))):
                continue
            value = self._load_value(stored, ref)
            if value is not MISSING:
                return value
        raise NotFoundError(f"no loadable entry for {key}")

    def history(self, key: ExecutionKey) -> list[EntryMetadata]:
        """Metadata of the runs of `key`'s computation, newest first."""
        return [stored.metadata for stored in self.runs(key, exact=False)]

    def entries(self) -> list[EntryMetadata]:
        """Metadata of every live entry, oldest first."""
        self.catalog.refresh()
        with self.catalog.lock:
            held = [stored.metadata for stored in self.catalog.index]
        return sorted(held, key=lambda metadata: (metadata.created_at, metadata.key.block_id))

    def __len__(self) -> int:
        return len(self.entries())

    def __iter__(self) -> Iterator[EntryMetadata]:
        return iter(self.entries())

    # -- maintenance ---------------------------------------------------------------

    def collect_garbage(
        self,
        *,
        grace_seconds: float = 3600.0,
        recheck_seconds: float = 60.0,
        lease_seconds: float = 3600.0,
    ) -> RemoteGcReport:
        """Delete objects no live entry references, under a lease, safe
        while other machines put (`_gc.py`; docs/remote.md)."""
        from marimo_store.remote._gc import collect_garbage  # noqa: PLC0415 - maintenance only

        return collect_garbage(
            self,
            grace_seconds=grace_seconds,
            recheck_seconds=recheck_seconds,
            lease_seconds=lease_seconds,
        )

    def verify(
        self,
        *,
        repair: bool = False,
        progress: Progress | None = None,
        lease_seconds: float = 3600.0,
    ) -> VerifyReport:
        """Re-hash every object, decode every segment, check every entry's
        objects; with `repair`, under the lease, delete damaged objects,
        move undecodable segments to `quarantine/` and tombstone entries
        left without objects (`_verify.py`; docs/remote.md)."""
        from marimo_store.remote._verify import verify_remote  # noqa: PLC0415 - maintenance only

        return verify_remote(self, repair=repair, progress=progress, lease_seconds=lease_seconds)

    # -- lifecycle -----------------------------------------------------------------

    def refresh(self) -> None:
        """List the remote now, whatever `refresh_interval` says."""
        self.catalog.refresh(force=True)

    def close(self) -> None:
        """Nothing waits: every put and delete was flushed when it returned."""
