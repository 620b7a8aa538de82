"""The msgpack form of entries, shared by log segments and snapshots, and of
the access and tombstone records of the log (docs/format.md §6.4-§6.7).

Decoding is defensive: a record passed its checksum, but it may still come
from a newer version or a hostile writer, so every field is type-checked and
anything unexpected makes the record be skipped, never raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import msgpack

from marimo_store._entry import (
    CONTENT_KINDS,
    EntryMetadata,
    EntrySignature,
    Environment,
    ExecutionKey,
    ObjectRef,
    is_timestamp,
)
from marimo_store._errors import InvalidArgumentError
from marimo_store._hashing import content_digest
from marimo_store._signing import DIGEST_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from marimo_store._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ENTRY_TYPE = "entry"
ACCESS_TYPE = "access"
TOMBSTONE_TYPE = "tombstone"
_STORED_FORMATS: frozenset[str] = frozenset(("pickle", "cloudpickle", "json", "bytes", "buffer"))
_set = object.__setattr__


class StoredEntry(Value):
    """An entry as the index holds it: metadata plus the bytes kept inline."""

    __slots__ = ("metadata", "inline")
    metadata: EntryMetadata
    inline: Mapping[str, bytes]

    def __init__(self, metadata: EntryMetadata, inline: Mapping[str, bytes]) -> None:
        _set(self, "metadata", metadata)
        _set(self, "inline", inline)

    def canonical_bytes(self) -> bytes:
        """A deterministic encoding, the last tie-breaker between clashing entries."""
        encoding: bytes = msgpack.packb(encode_entry(self, None), use_bin_type=True)
        return encoding


def check_user_metadata(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """User metadata must survive msgpack unchanged; refuse what would not."""
    try:
        packed = msgpack.packb(dict(value), use_bin_type=True)
        restored = msgpack.unpackb(packed, raw=False, use_list=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidArgumentError(
            f"user metadata must be plain data (dict, list, str, bytes, int, float, "
            f"bool, None): {error}"
        ) from error
    if restored != dict(value):
        raise InvalidArgumentError(
            "user metadata must round-trip unchanged: use lists rather than tuples and str keys"
        )
    return MappingProxyType(restored)


_PLAIN_SCALARS = frozenset((str, bytes, int, float, bool, type(None)))


def is_plain_data(value: object) -> bool:
    """Whether `value` is what user metadata may hold: maps with str keys,
    lists and plain scalars, as `check_user_metadata` accepts them.

    A record may carry anything msgpack decodes (extension types, int or
    binary keys, nesting a thousand deep); only plain data reaches callers.
    Iterative, so deep nesting cannot exhaust the interpreter's stack.
    Exact types, as msgpack decodes them (a subclass is not plain data);
    only containers are queued, since every entry's record is checked.
    """
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            for key, member in item.items():
                if type(key) is not str:
                    return False
                member_kind = type(member)
                if member_kind is dict or member_kind is list:
                    pending.append(member)
                elif member_kind not in _PLAIN_SCALARS:
                    return False
        elif kind is list:
            pending.extend(item)
        elif kind not in _PLAIN_SCALARS:
            return False
    return True


def _encode_ref(ref: ObjectRef, inline: Mapping[str, bytes]) -> dict[str, Any]:
    encoded: dict[str, Any] = {"f": ref.format, "s": ref.size}
    if ref.inline:
        encoded["d"] = inline[ref.id]
    else:
        encoded["i"] = bytes.fromhex(ref.id)
        if ref.digest is not None:
            encoded["h"] = ref.digest
    if ref.buffers:
        encoded["b"] = [_encode_ref(buffer, inline) for buffer in ref.buffers]
    return encoded


def encode_entry(stored: StoredEntry, context: Environment | None) -> dict[str, Any]:
    """The record of an entry. Fields equal to `context` (the segment's
    environment) are left out, which keeps small entries small."""
    metadata = stored.metadata
    key = metadata.key
    record: dict[str, Any] = {
        "t": ENTRY_TYPE,
        "k": [key.block_id, key.module_hash, key.created_at],
        "c": {
            kind: {name: _encode_ref(refs[name], stored.inline) for name in sorted(refs)}
            for kind, refs in sorted(metadata.contents.items())
        },
    }
    environment = metadata.environment
    if context is None or environment.python != context.python:
        record["py"] = environment.python
    if context is None or environment.platform != context.platform:
        record["pl"] = environment.platform
    if environment.packages:
        record["pk"] = dict(sorted(environment.packages.items()))
    if metadata.user_metadata:
        record["um"] = dict(metadata.user_metadata)
    if metadata.signature is not None:
        record["sn"] = metadata.signature.public_key
        record["sig"] = metadata.signature.value
    return record


class _Malformed(Exception):  # noqa: N818 - internal control flow
    pass


def _require(condition: bool) -> None:
    if not condition:
        raise _Malformed


def _decode_ref(value: Any, inline: dict[str, bytes], *, is_buffer: bool) -> ObjectRef:
    _require(type(value) is dict)
    stored_format, size, data = value.get("f"), value.get("s"), value.get("d")
    _require(
        type(stored_format) is str  # before `in`: a list is unhashable
        and stored_format in _STORED_FORMATS
        and (stored_format == "buffer") == is_buffer
        and is_timestamp(size)  # sizes share the u64 range of times
    )
    digest = None
    if data is not None:
        _require(type(data) is bytes and len(data) == size)
        object_id = content_digest(data).hex()
        inline[object_id] = data
    else:
        raw_id = value.get("i")
        _require(type(raw_id) is bytes and len(raw_id) in (16, 24))
        object_id = raw_id.hex()
        digest = value.get("h")
        _require(digest is None or (type(digest) is bytes and len(digest) == DIGEST_BYTES))
    buffers = value.get("b")
    if buffers is None:
        return ObjectRef(object_id, size, stored_format, (), data is not None, digest)
    _require(type(buffers) is list and (not buffers or not is_buffer))
    return ObjectRef(
        object_id,
        size,
        stored_format,
        tuple(_decode_ref(buffer, inline, is_buffer=True) for buffer in buffers),
        data is not None,
        digest,
    )


def _decode_signature(public_key: Any, value: Any) -> EntrySignature | None:
    """`sn` and `sig` come together or not at all (docs/format.md §6.4.6)."""
    if public_key is None and value is None:
        return None
    _require(isinstance(public_key, bytes) and len(public_key) == PUBLIC_KEY_BYTES)
    _require(isinstance(value, bytes) and len(value) == SIGNATURE_BYTES)
    return EntrySignature(public_key, value)


def key_from_fields(value: Any) -> ExecutionKey | None:
    """An execution key from its `[block_id, module_hash, created_at]` form."""
    if not isinstance(value, list) or len(value) != 3:
        return None
    block_id, module_hash, created_at = value
    if not (_is_key_part(block_id) and _is_key_part(module_hash) and is_timestamp(created_at)):
        return None
    return ExecutionKey._trusted(block_id, module_hash, created_at)  # fields checked above


def _is_key_part(value: object) -> bool:
    """What `ExecutionKey` accepts as a block id or module hash."""
    return type(value) is str and value != "" and "\x00" not in value


def _decode_contents(value: Any, inline: dict[str, bytes]) -> dict[str, Mapping[str, ObjectRef]]:
    _require(type(value) is dict)
    contents: dict[str, Mapping[str, ObjectRef]] = {}
    for kind, refs in value.items():
        _require(kind in CONTENT_KINDS and type(refs) is dict)
        decoded_refs: dict[str, ObjectRef] = {}
        for name, ref in refs.items():
            _require(type(name) is str and name != "")
            decoded_refs[name] = _decode_ref(ref, inline, is_buffer=False)
        contents[kind] = MappingProxyType(decoded_refs)
    return contents


class DecodeCount:
    """How many entry records this process has decoded: what the tests that
    bound the work of a cold lookup count (docs/format.md §16)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries = 0


