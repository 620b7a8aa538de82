"""What a cached function reports about itself: `CacheInfo` and `Explanation`.

`cache_info()` counts a wrapper's hits and misses and what its block holds
in the store; `explain()` says whether a call would hit and, on a miss,
which key components differ from the nearest stored entry, in words. Both
only read: nothing here runs the function or writes to the store.

`call_record` is what a stored call records for them (its function, its
components, and the key scheme `KEY_SCHEME` its key was computed by), so
that an explanation can tell a changed component from a changed scheme.
Invariant: an explanation names every reason a call's key differs from the
nearest stored one: a component, or (when no component differs, or the
recorded scheme does) the key scheme.
"""

from __future__ import annotations

import functools
import types

from marimo_store._entry import CALL_METADATA_KEY
from marimo_store._key_components import (
    ARGUMENT,
    CELL,
    CLASS,
    CODE,
    FUNCTION,
    GLOBAL,
    KEY_SCHEME,
    MODULE,
    SCHEME,
    VERSION,
)
from marimo_store._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from marimo_store._call_key import CallKey
    from marimo_store._entry import EntryMetadata, ExecutionKey
    from marimo_store._protocol import Store


class CacheInfo(Value):
    """`hits` and `misses` of this wrapper in this process; as in
    `functools.lru_cache`, `maxsize` (how many calls the store's cleanup keeps
    of this function: its `max_calls_per_function`, None when unbounded by
    count) and `currsize` (how many are stored); `entries` (the same as
    `currsize`) and `bytes` (distinct objects, each counted once) of its
    block in the store; `store`: where that store is (`store_location`)."""

    __slots__ = ("hits", "misses", "maxsize", "currsize", "entries", "bytes", "store")
    hits: int
    misses: int
    maxsize: int | None
    currsize: int
    entries: int
    bytes: int
    store: str

    def __init__(  # noqa: PLR0917 - a Value is rebuilt from positional fields (pickle)
        self,
        hits: int,
        misses: int,
        maxsize: int | None,
        currsize: int,
        entries: int,
        bytes: int,
        store: str,
    ) -> None:
        self._assign(
            hits=hits,
            misses=misses,
            maxsize=maxsize,
            currsize=currsize,
            entries=entries,
            bytes=bytes,
            store=store,
        )


def store_location(store: Store) -> str:
    """A store's directory, or for a store without one, its repr."""
    path = getattr(store, "path", None)
    return path if isinstance(path, str) else repr(store)


class Explanation:
    """Why a call hits or misses, without running it (`wrapper.explain(...)`).

    `key` and `components` are the call's execution key and what it was
    hashed from, and `key_scheme` the version of the formula that made the
    key (`KEY_SCHEME`). On a hit, `nearest` is the stored entry. On a miss,
    `nearest` is the stored entry of the same block (else of the same
    function, whose code then changed) that differs in the fewest
    components, `changed` names those components (`scheme` when the entry
    was stored under another key scheme) and `reasons` says what they are
    in words; both are empty when nothing of this function is stored.
    `store` is where the store looked in is (`store_location`).
    """

    __slots__ = (
        "changed",
        "components",
        "function",
        "hit",
        "key",
        "key_scheme",
        "nearest",
        "reasons",
        "store",
    )

    def __init__(
        self,
        function: str,
        call: CallKey,
        *,
        store: str,
        hit: bool,
        nearest: EntryMetadata | None,
        changed: tuple[str, ...],
        reasons: tuple[str, ...],
    ) -> None:
        self.function = function
        self.store = store
        self.key: ExecutionKey = call.key
        self.key_scheme = KEY_SCHEME
        self.components: Mapping[str, str] = types.MappingProxyType(call.components)
        self.hit = hit
        self.nearest = nearest
        self.changed = changed
        self.reasons = reasons

    def __repr__(self) -> str:
        return f"<Explanation of {self.function}: {'hit' if self.hit else 'miss'}>"

    def __str__(self) -> str:
        lines = [
            f"{self.function}: {'hit' if self.hit else 'miss'}",
            f"  key: scheme={self.key_scheme} block_id={self.key.block_id} "
            f"module_hash={self.key.module_hash}",
            f"  store: {self.store}",
        ]
        if self.hit:
            lines.append(f"  stored entry: {self.nearest.key if self.nearest else '?'}")
        elif self.nearest is None:
            lines.append("  nothing of this function is stored yet")
        else:
            lines.append(f"  nearest stored entry: {self.nearest.key}")
            lines.extend(f"  changed: {reason}" for reason in self.reasons)
        return "\n".join(lines)


