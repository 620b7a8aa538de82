"""`LegacyPersistentStore`: one pickle file per entry, in marimo's cache layout.

For projects whose notebooks already cache into marimo's own
`__marimo__/cache` folder: the put/get surface of `FsPersistentStore` over
`<root>/<block>/<hash>.pickle` files, without anything that needs a log: no
history (a put replaces the file of its computation), no deduplication, no
cleanup. Reads are still verified (each part's hash is in the file's
header), so damage is a miss and a `StoreWarning`, never a wrong value.

A file is a pickled header of plain data (read without importing or calling
anything) followed by each value's pickle stream and out-of-band buffers:
values load one by one, and large buffers are memory-mapped.
"""

from __future__ import annotations

import mmap
import os
import pickle
import warnings
from types import MappingProxyType

from marimo_store import _fs
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
from marimo_store._environment import current_environment
from marimo_store._errors import (
    ConfigError,
    ExecutionKeyClash,
    InvalidArgumentError,
    NotFoundError,
    NotSupportedError,
    StoreIOError,
    StoreWarning,
)
from marimo_store._format.records import check_user_metadata
from marimo_store._hashing import content_digest
from marimo_store._named import NamedObjects
from marimo_store._serialize import (
    MISSING,
    SerializedValue,
    deserialize,
    load_contents,
    serialize_contents,
)
from marimo_store._versions import check_policy, check_versions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, BinaryIO, NoReturn

    from marimo_store._entry import ContentFormat, StoredFormat
    from marimo_store._versions import VersionPolicy

_FORMAT = "marimo_store.legacy"
_VERSION = 1
_SUFFIX = ".pickle"
_SAFE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_MAX_NAME = 64
_FORMATS = frozenset(("pickle", "cloudpickle", "json"))


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads only builtin containers and scalars: a header never needs more,
    so a foreign or hostile file cannot run code through it."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise pickle.UnpicklingError(f"not a marimo_store header: refers to {module}.{name}")


class _Part:
    """One stored byte range: a value's stream or one of its buffers."""

    __slots__ = ("digest", "size")

    def __init__(self, size: int, digest: str) -> None:
        self.size = size
        self.digest = digest

    def ref(self, stored_format: StoredFormat, buffers: tuple[ObjectRef, ...] = ()) -> ObjectRef:
        return ObjectRef(self.digest, self.size, stored_format, buffers)


class _File:
    """A legacy file's header, and (once opened) its bytes."""

    def __init__(self, path: str, metadata: EntryMetadata, offset: int) -> None:
        self.path = path
        self.metadata = metadata
        self.offset = offset  # where the first value's stream starts


def _file_name(text: str) -> str:
    """`text` itself when it is a safe file name, else its hash (a block
    name may hold `/` or `..`; the header keeps the real key)."""
    if (
        0 < len(text) <= _MAX_NAME
        and set(text) <= _SAFE_CHARACTERS
        and text[0] not in ".-"
        and not text.startswith("h-")
    ):
        return text
    return "h-" + content_digest(text.encode("utf-8", "surrogatepass")).hex()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _part(value: Any) -> _Part | None:
    if isinstance(value, list) and len(value) == 2:
        size, digest = value
        if _is_int(size) and isinstance(digest, str) and len(digest) == 32:
            return _Part(size, digest)
    return None


def _decode_value(value: Any) -> tuple[str, str, ObjectRef] | None:
    if not isinstance(value, list) or len(value) != 5:
        return None
    kind, name, stored_format, stream, buffers = value
    if not (isinstance(kind, str) and isinstance(name, str) and stored_format in _FORMATS):
        return None
    stream_part = _part(stream)
    buffer_parts = [_part(buffer) for buffer in buffers] if isinstance(buffers, list) else [None]
    if stream_part is None or None in buffer_parts:
        return None
    refs = tuple(part.ref("buffer") for part in buffer_parts if part is not None)
    return kind, name, stream_part.ref(stored_format, refs)