decoded = DecodeCount()


_environments: dict[tuple[str, str, tuple[tuple[str, str], ...]], Environment] = {}
_MAX_ENVIRONMENTS = 256


def _environment(python: str, platform: str, packages: dict[str, str]) -> Environment:
    """One shared `Environment` per distinct value: a store's entries come
    from a handful of environments, and a cleanup decodes every entry.
    Bounded, so that a hostile store's million distinct ones cost nothing
    kept (an immutable value: sharing it cannot leak a change)."""
    lookup = (python, platform, tuple(packages.items()))
    found = _environments.get(lookup)
    if found is None:
        if len(_environments) >= _MAX_ENVIRONMENTS:
            _environments.clear()
        found = _environments[lookup] = Environment(python, platform, MappingProxyType(packages))
    return found


def decode_entry(
    record: Mapping[str, Any],
    context: Environment | None,
    *,
    last_access: int | None = None,
    hits: int = 0,
) -> StoredEntry | None:
    """The entry in a record, or None if the record is malformed.

    `context` supplies the environment fields a log record leaves out; a
    snapshot record (context None) must carry them itself, and its access
    statistics (checked by the caller) come as `last_access` and `hits`.
    """
    decoded.entries += 1
    key = key_from_fields(record.get("k"))
    python = record.get("py", context.python if context else None)
    platform = record.get("pl", context.platform if context else None)
    packages = record.get("pk", {})
    user_metadata = record.get("um", {})
    if key is None or not isinstance(python, str) or not isinstance(platform, str):
        return None
    if type(packages) is not dict or type(user_metadata) is not dict:
        return None
    if not all(type(k) is str and type(v) is str for k, v in packages.items()):
        return None
    if user_metadata and not is_plain_data(user_metadata):
        return None
    inline: dict[str, bytes] = {}
    try:
        contents = _decode_contents(record.get("c"), inline)
        signature = _decode_signature(record.get("sn"), record.get("sig"))
    except _Malformed:
        return None
    metadata = EntryMetadata(
        key,
        MappingProxyType(contents),
        _environment(python, platform, packages),
        MappingProxyType(user_metadata),
        last_access,
        signature,
        hits,
    )
    return StoredEntry(metadata, MappingProxyType(inline))


