"""The value types of the store: keys, object references, entries, metadata.

They are immutable so that an entry handed out by `get` cannot be changed
behind the store's back, and so that metadata can be compared and hashed by
value.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from marimo_store._errors import InvalidArgumentError
from marimo_store._signing import fingerprint
from marimo_store._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal, TypeAlias, TypeGuard

    ContentFormat: TypeAlias = Literal["pickle", "json", "bytes", "auto"]
    """What a caller may ask for; `auto` resolves to the store's default."""

    StoredFormat: TypeAlias = Literal["pickle", "cloudpickle", "json", "bytes", "buffer"]
    """What an object really holds. `buffer` is one out-of-band pickle buffer
    or one further piece of a `bytes` value."""

VARIABLES = "variables"
"""The content kind of a block's or function's results (the only one used so far)."""

CONTENT_KINDS = (VARIABLES, "output", "stderr")

VALUE = "value"
"""The one variable of a named object's entry and of an object handle's."""

CALL_METADATA_KEY = "persistent_cache"
"""The user metadata key under which `persistent_cache` records a call's
function and key components; it also marks the entry as a function call
for cleanup (see `DefaultCleanupStrategy.max_calls_per_function`)."""
EXPIRE = "expire_ms"
"""In a call's record: its function's `expire=` in ms, which cleanup honours."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})

_set = object.__setattr__
"""How the hot value types below set their fields: one direct call per
field rather than `Value._assign`'s keyword dict (a cleanup builds several
of them for every entry of the store)."""


def now_ms() -> int:
    """Milliseconds since the Unix epoch, UTC: the unit of every timestamp."""
    return time.time_ns() // 1_000_000


MAX_TIMESTAMP = 2**64 - 1
"""The largest time (ms) the format stores: a msgpack uint64 (docs/format.md §6.4.1)."""


def is_timestamp(value: object) -> TypeGuard[int]:
    """Whether `value` is a time the format can hold: an int (not a bool)
    from 0 to `MAX_TIMESTAMP`. Every time read from a record is checked
    with this, so a hostile record cannot carry one that breaks a caller."""
    return type(value) is int and 0 <= value <= MAX_TIMESTAMP


def _check_key_part(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"ExecutionKey.{name} must be a non-empty str, got {value!r}")
    if "\x00" in value:
        raise InvalidArgumentError(f"ExecutionKey.{name} must not contain NUL")


class ExecutionKey(Value):
    """Identifies one stored execution.

    `block_id` groups entries for cleanup (a function's own code hash or a
    user-given name); `module_hash` identifies the computation (code,
    dependencies and inputs); `created_at` (ms, UTC) tells runs of the same
    computation apart. `None` means "the newest" for `get` and "now" for `put`.
    """

    __slots__ = ("block_id", "module_hash", "created_at")
    block_id: str
    module_hash: str
    created_at: int | None

    def __init__(self, block_id: str, module_hash: str, created_at: int | None = None) -> None:
        _check_key_part("block_id", block_id)
        _check_key_part("module_hash", module_hash)
        if created_at is not None and not is_timestamp(created_at):
            raise InvalidArgumentError(
                "ExecutionKey.created_at must be None or an int of milliseconds since "
                f"the epoch from 0 to 2**64 - 1 (what the format stores), got {created_at!r}"
            )
        _set(self, "block_id", block_id)
        _set(self, "module_hash", module_hash)
        _set(self, "created_at", created_at)

    @classmethod
    def _trusted(
        cls, block_id: str, module_hash: str, created_at: int | None = None
    ) -> ExecutionKey:
        """A key from parts known to be valid (hex digests, a checked name,
        fields a record decoder checked), without re-checking them: cached
        functions build one on every call, a cleanup one per entry."""
        key = cls.__new__(cls)
        _set(key, "block_id", block_id)
        _set(key, "module_hash", module_hash)
        _set(key, "created_at", created_at)
        return key

    def at(self, created_at: int) -> ExecutionKey:
        """The same computation, pinned to one run."""
        return ExecutionKey(self.block_id, self.module_hash, created_at)


def check_lookup_key(key: object, exact: bool) -> ExecutionKey:
    """`key` for a lookup, or `InvalidArgumentError`: not an `ExecutionKey`,
    or an exact lookup (`exact_match_created_at`) without `created_at`."""
    if not isinstance(key, ExecutionKey):
        raise InvalidArgumentError(f"expected an ExecutionKey, got {type(key).__name__}")
    if exact and key.created_at is None:
        raise InvalidArgumentError("exact_match_created_at needs a key with created_at")
    return key


def check_keys(keys: Iterable[object], method: str) -> list[ExecutionKey]:
    """`keys` as a list, or `InvalidArgumentError` naming what is not a key."""
    checked: list[ExecutionKey] = []
    for key in keys:
        if not isinstance(key, ExecutionKey):
            raise InvalidArgumentError(f"{method}() takes ExecutionKeys, got {type(key).__name__}")
        checked.append(key)
    return checked


class ObjectRef(Value):
    """Where one serialized value lives and how to read it back.

    `id` is the xxh3-128 hex digest of the bytes (followed by a key qualifier
    in `execution_key_qualified` mode); `size` is the byte count, checked
    before the hash on every read. A pickled value whose large buffers went
    out of band lists them in `buffers`, each an object of its own so that
    they are deduplicated and memory-mapped independently. `inline` objects
    live inside the entry record rather than in `objects/`. `digest` is the
    SHA-256 of the bytes, recorded by a writer that signs its entries (for
    objects that are files): xxh3 detects damage but not a forgery, so a
    signature covers an object's bytes through this digest.
    """

    __slots__ = ("id", "size", "format", "buffers", "inline", "digest")
    id: str
    size: int
    format: StoredFormat
    buffers: tuple[ObjectRef, ...]
    inline: bool
    digest: bytes | None

    def __init__(  # noqa: PLR0917 - a Value is rebuilt from positional fields (pickle)
        self,
        id: str,
        size: int,
        format: StoredFormat,
        buffers: tuple[ObjectRef, ...] = (),
        inline: bool = False,
        digest: bytes | None = None,
    ) -> None:
        _set(self, "id", id)
        _set(self, "size", size)
        _set(self, "format", format)
        _set(self, "buffers", buffers)
        _set(self, "inline", inline)
        _set(self, "digest", digest)

    @property
    def total_size(self) -> int:
        """Bytes of this value including its out-of-band buffers."""
        return self.size + sum(buffer.size for buffer in self.buffers)

    def objects(self) -> tuple[ObjectRef, ...]:
        """This reference and its buffers: every object the value needs."""
        return (self, *self.buffers)


class Environment(Value):
    """Where an entry was produced: enough to judge whether it still loads."""

    __slots__ = ("python", "platform", "packages")
    python: str
    platform: str
    packages: Mapping[str, str]

    def __init__(self, python: str, platform: str, packages: Mapping[str, str] = _EMPTY) -> None:
        _set(self, "python", python)
        _set(self, "platform", platform)
        _set(self, "packages", packages)


class EntrySignature(Value):
    """The signature an entry record carries: the signer's raw Ed25519
    public key and the 64-byte signature over the entry (docs/security.md).

    As read from the store it is only a *claim*: `FsPersistentStore.
    signature_status` checks it against the entry and the trusted keys.
    """

    __slots__ = ("public_key", "value")
    public_key: bytes
    value: bytes

    def __init__(self, public_key: bytes, value: bytes) -> None:
        self._assign(public_key=public_key, value=value)

    @property
    def signer(self) -> str:
        """The fingerprint of the public key, as `trusted_signers` lists it."""
        return fingerprint(self.public_key)


class EntryMetadata(Value):
    """Everything about an entry except its values; never needs unpickling.

    `signature` is the entry's signature when its writer had a signing key
    (None otherwise). `last_access` and `hits` come from the access records
    of every process (docs/format.md §6.6): when it was last read, and how
    many times (a statistic: a killed process's last batch is not counted).
    """

    __slots__ = (
        "key",
        "contents",
        "environment",
        "user_metadata",
        "last_access",
        "signature",
        "hits",
    )
    key: ExecutionKey
    contents: Mapping[str, Mapping[str, ObjectRef]]
    environment: Environment
    user_metadata: Mapping[str, Any]
    last_access: int | None
    signature: EntrySignature | None
    hits: int

    def __init__(  # noqa: PLR0917 - a Value is rebuilt from positional fields (pickle)
        self,
        key: ExecutionKey,
        contents: Mapping[str, Mapping[str, ObjectRef]],
        environment: Environment,
        user_metadata: Mapping[str, Any] = _EMPTY,
        last_access: int | None = None,
        signature: EntrySignature | None = None,
        hits: int = 0,
    ) -> None:
        _set(self, "key", key)
        _set(self, "contents", contents)
        _set(self, "environment", environment)
        _set(self, "user_metadata", user_metadata)
        _set(self, "last_access", last_access)
        _set(self, "signature", signature)
        _set(self, "hits", hits)

    @property
    def created_at(self) -> int:
        """When the entry was put (ms, UTC); always set on stored entries."""
        assert self.key.created_at is not None  # stored keys are always pinned
        return self.key.created_at

    @property
    def variables(self) -> Mapping[str, ObjectRef]:
        """References of the `variables` content kind."""
        return self.contents.get(VARIABLES, _EMPTY)

    def objects(self) -> dict[str, ObjectRef]:
        """Every distinct object this entry needs, by id."""
        found: dict[str, ObjectRef] = {}
        for refs in self.contents.values():
            for ref in refs.values():
                for obj in ref.objects():
                    found[obj.id] = obj
        return found

    @property
    def content_size(self) -> int:
        """Bytes of the entry's distinct objects (shared ones counted once)."""
        return sum(obj.size for obj in self.objects().values())


class Entry(Value):
    """An execution's results: what `put` takes and `get` returns.

    `contents` maps a content kind (`"variables"`) to variable names and
    values. `format` chooses the serialization of every value: `"auto"`
    follows the store's `auto_variables_format`; `"bytes"` stores values
    that are already bytes as they are (see `serialize_bytes`). `metadata` is filled in by
    `get`; it is ignored by `put`.
    """

    __slots__ = ("key", "contents", "user_metadata", "format", "metadata")
    _compared = ("key", "contents", "user_metadata", "format")
    key: ExecutionKey
    contents: Mapping[str, Mapping[str, Any]]
    user_metadata: Mapping[str, Any]
    format: ContentFormat
    metadata: EntryMetadata | None

    def __init__(
        self,
        key: ExecutionKey,
        contents: Mapping[str, Mapping[str, Any]],
        user_metadata: Mapping[str, Any] = _EMPTY,
        format: ContentFormat = "auto",
        metadata: EntryMetadata | None = None,
    ) -> None:
        if not isinstance(key, ExecutionKey):
            raise InvalidArgumentError(f"Entry.key must be an ExecutionKey, got {key!r}")
        if not isinstance(contents, Mapping):
            raise InvalidArgumentError("Entry.contents must map content kinds to variables")
        for kind, variables in contents.items():
            if kind not in CONTENT_KINDS:
                raise InvalidArgumentError(
                    f"unknown content kind {kind!r}; expected one of {CONTENT_KINDS}"
                )
            if not isinstance(variables, Mapping) or not all(
                isinstance(name, str) and name for name in variables
            ):
                raise InvalidArgumentError(
                    f"Entry.contents[{kind!r}] must map non-empty str names to values"
                )
        if format not in ("pickle", "json", "bytes", "auto"):
            raise InvalidArgumentError(
                f"Entry.format must be 'pickle', 'json', 'bytes' or 'auto', got {format!r}"
            )
        self._assign(
            key=key,
            contents=contents,
            user_metadata=user_metadata,
            format=format,
            metadata=metadata,
        )

    @classmethod
    def _trusted(
        cls,
        key: ExecutionKey,
        contents: Mapping[str, Mapping[str, Any]],
        user_metadata: Mapping[str, Any],
        metadata: EntryMetadata,
    ) -> Entry:
        """An entry rebuilt from stored data, which was validated when it was put."""
        entry = cls.__new__(cls)
        entry._assign(
            key=key,
            contents=contents,
            user_metadata=user_metadata,
            format="auto",
            metadata=metadata,
        )
        return entry

    @classmethod
    def of(
        cls,
        key: ExecutionKey,
        variables: Mapping[str, Any],
        *,
        user_metadata: Mapping[str, Any] | None = None,
        format: ContentFormat = "auto",
    ) -> Entry:
        """An entry holding only variables, the common case."""
        return cls(key, {VARIABLES: variables}, user_metadata or _EMPTY, format)

    @property
    def variables(self) -> Mapping[str, Any]:
        """Values of the `variables` content kind."""
        return self.contents.get(VARIABLES, _EMPTY)