def _decode_header(header: Any) -> EntryMetadata | None:
    """The metadata in a header, or None if it is not a valid header of ours."""
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        return None
    if header.get("version") != _VERSION:
        return None
    key, values = header.get("key"), header.get("values")
    python, platform = header.get("python"), header.get("platform")
    packages, user_metadata = header.get("packages"), header.get("user_metadata")
    if not (isinstance(key, list) and len(key) == 3 and _is_int(key[2])):
        return None
    if not (isinstance(python, str) and isinstance(platform, str) and isinstance(values, list)):
        return None
    if not (isinstance(packages, dict) and isinstance(user_metadata, dict)):
        return None
    try:
        execution_key = ExecutionKey(key[0], key[1], key[2])
    except InvalidArgumentError:
        return None
    contents: dict[str, dict[str, ObjectRef]] = {}
    for value in values:
        decoded = _decode_value(value)
        if decoded is None:
            return None
        kind, name, ref = decoded
        contents.setdefault(kind, {})[name] = ref
    return EntryMetadata(
        execution_key,
        MappingProxyType({kind: MappingProxyType(refs) for kind, refs in contents.items()}),
        Environment(python, platform, MappingProxyType(packages)),
        MappingProxyType(user_metadata),
    )


def _encode_header(
    key: ExecutionKey,
    serialized: Mapping[str, Mapping[str, SerializedValue]],
    user_metadata: Mapping[str, Any],
    environment: Environment,
) -> bytes:
    def part(data: Any) -> list[Any]:
        return [memoryview(data).nbytes, content_digest(data).hex()]

    values = [
        [kind, name, value.format, part(value.stream), [part(b) for b in value.buffers]]
        for kind, variables in serialized.items()
        for name, value in variables.items()
    ]
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "key": [key.block_id, key.module_hash, key.created_at],
        "values": values,
        "user_metadata": dict(user_metadata),
        "python": environment.python,
        "platform": environment.platform,
        "packages": dict(environment.packages),
    }
    return pickle.dumps(header, protocol=5)


