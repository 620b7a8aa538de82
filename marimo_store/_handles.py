"""`ObjectHandle`: a small reference to an object in a store, for shipping.

Passing a 100 MB array to a worker pickles 100 MB; passing a handle pickles
the store's configuration and a content id, a few hundred bytes, and the
worker loads the object from the shared store (memory-mapped, verified).

`store.ref(obj)` stores the object as the entry `(content id, "handle")`:
one block per object, so cleanup keeps it like the newest run of any block,
and equal objects share one entry and one set of files. The content id is
the hash of the object's pickled bytes (stream and out-of-band buffers).

Within a process, `get()` loads each content id once: every handle that
resolved it holds the object, and a registry of weak references finds it
for equal handles (unpickled again, or made by another `ref`) while any of
them, or the object itself, is alive. Objects that cannot be weakly
referenced (`dict`, `list`, `int`, ...) are held through a small holder, so
they share one object as long as some handle that loaded them is alive.
"""

from __future__ import annotations

import contextlib
import threading
import weakref

from marimo_store._entry import VALUE, Entry, ExecutionKey
from marimo_store._errors import InvalidArgumentError, NotFoundError
from marimo_store._hashing import content_digest, content_hasher
from marimo_store._serialize import serialize_pickle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from marimo_store._protocol import Store

HANDLE = "handle"
"""The `module_hash` of a handle's entry; its `block_id` is the content id."""


class _Loaded:
    """Holds a loaded object for the handles that resolved it."""

    __slots__ = ("__weakref__", "value")

    def __init__(self, value: Any) -> None:
        self.value = value


_holders: weakref.WeakValueDictionary[str, _Loaded] = weakref.WeakValueDictionary()
_objects: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
"""Loaded objects that can be weakly referenced, alive in this process."""
_registry_lock = threading.Lock()
_loading: dict[str, threading.Lock] = {}
"""One lock per content id being loaded: two threads never load it twice."""


def content_id(obj: Any) -> str:
    """The hex xxh3-128 of `obj`'s pickled form: stream, then each buffer's hash."""
    serialized = serialize_pickle("object", obj, cloudpickle_fallback=True)
    hasher = content_hasher()
    hasher.update(serialized.format.encode())
    hasher.update(content_digest(serialized.stream))
    for buffer in serialized.buffers:
        hasher.update(content_digest(buffer))
    return hasher.hexdigest()


def handle_to(store: Store, obj: Any) -> ObjectHandle:
    """Store `obj` in `store` unless it is there already; its handle."""
    identity = content_id(obj)
    key = ExecutionKey._trusted(identity, HANDLE)
    if not store.history(key):
        store.put(Entry.of(key, {VALUE: obj}, format="pickle"))
    return ObjectHandle(store, identity)


def _found(identity: str) -> _Loaded | None:
    """The holder of an object of this content id loaded earlier, if alive."""
    holder = _holders.get(identity)
    if holder is None:
        value = _objects.get(identity)
        if value is not None:
            holder = _holders[identity] = _Loaded(value)
    return holder


class ObjectHandle:
    """A reference to an object in a store: `handle.get()` returns it.

    Pickles as the store's configuration and the content id. Handles are
    equal (and hash alike) when their content ids are, whatever store they
    name. Made by `store.ref(obj)`.
    """

    __slots__ = ("_loaded", "content_id", "store")

    def __init__(self, store: Store, content_id: str) -> None:
        if not isinstance(content_id, str) or not content_id:
            raise InvalidArgumentError(f"content_id must be a non-empty str, got {content_id!r}")
        self.store = store
        self.content_id = content_id
        self._loaded: _Loaded | None = None

    def get(self) -> Any:
        """The object, loaded on first use and then the same object every time.

        Raises `NotFoundError` when the store no longer holds it (deleted,
        cleaned up, or damaged: a `StoreWarning` says which).
        """
        loaded = self._loaded
        if loaded is None:
            loaded = self._loaded = self._resolve()
        return loaded.value

    def _resolve(self) -> _Loaded:
        identity = self.content_id
        with _registry_lock:
            holder = _found(identity)
            if holder is not None:
                return holder
            lock = _loading.setdefault(identity, threading.Lock())
        try:
            with lock:
                with _registry_lock:
                    holder = _found(identity)  # another thread loaded it meanwhile
                if holder is not None:
                    return holder
                entry = self.store.get(ExecutionKey._trusted(identity, HANDLE))
                if entry is None or VALUE not in entry.variables:
                    raise NotFoundError(
                        f"{self!r}: the store no longer holds this object "
                        "(deleted, cleaned up, or damaged)"
                    )
                value = entry.variables[VALUE]
                with _registry_lock:
                    holder = _holders[identity] = _Loaded(value)
                    with contextlib.suppress(TypeError):  # dict, list, int: only the holder
                        _objects[identity] = value
                return holder
        finally:
            with _registry_lock:
                _loading.pop(identity, None)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ObjectHandle, (self.store, self.content_id))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectHandle):
            return NotImplemented
        return self.content_id == other.content_id

    def __hash__(self) -> int:
        return hash(self.content_id)

    def __repr__(self) -> str:
        return f"ObjectHandle({self.content_id!r}, store={self.store!r})"
