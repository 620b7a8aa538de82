"""`RemoteTier`: a remote behind a local `FsPersistentStore` (`remote=`).

Reads go through: a local miss asks the remote, and a remote hit is copied
into the local store (the next hit is local). Writes go to the local store
first, then to the remote: at once (`remote_write="through"`), or queued
for a background thread (`"back"`), in a bounded queue (a full queue makes
the put wait, then warn and keep the entry local only) that is flushed at
exit and on `close()`.

A remote must never make a cache slower than no cache: the remote's index
is answered from memory, and listing the remote runs in the background. A
lookup waits for a listing (at most `remote_timeout` seconds) only when
the remote was never listed in this process; after that, a lookup answers
from the last listing at once while the next one runs (a miss the remote
answered costs no request: the negative-lookup cache is the listing
itself, renewed every `refresh_interval`). The invariant: a remote that
fails or stalls costs a warning and a miss, never an error from `get` or
a wrong value, and never the local copy of what `put` stored.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import warnings
import weakref

from marimo_store._errors import NotFoundError, StoreError, StoreWarning
from marimo_store._hashing import content_digest
from marimo_store.tiered import fill_copy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from marimo_store._entry import Entry, EntryMetadata, ExecutionKey
    from marimo_store._options import StoreOptions
    from marimo_store._versions import VersionPolicy
    from marimo_store.remote.store import RemoteStore

EXIT_FLUSH_SECONDS = 120.0
"""How long exit waits for queued writes to reach the remote."""


class RemoteTier:
    """The remote of one local store (see the module docstring)."""

    def __init__(
        self, remote: RemoteStore, *, write_back: bool, timeout: float, queue_size: int = 64
    ) -> None:
        self.remote = remote
        self.timeout = timeout
        self._listed_once = threading.Event()
        self._listing: threading.Thread | None = None
        self._listing_lock = threading.Lock()
        self._queue: queue.Queue[Entry] | None = None
        self._warned: set[str] = set()
        if write_back:
            self._queue = queue.Queue(maxsize=queue_size)
            threading.Thread(
                target=_drain, args=(weakref.ref(self), self._queue), daemon=True
            ).start()
            atexit.register(_flush_at_exit, weakref.ref(self))

    def _warn(self, what: str, error: Exception) -> None:
        message = f"marimo_store: remote {self.remote.remote}: {what}: {error}"
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, StoreWarning, stacklevel=4)

    # -- the index ----------------------------------------------------------------

    def _list_in_background(self) -> None:
        with self._listing_lock:
            if self._listing is not None and self._listing.is_alive():
                return
            self._listing = threading.Thread(target=self._list, daemon=True)
            self._listing.start()

    def _list(self) -> None:
        try:
            self.remote.catalog.refresh()
        except StoreError as error:
            self._warn("listing failed (its entries are misses until it answers)", error)
        finally:
            self._listed_once.set()

    def _fresh_enough(self) -> None:
        """Start a listing when the last is older than `refresh_interval`;
        wait for it (at most `timeout`) only if none ever finished."""
        if self.remote.catalog.stale:
            self._list_in_background()
        else:  # listed by a put or a delete here: answered
            self._listed_once.set()
        if not self._listed_once.is_set() and not self._listed_once.wait(self.timeout):
            self._listed_once.set()  # waited once: later lookups answer without waiting
            self._warn("no answer in time", TimeoutError(f"{self.timeout:g} s"))

    # -- reading ------------------------------------------------------------------

    def fetch(
        self,
        key: ExecutionKey,
        exact: bool,
        version_policy: VersionPolicy,
        keep: Callable[[Entry], object],
    ) -> Entry | None:
        """The remote's entry for `key`, or None (a miss, also when the
        remote fails or has not answered in time). A hit is given to `keep`
        (the local store's put) as a copy with its run pinned, so the next
        hit is local; a copy that fails to keep costs a warning only."""
        self._fresh_enough()
        runs = self.remote.runs(key, exact=exact, refresh=False)
        if not runs:
            return None
        try:
            found = self.remote.load_first(runs, version_policy)
        except StoreError as error:
            if not isinstance(error, OSError):
                raise  # a version or trust refusal in strict mode is the caller's
            self._warn("reading failed", error)
            return None
        if found is not None and found.metadata is not None:
            try:
                keep(fill_copy(found, found.metadata))
            except StoreError as error:
                warnings.warn(
                    f"marimo_store: could not keep a local copy of {found.key} "
                    f"from the remote {self.remote.remote}: {error}",
                    StoreWarning,
                    stacklevel=4,
                )
        return found

    def load_variable(
        self, key: ExecutionKey, name: str, kind: str, keep: Callable[[Entry], object]
    ) -> Any:
        """One variable of the remote's newest run of `key` (kept locally as
        `fetch` does); `NotFoundError` when the remote has no such variable."""
        found = self.fetch(key, False, "ignore", keep)
        if found is None or name not in found.contents.get(kind, {}):
            raise NotFoundError(f"{kind[:-1] if kind.endswith('s') else kind} {name!r} of {key}")
        return found.contents[kind][name]

    def history_beside(self, key: ExecutionKey, local: list[EntryMetadata]) -> list[EntryMetadata]:
        """`local` (metadata of the local store's runs of `key`) with the
        runs only the remote holds, newest first."""
        self._fresh_enough()
        here = {metadata.created_at for metadata in local}
        remote = [
            stored.metadata
            for stored in self.remote.runs(key, exact=False, refresh=False)
            if stored.metadata.created_at not in here
        ]
        return sorted([*local, *remote], key=lambda metadata: metadata.created_at, reverse=True)

    # -- writing ------------------------------------------------------------------

    def push(self, entry: Entry) -> None:
        """Store an entry (its key pinned by the local store) on the remote."""
        if self._queue is None:
            self._put(entry)
            return
        try:
            self._queue.put(entry, timeout=self.timeout)
        except queue.Full:
            self._warn("the write-back queue stayed full; kept locally only", TimeoutError())

    def _put(self, entry: Entry) -> None:
        try:
            self.remote.put(entry)
        except StoreError as error:
            self._warn(f"storing {entry.key} failed; kept locally only", error)

    def delete(self, keys: list[ExecutionKey]) -> None:
        """Delete runs on the remote too, after the queued puts (a failure
        warns: the runs stay deleted here)."""
        self.flush(EXIT_FLUSH_SECONDS)
        try:
            self.remote.delete_entries(keys)
        except StoreError as error:
            self._warn("deleting failed; deleted locally only", error)

    def flush(self, timeout: float) -> bool:
        """Wait until queued writes reached the remote (at most `timeout`)."""
        pending = self._queue
        if pending is None:
            return True
        done = threading.Event()

        def wait() -> None:
            pending.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        """Send queued writes (waiting at most `EXIT_FLUSH_SECONDS`)."""
        if not self.flush(EXIT_FLUSH_SECONDS):
            warnings.warn(
                f"marimo_store: remote {self.remote.remote}: queued writes were not all "
                f"sent within {EXIT_FLUSH_SECONDS:g} s; they stay local only",
                StoreWarning,
                stacklevel=2,
            )


def _drain(reference: weakref.ref[RemoteTier], pending: queue.Queue[Entry]) -> None:
    """The write-back thread: puts queued entries on the remote, in order."""
    while True:
        entry = pending.get()
        try:
            tier = reference()
            if tier is not None:
                tier._put(entry)
            del tier
        finally:
            pending.task_done()


def _flush_at_exit(reference: weakref.ref[RemoteTier]) -> None:
    tier = reference()
    if tier is not None:
        tier.close()


def open_tier(options: StoreOptions, local_dir: str) -> RemoteTier:
    """The remote tier of a local store with these options; sealed segments
    are cached in the store's machine-local directory `local_dir`."""
    from marimo_store.remote.store import RemoteStore  # noqa: PLC0415 - imports obstore

    remote = RemoteStore(
        options.remote,
        cache_dir=os.path.join(
            local_dir, "remote-" + content_digest(options.remote.encode()).hex()
        ),
        inline_threshold=options.inline_threshold,
        signing_key=options.signing_key,
        verify_signatures=options.verify_signatures,
        trusted_signers=options.trusted_signers,
    )
    return RemoteTier(
        remote, write_back=options.remote_write == "back", timeout=options.remote_timeout
    )
