"""`MarimoStore`: marimo's cache `Store` interface on an `FsPersistentStore`.

marimo (0.25) caches `mo.persistent_cache` blocks and functions through a
byte key-value store, `marimo._save.stores.Store`, and lets the user pick
one in the configuration (entry point group `marimo.cache.store`; this
package registers `fs_persistent`). Its default `FileStore` writes one file
per key. Through `MarimoStore` the same keys get what the store has:
deduplication, verified reads, cleanup, and safe sharing by sync tools.

How keys become entries is in `_marimo_keys.py`; docs/marimo.md has the
configuration and marimo's own rules about it.

This module imports marimo (for the base class) when marimo is installed,
and works without it; `import marimo_store` does not import it.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path

from marimo_store._cleanup import DefaultCleanupStrategy
from marimo_store._entry import ExecutionKey
from marimo_store._errors import (
    ConfigError,
    InvalidArgumentError,
    NotFoundError,
    StoreIOError,
    StoreWarning,
)
from marimo_store._marimo_keys import (
    BLOB,
    DEFAULT_STORE_PATH,
    MANIFEST,
    PERSIST_DIR,
    MarimoKey,
    holds_json,
    marimo_entry,
    parse_marimo_key,
)
from marimo_store.store import FsPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from marimo._save.stores.store import Store as _MarimoStoreBase
else:
    try:
        from marimo._save.stores.store import Store as _MarimoStoreBase
    except ImportError:  # marimo is optional: the class works on its own
        _MarimoStoreBase = object

__all__ = ["MarimoStore"]

_MAX_PENDING_ENTRIES = 32
"""Lazy entries whose blobs arrived but whose manifest did not yet. marimo
writes the manifest right after the blobs; an entry that never gets one
(its write failed) is forgotten once this many newer ones are waiting."""


class MarimoStore(_MarimoStoreBase):
    """A marimo cache store (`mo.persistent_cache(store=...)` or the
    `fs_persistent` entry in marimo's configuration) backed by an
    `FsPersistentStore`.

    Takes the arguments of `FsPersistentStore`; what they leave out comes
    from the configuration files, as for an `App`'s store (`[fs_persister]`
    in the nearest `.marimo.toml` or `pyproject.toml`, then the user's file;
    see docs/cache.md), read on first use, when the notebook's directory is
    known. Without a path from either, the store is `__marimo__/persist`
    beside the notebook, where marimo puts its own `__marimo__/cache`.
    `cleanup_strategy` may also be a mapping of `DefaultCleanupStrategy`
    arguments, since marimo's configuration can only pass plain data.

    Every key of one marimo entry (a pickle or json file; a lazy entry's
    manifest and its blobs) is a variable of one store entry, so they are
    kept and dropped together; `clear(key)` deletes that whole entry. A lazy
    entry's blobs wait in memory until its manifest arrives (marimo writes
    the manifest last), so an interrupted write stores nothing. Values are
    kept as the exact bytes marimo gave (`format="bytes"`), cut so that equal
    data, such as one array in two blocks, is stored once; the store never
    unpickles anything on marimo's behalf. With `verify_signatures` on, keys
    whose bytes marimo unpickles (all but `.json` and `.jsonl` ones) are
    served only from entries signed by a trusted key (docs/security.md).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, **options: Any) -> None:
        strategy = options.get("cleanup_strategy")
        if isinstance(strategy, Mapping):
            try:
                options["cleanup_strategy"] = DefaultCleanupStrategy(**strategy)
            except TypeError as error:
                raise ConfigError(f"cleanup_strategy: {error}") from error
        # Checked now, so bad arguments fail here rather than at the first cache hit.
        FsPersistentStore(path if path is not None else DEFAULT_STORE_PATH, **options)
        self._options = options
        self._path = path
        self._store: FsPersistentStore | None = None
        self._lock = threading.Lock()
        self._pending: dict[ExecutionKey, dict[str, bytes]] = {}

    @property
    def store(self) -> FsPersistentStore:
        """The `FsPersistentStore` behind this marimo store (opened on first use)."""
        store = self._store
        if store is None:
            with self._lock:
                store = self._store
                if store is None:
                    store = self._store = self._open()
        return store

    def _open(self) -> FsPersistentStore:
        """The store for the notebook's directory: the arguments given, over
        the configuration files."""
        from marimo_store.config import read_settings  # noqa: PLC0415 - reads files

        directory = _notebook_directory()
        settings = read_settings(directory)
        options = dict(settings.store_options)
        if settings.cleanup_strategy is not None:
            options["cleanup_strategy"] = settings.cleanup_strategy
        options.update(self._options)
        path = self._path if self._path is not None else settings.dir_path
        return FsPersistentStore(path or _default_path(directory), **options)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self._path, dict(self._options)))

    def __repr__(self) -> str:
        return f"MarimoStore({self.store.path!r})"

    # -- marimo's Store interface --------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The bytes stored under a marimo key, or None.

        The file of a pickle or json entry and a lazy entry's manifest are
        found only when every object of their entry is present, so marimo
        never starts loading an entry that cannot load completely.
        """
        parsed = parse_marimo_key(key)
        with self._lock:
            waiting = self._pending.get(parsed.execution_key, {}).get(parsed.key)
        if waiting is not None:
            return waiting
        store = self.store
        entry_key = parsed.execution_key
        if parsed.role != BLOB:
            metadata = store.lookup(entry_key)
            if metadata is None or parsed.key not in metadata.variables:
                return None
            entry_key = metadata.key
        try:
            return store.load_bytes(entry_key, parsed.key, requires_trust=_unpickled(parsed.key))
        except NotFoundError:
            return None

    def put(self, key: str, value: bytes) -> bool:
        """Store `value` under a marimo key; False (and a warning) if the
        store cannot be written."""
        parsed = parse_marimo_key(key)
        data = _as_bytes(value, key)
        with self._lock:
            if parsed.role == BLOB:
                self._hold(parsed, data)
                return True
            members = self._pending.pop(parsed.execution_key, {}) if parsed.role == MANIFEST else {}
        members[parsed.key] = data
        try:
            self.store.put(marimo_entry(parsed.execution_key, members))
        except StoreIOError as error:
            warnings.warn(
                f"marimo_store: cannot store marimo cache key {key!r}: {error}",
                StoreWarning,
                stacklevel=2,
            )
            return False
        return True

    def hit(self, key: str) -> bool:
        """Whether `get(key)` would find bytes (objects present, not yet verified)."""
        parsed = parse_marimo_key(key)
        with self._lock:
            if parsed.key in self._pending.get(parsed.execution_key, {}):
                return True
        metadata = self.store.lookup(parsed.execution_key)
        if metadata is None:
            return False
        ref = metadata.variables.get(parsed.key)
        return ref is not None and ref.format == "bytes"

    def clear(self, key: str) -> bool:
        """Delete the whole marimo entry `key` belongs to (every run of it)."""
        parsed = parse_marimo_key(key)
        with self._lock:
            waiting = self._pending.get(parsed.execution_key, {})
            dropped = waiting.pop(parsed.key, None) is not None
        return self.store.delete_entries([parsed.execution_key]) > 0 or dropped

    def local_dirs(self) -> list[Path]:
        """The store directory, so `marimo cache dir` and `size` find it."""
        return [Path(self.store.path)]

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Seal the store's log segment (see `FsPersistentStore.close`)."""
        self.store.close()

    def _hold(self, parsed: MarimoKey, data: bytes) -> None:
        """Keep a lazy blob until its manifest completes the entry (lock held)."""
        members = self._pending.pop(parsed.execution_key, {})
        members[parsed.key] = data
        self._pending[parsed.execution_key] = members  # now the newest
        while len(self._pending) > _MAX_PENDING_ENTRIES:
            del self._pending[next(iter(self._pending))]