def _describe(name: str, before: str | None, after: str | None) -> str:
    """A component name in words, e.g. `global 'y'`."""
    if name == CODE:
        text = "the function's code"
    elif name == VERSION:
        text = "version="
    else:
        kinds = (
            (FUNCTION, "the code of function"),
            (CLASS, "the code of class"),
            (GLOBAL, "global"),
            (CELL, "closure variable"),
            (ARGUMENT, "argument"),
            (MODULE, "module"),
        )
        prefix, noun = next((p, n) for p, n in kinds if name.startswith(p))
        text = f"{noun} {name[len(prefix) :]!r}"
        if prefix == MODULE and before is not None and after is not None:
            text += f" version ({before} -> {after})"
    if before is None:
        return f"{text} (not used before)"
    if after is None:
        return f"{text} (no longer used)"
    return text


def call_record(function: str, call: CallKey) -> dict[str, Any]:
    """What `persistent_cache` records of a call in its entry's user metadata
    (under `CALL_METADATA_KEY`): the function, the key scheme, the components."""
    return {"function": function, SCHEME: KEY_SCHEME, "components": call.components}


def recorded_scheme(metadata: EntryMetadata) -> int | None:
    """The key scheme a stored call's key was computed by; None when the
    entry is not a call or was stored before calls recorded it."""
    recorded = metadata.user_metadata.get(CALL_METADATA_KEY)
    scheme = recorded.get(SCHEME) if isinstance(recorded, dict) else None
    return scheme if isinstance(scheme, int) and not isinstance(scheme, bool) else None


def _recorded(metadata: EntryMetadata) -> tuple[str | None, Mapping[str, str]]:
    """The function name and key components an entry was stored with."""
    recorded = metadata.user_metadata.get(CALL_METADATA_KEY)
    if not isinstance(recorded, dict):
        return None, {}
    function, components = recorded.get("function"), recorded.get("components")
    return (
        function if isinstance(function, str) else None,
        components if isinstance(components, dict) else {},
    )


def _differences(
    now: Mapping[str, str], stored: Mapping[str, str], scheme: int | None
) -> list[str]:
    """The components that differ, and `scheme` first when the entry's key
    scheme does (recorded, or else implied: same block and components, yet
    another key, can only be another scheme)."""
    changed = sorted(
        name for name in now.keys() | stored.keys() if now.get(name) != stored.get(name)
    )
    if scheme != KEY_SCHEME and (scheme is not None or not changed):
        changed.insert(0, SCHEME)
    return changed


def explain_call(function: str, call: CallKey, store: Store) -> Explanation:
    """Whether `call` of `function` would hit in `store`, and on a miss the
    nearest stored entry and how it differs (see `Explanation`)."""
    explained = functools.partial(Explanation, function, call, store=store_location(store))
    entries = store.entries()
    own = [m for m in entries if m.key.block_id == call.key.block_id]
    for metadata in reversed(own):  # newest first
        if metadata.key.module_hash == call.key.module_hash:
            return explained(hit=True, nearest=metadata, changed=(), reasons=())
    candidates = own or [m for m in entries if _recorded(m)[0] == function]
    best: tuple[tuple[int, int], EntryMetadata, list[str]] | None = None
    for metadata in candidates:
        recorded = _recorded(metadata)[1]
        if not recorded:
            continue
        changed = _differences(call.components, recorded, recorded_scheme(metadata))
        rank = (len(changed), -metadata.created_at)
        if best is None or rank < best[0]:
            best = (rank, metadata, changed)
    if best is None:
        return explained(hit=False, nearest=None, changed=(), reasons=())
    _, nearest, changed = best
    recorded = _recorded(nearest)[1]
    scheme = recorded_scheme(nearest)
    reasons = tuple(
        f"the key scheme ({'not recorded' if scheme is None else scheme} -> {KEY_SCHEME})"
        if name == SCHEME
        else _describe(name, recorded.get(name), call.components.get(name))
        for name in changed
    )
    return explained(hit=False, nearest=nearest, changed=tuple(changed), reasons=reasons)
