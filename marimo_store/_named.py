"""Named objects and object handles: the same API on every kind of store.

A named object is an ordinary entry: its key is `(name, "named",
created_at)`, and its one variable `"value"` holds the object. Because every
version of a name is a run of one computation, the newest version is a plain
`get` of the key without `created_at`, an older one a `get` with
`created_at` as the upper bound, and history, deletion (tombstones), sync and
cleanup work for names exactly as for cached results.

`NamedObjects` adds the methods to any store that has `put`, `get`,
`history`, `delete_entries` and `entries` (`FsPersistentStore`,
`LegacyPersistentStore`, `MemoryStore`, `TieredStore`). Its `ref` makes an
object handle (`_handles`, imported by the first `ref`: reading a store
does not need it); handles know nothing of names, so this module imports
`_handles` and never the reverse (no import loop).
"""

from __future__ import annotations

from collections.abc import Mapping

from marimo_store._entry import VALUE, Entry, EntryMetadata, ExecutionKey
from marimo_store._errors import InvalidArgumentError, NotFoundError
from marimo_store._value import Value
from marimo_store._versions import check_policy, check_versions

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime
    from types import TracebackType
    from typing import Any, TypeVar

    from marimo_store._entry import ContentFormat, Environment, StoredFormat
    from marimo_store._handles import ObjectHandle
    from marimo_store._protocol import Store
    from marimo_store._versions import VersionPolicy

    S = TypeVar("S")


NAMED_OBJECT = "named"
"""The `module_hash` of every named object's key (its `block_id` is the name).
Not a hex digest, so it never equals the hash of a cached computation."""

MAX_NAME_LENGTH = 256

STORE_METHODS = (
    "put",
    "get",
    "history",
    "delete_entries",
    "entries",
    "load_variable",
    "refresh",
    "close",
)
"""The methods of the `Store` protocol (`_protocol.py`), checkable without `typing`."""


def missing_store_methods(candidate: object) -> list[str]:
    """The `Store` methods `candidate` lacks: none for every store."""
    return [name for name in STORE_METHODS if not callable(getattr(candidate, name, None))]


def check_name(name: object) -> str:
    """`name` if it is a valid object name, else `InvalidArgumentError` saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"an object name must be a non-empty str, got {name!r}")
    if "\x00" in name:
        raise InvalidArgumentError(f"an object name must not contain NUL: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgumentError(
            f"an object name must be at most {MAX_NAME_LENGTH} characters, got {len(name)}: "
            f"{name[:40]!r}..."
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidArgumentError(f"an object name must be valid Unicode: {name!r}") from error
    return name


def _milliseconds(at: int | datetime.datetime | None) -> int | None:
    """`at=` as ms since the epoch: an int already is; a datetime is converted
    (a naive one is local time, as `datetime.timestamp` reads it)."""
    if at is None:
        return None
    if isinstance(at, int) and not isinstance(at, bool) and at >= 0:
        return at
    import datetime  # noqa: PLC0415 - only `at=` needs it

    if isinstance(at, datetime.datetime):
        return int(at.timestamp() * 1000)
    raise InvalidArgumentError(
        f"at must be None, a datetime or an int of ms since the epoch, got {at!r}"
    )


def named_key(name: object, at: int | datetime.datetime | None = None) -> ExecutionKey:
    """The key of object `name`: its newest version, or the newest at or before `at`."""
    key = ExecutionKey._trusted(check_name(name), NAMED_OBJECT)
    created_at = _milliseconds(at)
    return key if created_at is None else key.at(created_at)


def _describe(name: str, at: int | datetime.datetime | None) -> str:
    return f"no object named {name!r}" + ("" if at is None else f" at or before {at}")


class ObjectInfo(Value):
    """What is stored under a name, read from metadata alone (nothing unpickled).

    `versions` holds the metadata of every stored version, newest first;
    the properties describe the newest.
    """

    __slots__ = ("name", "versions")
    name: str
    versions: tuple[EntryMetadata, ...]

    def __init__(self, name: str, versions: tuple[EntryMetadata, ...]) -> None:
        self._assign(name=name, versions=versions)

    @property
    def latest(self) -> EntryMetadata:
        """Metadata of the newest version."""
        return self.versions[0]

    @property
    def created_at(self) -> int:
        """When the newest version was saved (ms since the epoch, UTC)."""
        return self.latest.created_at

    @property
    def size(self) -> int:
        """Bytes of the newest version's serialized object (with its buffers)."""
        ref = self.latest.variables.get(VALUE)
        return 0 if ref is None else ref.total_size

    @property
    def format(self) -> StoredFormat | None:
        """How the newest version is stored: `pickle`, `cloudpickle` or `json`."""
        ref = self.latest.variables.get(VALUE)
        return None if ref is None else ref.format

    @property
    def environment(self) -> Environment:
        """Python, platform and package versions that saved the newest version."""
        return self.latest.environment

    @property
    def user_metadata(self) -> Mapping[str, Any]:
        """The `metadata=` given when the newest version was saved."""
        return self.latest.user_metadata


