"""The read path: `EntryReader` finds the runs of a key and loads their values.

A `get` looks the key up in the live index (merged from every writer's
segments) and loads the objects, verifying each one. No lock is taken on
the files: write-once objects make reads safe beside any number of
writers, and a damaged or missing file is only a miss. The trust gate
(`admits`) sits before anything is unpickled: with `verify_signatures` on,
only values of trusted entries load (docs/security.md).

Implements R1, R5 (docs/format.md §14).
"""

from __future__ import annotations

from functools import partial

from marimo_store import _fs
from marimo_store._entry import Entry
from marimo_store._errors import NotFoundError
from marimo_store._objects import ObjectDirectory
from marimo_store._serialize import MISSING, load_contents, load_value
from marimo_store._trust import needs_trust
from marimo_store._versions import check_policy, check_versions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from marimo_store._entry import EntryMetadata, ExecutionKey, ObjectRef
    from marimo_store._format.layout import Layout
    from marimo_store._format.records import StoredEntry
    from marimo_store._hashed_objects import VerifiedObjects
    from marimo_store._objects import MmapMode
    from marimo_store._options import StoreOptions
    from marimo_store._refresh import LiveIndex
    from marimo_store._trust import SignatureStatus, TrustPolicy
    from marimo_store._versions import VersionPolicy


class EntryReader:
    """Loads entries of one store instance; `note_access(key)` is told of
    every hit (for LRU cleanup and hit counts)."""

    def __init__(
        self,
        layout: Layout,
        options: StoreOptions,
        live: LiveIndex,
        trust: TrustPolicy,
        verified: VerifiedObjects,
        *,
        note_access: Callable[[ExecutionKey], None],
    ) -> None:
        self._options = options
        self._live = live
        self._trust = trust
        self._note_access = note_access
        self.objects = ObjectDirectory(
            layout.objects,
            quarantine_dir=layout.quarantine,
            quarantine_after_seconds=options.object_grace_seconds,
            temp_path=lambda: "",  # the reading side never writes objects
            durable=False,
            verify_reads=options.verify_reads,
            verified=verified,
        )

    def lookup(self, key: ExecutionKey) -> EntryMetadata | None:
        """See `FsPersistentStore.lookup`."""
        for stored in self._live.candidates(key, exact=False):
            if self.objects_here(stored) and self._admits(stored, quiet=True):
                return stored.metadata
        return None

    def get(
        self, key: ExecutionKey, exact_match_created_at: bool, version_policy: VersionPolicy
    ) -> Entry | None:
        """See `FsPersistentStore.get`."""
        check_policy(version_policy)
        for stored in self._live.candidates(key, exact_match_created_at):
            if not self._admits(stored):
                continue
            check_versions(stored.metadata, version_policy, stacklevel=3)
            contents = load_contents(stored.metadata.contents, partial(self._load_value, stored))
            if contents is not None:
                metadata = stored.metadata
                self._note_access(metadata.key)
                return Entry._trusted(metadata.key, contents, metadata.user_metadata, metadata)
        return None

    def signature_status(self, key: ExecutionKey) -> SignatureStatus | None:
        """See `FsPersistentStore.signature_status`."""
        found = self._live.candidates(key, exact=True)
        return self._trust.status(found[0]) if found else None

    def load_one(
        self,
        key: ExecutionKey,
        name: str,
        kind: str,
        *,
        only_bytes: bool,
        requires_trust: bool = False,
    ) -> Any:
        """One variable of the newest loadable run (`NotFoundError` if none)."""
        for stored in self._live.candidates(key, exact=False):
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

    def objects_here(self, stored: StoredEntry) -> bool | None:
        """Whether every object file of the entry is here at its recorded size.

        False: one is absent or has another size (not delivered yet, or
        still being copied: the entry dangles). None: none is known to be
        absent, but one cannot be read right now."""
        here: bool | None = True
        for ref in stored.metadata.objects().values():
            if ref.inline or ref.size == 0:
                continue
            try:
                if _fs.stat(self.objects.path_of(ref.id)).st_size != ref.size:
                    return False
            except (FileNotFoundError, NotADirectoryError):
                return False
            except OSError:
                here = None
        return here

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

    def _load_value(self, stored: StoredEntry, ref: ObjectRef) -> Any:
        memory_map = self._options.memory_map
        mode = self._options.mmap_mode if memory_map else None
        # A bytes value is copied out whole anyway: a read-only map saves one copy.
        stream = self._read_object(
            stored, ref, memory_map="r" if memory_map and ref.format == "bytes" else None
        )
        loaded = [self._read_object(stored, buffer, memory_map=mode) for buffer in ref.buffers]
        return load_value(ref.format, stream, loaded, stored.metadata.key, stacklevel=5)

    def _read_object(
        self, stored: StoredEntry, ref: ObjectRef, *, memory_map: MmapMode | None
    ) -> Any:
        """An object's verified bytes (from the record when inline), or None.
        With `verify_signatures` on, a recorded SHA-256 is checked too."""
        if ref.inline:
            return stored.inline[ref.id]
        digest = ref.digest if self._trust.checks else None
        return self.objects.read(ref.id, ref.size, memory_map=memory_map, digest=digest)