class LegacyPersistentStore(NamedObjects):
    """A cache in marimo's `__marimo__/cache` layout: `<path>/<block>/<hash>.pickle`.

    The same `put`, `get`, `load_variable`, `entries`, `history`,
    `delete_entries` and named objects as `FsPersistentStore`. Each
    computation `(block_id, module_hash)` has one file, so only its newest
    run is kept (a named object has one version). There is no cleanup:
    `cleanup()` raises `NotSupportedError`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, str | os.PathLike):
            raise ConfigError(f"path must be a str or os.PathLike, got {path!r}")
        self.path: str = os.path.abspath(os.fspath(path))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path,))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LegacyPersistentStore):
            return NotImplemented
        return self.path == other.path

    def __hash__(self) -> int:
        return hash((type(self), self.path))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def _path_of(self, key: ExecutionKey) -> str:
        block = _file_name(key.block_id)
        return os.path.join(self.path, block, _file_name(key.module_hash) + _SUFFIX)

    # -- writing -------------------------------------------------------------------

    def put(self, entry: Entry) -> EntryMetadata:
        """Store an entry, replacing the file of its computation; return its metadata.

        The same key and contents again is a no-op; the same `created_at`
        with other contents raises `ExecutionKeyClash`.
        """
        if not isinstance(entry, Entry):
            raise InvalidArgumentError(f"put() takes an Entry, got {type(entry).__name__}")
        user_metadata = check_user_metadata(entry.user_metadata)
        # JSON or pickle: the legacy layout has no `bytes` values (they are pickled).
        requested: ContentFormat = "json" if entry.format == "json" else "pickle"
        serialized = serialize_contents(entry.contents, requested, cloudpickle_fallback=True)
        modules = {
            m for variables in serialized.values() for v in variables.values() for m in v.modules
        }
        path = self._path_of(entry.key)
        present = self._read(path, entry.key)
        created_at = entry.key.created_at
        if created_at is None:
            created_at = now_ms()
            if present is not None and present.metadata.created_at >= created_at:
                created_at = present.metadata.created_at + 1  # newest stays newest
        key = entry.key.at(created_at)
        header = _encode_header(key, serialized, user_metadata, current_environment(modules))
        metadata = _decode_header(pickle.loads(header))
        assert metadata is not None  # we just encoded it
        if present is not None and present.metadata.created_at == created_at:
            if present.metadata.contents == metadata.contents:
                return present.metadata
            raise ExecutionKeyClash(f"{key} is already stored with different contents")
        parts: list[Any] = [header]
        for variables in serialized.values():
            for value in variables.values():
                parts.append(value.stream)
                parts.extend(value.buffers)
        try:
            _fs.makedirs(os.path.dirname(path))
            temp_path = f"{path}.{os.getpid()}-{os.urandom(6).hex()}.tmp"
            _fs.write_new_file(path, b"".join(parts), temp_path=temp_path, durable=False)
        except OSError as error:
            raise StoreIOError(f"cannot write {path}: {error}") from error
        return metadata

    def delete_entries(self, keys: Iterable[ExecutionKey]) -> int:
        """Delete the files of these entries; return how many there were.

        A key without `created_at` deletes its computation's file whatever
        run it holds.
        """
        deleted = 0
        for key in check_keys(keys, "delete_entries"):
            path = self._path_of(key)
            present = self._read(path, key, exact=key.created_at is not None)
            if present is not None:
                try:
                    _fs.unlink(path)
                except OSError as error:
                    raise StoreIOError(f"cannot delete {path}: {error}") from error
                deleted += 1
        return deleted

    # -- reading -------------------------------------------------------------------

    def get(
        self,
        key: ExecutionKey,
        exact_match_created_at: bool = False,
        *,
        version_policy: VersionPolicy = "warn",
    ) -> Entry | None:
        """The entry for `key`, or None; `key.created_at` and `version_policy`
        as in `FsPersistentStore.get`."""
        check_policy(version_policy)
        found = self._find(key, exact_match_created_at)
        if found is None:
            return None
        check_versions(found.metadata, version_policy, stacklevel=2)
        with _Mapped(found) as mapped:
            contents = load_contents(found.metadata.contents, mapped.load)
        if contents is None:
            return None
        metadata = found.metadata
        return Entry._trusted(metadata.key, contents, metadata.user_metadata, metadata)

    def load_variable(self, key: ExecutionKey, name: str, *, kind: str = "variables") -> Any:
        """One variable of an entry, without loading the others (`NotFoundError` if absent)."""
        found = self._find(key, exact=False)
        if found is None:
            raise NotFoundError(f"no loadable entry for {key}")
        ref = found.metadata.contents.get(kind, {}).get(name)
        if ref is None:
            raise NotFoundError(f"entry {found.metadata.key} has no {kind} {name!r}")
        with _Mapped(found) as mapped:
            value = mapped.load(ref)
        if value is MISSING:
            raise NotFoundError(f"no loadable entry for {key}")
        return value

    def entries(self) -> list[EntryMetadata]:
        """Metadata of every entry, oldest first (headers only: nothing is unpickled).

        Files of marimo's own cache in the same folder are not ours and are
        skipped.
        """
        found: list[EntryMetadata] = []
        for block in _scan(self.path):
            if not block.is_dir():
                continue
            for item in _scan(block.path):
                if item.name.endswith(_SUFFIX):
                    read = self._read(item.path, None, warn=False)
                    if read is not None:
                        found.append(read.metadata)
        return sorted(found, key=lambda metadata: (metadata.created_at, metadata.key.block_id))

    def history(self, key: ExecutionKey) -> list[EntryMetadata]:
        """The stored run of `key`'s computation if it is at or before
        `key.created_at` (one at most: a put replaces the file)."""
        found = self._find(key, exact=False)
        return [] if found is None else [found.metadata]

    def __len__(self) -> int:
        return len(self.entries())

    def refresh(self) -> None:
        """Nothing to catch up with: every lookup reads the file itself."""

    def _find(self, key: ExecutionKey, exact: bool) -> _File | None:
        check_lookup_key(key, exact)
        return self._read(self._path_of(key), key, exact=exact)

    def _read(
        self, path: str, key: ExecutionKey | None, *, exact: bool = False, warn: bool = True
    ) -> _File | None:
        """The header of the file at `path` if it holds `key` (any key if None).

        Without `exact`, `key.created_at` is an upper bound, as in `get`.
        """
        try:
            with open(path, "rb") as file:
                metadata = _load_header(file)
                offset = file.tell()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as error:
            if warn:
                _warn(f"cannot read {path}: {error}")
            return None
        if metadata is None:
            if warn:
                _warn(f"{path} is not a readable marimo_store cache file")
            return None
        if key is not None:
            stored = metadata.key
            if (stored.block_id, stored.module_hash) != (key.block_id, key.module_hash):
                return None  # another key whose file name hashed alike
            created_at, limit = metadata.created_at, key.created_at
            if limit is not None and (created_at != limit if exact else created_at > limit):
                return None
        return _File(path, metadata, offset)

    # -- what a legacy store does not do ---------------------------------------------

    def cleanup(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: raises `NotSupportedError`."""
        raise NotSupportedError(
            f"{self!r} is marimo's legacy cache layout (one pickle file per entry, no log): "
            "it has no cleanup. Delete its files by hand, or move to FsPersistentStore "
            "(create __marimo__/persist beside __marimo__/cache to switch)."
        )

    def close(self) -> None:
        """Nothing to close: no file stays open between calls."""