class KeyRecord(Value):
    """A decoded access or tombstone record: `kind` (`ACCESS_TYPE` or
    `TOMBSTONE_TYPE`), the run it is about, when (`at`, ms), and for an
    access how many hits it counts (`hits`, at least 1)."""

    __slots__ = ("kind", "key", "at", "hits")
    kind: str
    key: ExecutionKey
    at: int
    hits: int

    def __init__(self, kind: str, key: ExecutionKey, at: int, hits: int = 1) -> None:
        self._assign(kind=kind, key=key, at=at, hits=hits)


def encode_key_record(kind: str, key: ExecutionKey, at: int) -> dict[str, Any]:
    """A log record about one entry (docs/format.md §6.6, §6.7): an access
    or a tombstone (`kind`), at `at` (ms)."""
    return {"t": kind, "k": [key.block_id, key.module_hash, key.created_at], "at": at}


def encode_access(key: ExecutionKey, at: int, hits: int) -> dict[str, Any]:
    """An access record: the entry was last read at `at`, `hits` times since
    this writer's previous record of it."""
    return {**encode_key_record(ACCESS_TYPE, key, at), "n": hits}


LOG_RECORD_TYPES = (ENTRY_TYPE, ACCESS_TYPE, TOMBSTONE_TYPE)
"""The record types a log reader applies; a record of one of them that does
not decode is malformed (docs/format.md §6.5). Other types are ignored. A
tuple, not a set: `t` may be anything, a list included (unhashable)."""


def decode_log_record(
    header: Mapping[str, Any], record: Mapping[str, Any]
) -> StoredEntry | KeyRecord | None:
    """The entry, access or tombstone in a log record, checked against the
    format's schema; None for a malformed record or one of another type
    (the caller tells them apart with `LOG_RECORD_TYPES`).

    `header` is the segment's header: it supplies the environment fields an
    entry record leaves out.
    """
    kind = record.get("t")
    if kind == ENTRY_TYPE:
        python, platform = header.get("python"), header.get("platform")
        if not isinstance(python, str) or not isinstance(platform, str):
            return None
        return decode_entry(record, Environment(python, platform))
    if kind not in (ACCESS_TYPE, TOMBSTONE_TYPE):
        return None
    key, at = key_from_fields(record.get("k")), record.get("at")
    if key is None or not is_timestamp(at):
        return None
    hits = record.get("n", 1)  # a record without a count (older writers): one hit
    return KeyRecord(kind, key, at, hits if is_timestamp(hits) and hits > 0 else 1)


def same_contents(
    a: Mapping[str, Mapping[str, ObjectRef]], b: Mapping[str, Mapping[str, ObjectRef]]
) -> bool:
    """Whether two entries' contents hold the same values (ids and formats)."""
    return {kind: dict(refs) for kind, refs in a.items()} == {
        kind: dict(refs) for kind, refs in b.items()
    }


def _rank(entry: StoredEntry) -> tuple[int, int, bytes]:
    encoding = entry.canonical_bytes()
    return entry.metadata.content_size, len(encoding), encoding


def winner(a: StoredEntry, b: StoredEntry) -> StoredEntry:
    """The entry every reader keeps when `a` and `b` share a key.

    Two writers may store different contents under one key (a
    nondeterministic computation finishing in the same millisecond on two
    machines). Every reader must pick the same one whatever order it read
    them in, so the rule is a total order on the entries themselves: larger
    total content size, then longer canonical encoding, then the larger one.
    """
    if a.metadata == b.metadata:
        return a
    return a if _rank(a) >= _rank(b) else b