class NamedObjects:
    """`save`, `load`, `delete`, `names`, `info`, `exists` and `ref` for a
    store; and `with store:`, which closes it at the end of the block."""

    __slots__ = ()

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self: Store,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def save(
        self: Store,
        name: str,
        obj: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        format: ContentFormat = "auto",
    ) -> EntryMetadata:
        """Store `obj` as the newest version of `name`; return its metadata.

        `metadata` is plain data kept with this version (see `info`);
        `format` as for `Entry` (`"json"` never runs code on load). Older
        versions stay until deleted or cleaned up.
        """
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidArgumentError(f"metadata must be a mapping or None, got {metadata!r}")
        key = named_key(name)
        return self.put(Entry.of(key, {VALUE: obj}, user_metadata=metadata, format=format))

    def load(
        self: Store,
        name: str,
        *,
        version_policy: VersionPolicy = "warn",
        at: int | datetime.datetime | None = None,
    ) -> Any:
        """The newest version of `name`, or the newest saved at or before `at`
        (a datetime, or ms since the epoch).

        Raises `NotFoundError` when there is none, or when that version can
        no longer be loaded (damaged: a `StoreWarning` says why); an older
        version is never returned in its place. `version_policy` is applied
        before anything is unpickled (see `get`).
        """
        check_policy(version_policy)
        key = named_key(name, at)
        versions = self.history(key)
        if not versions:
            raise NotFoundError(_describe(name, at))
        chosen = versions[0]
        check_versions(chosen, version_policy, subject=f"object {name!r}", stacklevel=2)
        entry = self.get(chosen.key, exact_match_created_at=True, version_policy="ignore")
        if entry is None or VALUE not in entry.variables:
            raise NotFoundError(
                f"object {name!r}, version created_at={chosen.created_at}, could not be "
                "loaded: its files are missing or damaged"
            )
        return entry.variables[VALUE]

    def delete(self: Store, name: str) -> int:
        """Delete every version of `name`; return how many there were.

        Raises `NotFoundError` when there is none.
        """
        deleted = self.delete_entries([named_key(name)])
        if not deleted:
            raise NotFoundError(_describe(name, None))
        return deleted

    def names(self: Store) -> list[str]:
        """The names of the stored objects, sorted."""
        return sorted(
            {
                metadata.key.block_id
                for metadata in self.entries()
                if metadata.key.module_hash == NAMED_OBJECT
            }
        )

    def info(self: Store, name: str) -> ObjectInfo:
        """Metadata of every version of `name` (`NotFoundError` if none)."""
        versions = self.history(named_key(name))
        if not versions:
            raise NotFoundError(_describe(name, None))
        return ObjectInfo(name, tuple(versions))

    def exists(self: Store, name: str) -> bool:
        """Whether some version of `name` is stored."""
        return bool(self.history(named_key(name)))

    def ref(self: Store, obj: Any) -> ObjectHandle:
        """Store `obj` (once: equal bytes are stored once) and return a small
        handle to it, which pickles as this store's configuration plus the
        object's content id. `handle.get()` loads it, once per process."""
        from marimo_store._handles import handle_to  # noqa: PLC0415 - handles only

        return handle_to(self, obj)