def _reopen(path: str | os.PathLike[str] | None, options: dict[str, Any]) -> MarimoStore:
    return MarimoStore(path, **options)


def _unpickled(key: str) -> bool:
    """Whether marimo may unpickle the bytes of `key`: everything but JSON.

    marimo's pickle loader (the default method) calls `pickle.loads` on
    what `get` returns without checks of its own, so with `verify_signatures`
    on such bytes come only from trusted entries (docs/security.md).
    """
    return not holds_json(key)


def _as_bytes(value: object, key: str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return memoryview(value).tobytes()  # type: ignore[arg-type]
    except TypeError:
        raise InvalidArgumentError(
            f"marimo cache key {key!r}: the value must be bytes, got {type(value).__name__}"
        ) from None


def _notebook_directory() -> str:
    """The running notebook's directory (marimo knows it), else the working one."""
    try:
        from marimo._runtime.runtime import notebook_dir  # noqa: PLC0415

        directory = notebook_dir()
    except Exception:  # marimo absent or changed
        directory = None
    return str(directory) if directory is not None else os.getcwd()


def _default_path(directory: str) -> str:
    """`__marimo__/persist` where marimo puts the `__marimo__` of a notebook
    in `directory` (beside it, unless `sys.pycache_prefix` moves it)."""
    try:
        from marimo._utils.paths import notebook_output_dir  # noqa: PLC0415

        return str(notebook_output_dir(directory) / PERSIST_DIR)
    except Exception:  # marimo absent or changed
        return os.path.join(directory, DEFAULT_STORE_PATH)