def _load_header(file: BinaryIO) -> EntryMetadata | None:
    try:
        header = _PlainDataUnpickler(file).load()
    except Exception:  # not a pickle, or not plain data: not our file
        return None
    return _decode_header(header)


def _scan(path: str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _warn(message: str) -> None:
    warnings.warn(f"marimo_store: {message}; treated as a miss", StoreWarning, stacklevel=4)


class _Mapped:
    """A legacy file memory-mapped for loading values, each verified first."""

    def __init__(self, found: _File) -> None:
        self._found = found
        self._map: mmap.mmap | None = None
        self._offsets: dict[str, int] = {}
        offset = found.offset
        for refs in found.metadata.contents.values():
            for ref in refs.values():
                for part in ref.objects():
                    self._offsets.setdefault(part.id, offset)
                    offset += part.size
        self._size = offset

    def __enter__(self) -> _Mapped:
        try:
            with open(self._found.path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size == self._size and size > 0:
                    # Copy-on-write: arrays are writable, as on the miss; the file never changes.
                    self._map = mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY)
                elif size != self._size:
                    _warn(f"{self._found.path} has {size} bytes, its header says {self._size}")
        except OSError as error:
            _warn(f"cannot read {self._found.path}: {error}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._map = None  # the values keep their views (and so the mapping) alive

    def load(self, ref: ObjectRef) -> Any:
        parts: list[memoryview] = []
        for part in ref.objects():
            view = self._view(part)
            if view is None:
                return MISSING
            parts.append(view)
        try:
            return deserialize(ref.format, parts[0], parts[1:])
        except Exception as error:  # a value that no longer loads is a miss, not a crash
            _warn(f"cannot load a value of {self._found.path}: {type(error).__name__}: {error}")
            return MISSING

    def _view(self, part: ObjectRef) -> memoryview | None:
        if part.size == 0:
            return memoryview(b"")
        if self._map is None:
            return None
        start = self._offsets[part.id]
        view = memoryview(self._map)[start : start + part.size]
        if content_digest(view).hex() != part.id:
            _warn(f"{self._found.path} is damaged (a value does not match its hash)")
            return None
        return view
