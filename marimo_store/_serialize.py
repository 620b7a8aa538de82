"""Turning one variable's value into bytes and back.

Pickle protocol 5 is the default because it handles nearly every Python
value and lets large buffers (numpy, pandas, arrow) travel *out of band*:
the pickle stream only references them, and the store writes each buffer as
an object of its own. That makes a 1 GiB array cost one hash and one write
(no copy into a pickle stream), deduplicates equal arrays across entries, and
lets `get` memory-map them back instead of reading them.

Plain pickle stores functions and classes by reference (module + name). That
breaks for lambdas, closures and anything defined in `__main__` (a script or
a notebook), whose names do not exist in the loading process; those values
fall back to cloudpickle, which stores them by value.

JSON is for values that must never execute code on load; it is strict:
anything that would not come back equal (tuples, non-str keys, NaN) is
refused rather than silently changed.
"""

from __future__ import annotations

import functools
import io
import math
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from marimo_store._errors import SerializationError, StoreWarning

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pickle
    from typing import Any

    from marimo_store._entry import ContentFormat, ExecutionKey, ObjectRef, StoredFormat
    from marimo_store._hashing import Buffer

PICKLE_PROTOCOL = 5

OUT_OF_BAND_MIN_BYTES = 64 * 1024
"""Buffers at least this large become objects of their own.

Smaller ones stay inside the pickle stream: a separate file per tiny array
would cost more (a file, a hash, an mmap) than it saves.
"""


class SerializedValue:
    """One variable in serialized form, ready to be written as objects.

    `modules`: the top-level modules whose classes or functions the stream
    refers to (their versions go into the entry's environment).
    """

    __slots__ = ("buffers", "format", "modules", "stream")

    def __init__(
        self,
        format: StoredFormat,
        stream: bytes,
        buffers: list[memoryview] | None = None,
        modules: frozenset[str] = frozenset(),
    ) -> None:
        self.format: StoredFormat = format
        self.stream = stream
        self.buffers = buffers or []
        self.modules = modules


class _NeedsValuePickling(Exception):  # noqa: N818 - internal control flow, not an error
    """Raised inside plain pickling when an object must be pickled by value."""


def _defining_module(obj: Any) -> str | None:
    if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
        module = getattr(obj, "__module__", None)
    else:
        module = type(obj).__module__
    return module if isinstance(module, str) else None


class _ModuleTracker:
    """Collects the top-level modules referenced while pickling.

    `reducer_override` is pickle's documented per-object hook; it is not
    called for the built-in atomic types, so plain data pays nothing.
    """

    def __init__(self) -> None:
        self.modules: set[str] = set()

    def note(self, obj: Any) -> str | None:
        module = _defining_module(obj)
        if module is not None:
            self.modules.add(module.partition(".")[0])
        return module


def _only_importable_by_value(module: str | None) -> bool:
    # `__main__` is the script or notebook: the loading process has another one.
    return module == "__main__" or (module is not None and module not in sys.modules)


@functools.cache
def _plain_pickler_class() -> type[pickle.Pickler]:
    """Plain pickle's pickler with module tracking, refusing what only
    loads by value; built on first use, because `pickle` (with the `re` and
    `enum` it imports) is a quarter of `import marimo_store` and a process
    that only reads never needs it (`deserialize` uses the C unpickler)."""
    import pickle  # noqa: PLC0415

    class PlainPickler(pickle.Pickler):
        def __init__(self, file: io.BytesIO, **options: Any) -> None:
            super().__init__(file, **options)
            self.tracker = _ModuleTracker()

        def reducer_override(self, obj: Any) -> Any:
            if _only_importable_by_value(self.tracker.note(obj)):
                raise _NeedsValuePickling
            return NotImplemented

    return PlainPickler


@functools.cache
def _cloud_pickler_class() -> type[pickle.Pickler]:
    """cloudpickle's pickler with module tracking; built on first use because
    importing cloudpickle costs more than the rest of marimo_store."""
    import cloudpickle  # noqa: PLC0415

    class CloudPickler(cloudpickle.Pickler):  # type: ignore[misc]
        def __init__(self, file: io.BytesIO, **options: Any) -> None:
            super().__init__(file, **options)
            self.tracker = _ModuleTracker()

        def reducer_override(self, obj: Any) -> Any:
            self.tracker.note(obj)
            return super().reducer_override(obj)

    return CloudPickler


class _BufferCollector:
    """The `buffer_callback` of a pickler: keeps large buffers out of band."""

    def __init__(self) -> None:
        self.buffers: list[memoryview] = []

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: must be copied in-band
            return True
        if raw.nbytes < OUT_OF_BAND_MIN_BYTES:
            return True
        self.buffers.append(raw)
        return False  # false means: out of band


def _pickle_with(
    pickler_class: type[pickle.Pickler], value: Any, stored: StoredFormat
) -> SerializedValue:
    stream = io.BytesIO()
    collector = _BufferCollector()
    pickler = pickler_class(stream, protocol=PICKLE_PROTOCOL, buffer_callback=collector)
    pickler.dump(value)
    tracker: _ModuleTracker = pickler.tracker  # type: ignore[attr-defined]
    return SerializedValue(stored, stream.getvalue(), collector.buffers, frozenset(tracker.modules))


def _describe(name: str, value: Any) -> str:
    kind = type(value)
    return f"variable {name!r} of type {kind.__module__}.{kind.__qualname__}"


def serialize_pickle(name: str, value: Any, *, cloudpickle_fallback: bool) -> SerializedValue:
    """Pickle `value`, by value with cloudpickle where plain pickle cannot."""
    import pickle  # noqa: PLC0415 - see _plain_pickler_class

    try:
        return _pickle_with(_plain_pickler_class(), value, "pickle")
    except (_NeedsValuePickling, pickle.PicklingError, AttributeError, TypeError) as error:
        if not cloudpickle_fallback:
            reason = (
                "it refers to code defined in __main__ or a notebook"
                if isinstance(error, _NeedsValuePickling)
                else str(error)
            )
            raise SerializationError(
                f"cannot pickle {_describe(name, value)}: {reason}; "
                "enable cloudpickle_fallback or return plain data"
            ) from (None if isinstance(error, _NeedsValuePickling) else error)
    except Exception as error:
        raise SerializationError(f"cannot pickle {_describe(name, value)}: {error}") from error
    try:
        return _pickle_with(_cloud_pickler_class(), value, "cloudpickle")
    except Exception as error:
        raise SerializationError(
            f"cannot pickle {_describe(name, value)}, not even with cloudpickle: {error}"
        ) from error


def _json_problem(value: Any, path: str) -> str | None:
    """Where `value` stops being JSON that round-trips exactly, if anywhere."""
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        return None if type(value) is int else f"{path} is an int subclass"
    if isinstance(value, float):
        if type(value) is not float:
            return f"{path} is a float subclass"
        return None if math.isfinite(value) else f"{path} is {value!r} (not JSON)"
    if type(value) is list:
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if type(value) is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-str key {key!r}"
            problem = _json_problem(item, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    kind = type(value)
    return f"{path} is a {kind.__module__}.{kind.__qualname__}"


def serialize_json(name: str, value: Any) -> SerializedValue:
    """Encode `value` as JSON, refusing anything that would not load back equal."""
    try:
        problem = _json_problem(value, name)
    except RecursionError as error:
        raise SerializationError(
            f"cannot store {_describe(name, value)} as JSON: nested too deeply"
        ) from error
    if problem:
        raise SerializationError(
            f"cannot store {_describe(name, value)} as JSON: {problem}; "
            "JSON holds only dict (str keys), list, str, int, finite float, bool and None"
        )
    import json  # noqa: PLC0415 - ~5 ms to import; only JSON-format values need it

    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        encoded = text.encode("utf-8")
    except (ValueError, RecursionError) as error:  # UnicodeEncodeError is a ValueError
        # A lone surrogate has no UTF-8 form; an int past Python's digit limit
        # cannot be written (nor read back); nesting deeper than the stack.
        raise SerializationError(
            f"cannot store {_describe(name, value)} as JSON: {error}"
        ) from error
    return SerializedValue("json", encoded)


def serialize_bytes(name: str, value: Any) -> SerializedValue:
    """Keep bytes as they are: nothing to encode, and nothing runs on load.

    For values that are serialized already (another cache's files, say).
    `value` is a bytes-like object, or a tuple of them: *pieces* whose
    concatenation is the value. Each piece after the first is stored as an
    object of its own, so a large piece that several values share (the same
    array inside two pickles) is stored once.
    """
    pieces = value if isinstance(value, tuple) else (value,)
    views: list[memoryview] = []
    for index, piece in enumerate(pieces):
        try:
            view = memoryview(piece)
        except TypeError:
            view = None
        if view is None or not view.c_contiguous:
            what = _describe(name, piece if isinstance(value, tuple) else value)
            where = f" (piece {index})" if isinstance(value, tuple) else ""
            raise SerializationError(
                f"cannot store {what}{where} as bytes: format='bytes' takes a contiguous "
                "bytes-like object or a tuple of them"
            )
        views.append(view.cast("B") if view.format != "B" or view.ndim != 1 else view)
    if not views:
        return SerializedValue("bytes", b"")
    first = pieces[0]
    stream = first if type(first) is bytes else views[0].tobytes()
    return SerializedValue("bytes", stream, views[1:])


def serialize_contents(
    contents: Mapping[str, Mapping[str, Any]], format: ContentFormat, *, cloudpickle_fallback: bool
) -> dict[str, dict[str, SerializedValue]]:
    """Every variable of an entry's contents, kinds and names in sorted order.

    `format` `"json"` encodes JSON, `"bytes"` keeps bytes as they are;
    anything else (`"pickle"`, or an `"auto"` the store did not resolve)
    pickles.
    """

    def serialize(name: str, value: Any) -> SerializedValue:
        if format == "json":
            return serialize_json(name, value)
        if format == "bytes":
            return serialize_bytes(name, value)
        return serialize_pickle(name, value, cloudpickle_fallback=cloudpickle_fallback)

    return {
        kind: {name: serialize(name, variables[name]) for name in sorted(variables)}
        for kind, variables in sorted(contents.items())
    }


def store_contents(
    serialized: Mapping[str, Mapping[str, SerializedValue]],
    store: Callable[[SerializedValue], ObjectRef],
) -> tuple[dict[str, Mapping[str, ObjectRef]], set[str]]:
    """Store every serialized variable with `store`; return the contents as
    references, and the top-level modules the values refer to (whose
    versions go into the entry's environment)."""
    modules: set[str] = set()
    contents: dict[str, Mapping[str, ObjectRef]] = {}
    for kind, variables in serialized.items():
        refs: dict[str, ObjectRef] = {}
        for name, value in variables.items():
            modules |= value.modules
            refs[name] = store(value)
        contents[kind] = MappingProxyType(refs)
    return contents, modules


MISSING: Any = object()
"""Stands for a value that could not be loaded (a miss)."""


def load_contents(
    contents: Mapping[str, Mapping[str, ObjectRef]], load: Callable[[ObjectRef], Any]
) -> dict[str, dict[str, Any]] | None:
    """Every value of an entry's `contents`, each loaded by `load`; None at
    the first that does not load (`MISSING`). A run with a value missing is
    a miss as a whole, so the values after it are never read (or fetched).
    Every store's `get` loads a run through this."""
    loaded: dict[str, dict[str, Any]] = {}
    for kind, refs in contents.items():
        values: dict[str, Any] = {}
        for name, ref in refs.items():
            value = load(ref)
            if value is MISSING:
                return None
            values[name] = value
        loaded[kind] = values
    return loaded


def unloadable(error: Exception, key: ExecutionKey, *, where: str = "", stacklevel: int) -> Any:
    """What `deserialize` raising `error` means to a store: a value that no
    longer loads (a class that moved, a package that changed) is a miss,
    not a crash. Warns naming the entry's `key` (`where` adds to it);
    returns `MISSING`. `stacklevel` as for `warnings.warn`, from the caller."""
    warnings.warn(
        f"marimo_store: cannot load a value of entry {key}{where}: "
        f"{type(error).__name__}: {error}; treated as a miss",
        StoreWarning,
        stacklevel=stacklevel + 1,
    )
    return MISSING


def deserialize(stored: StoredFormat, stream: Buffer, buffers: Sequence[Buffer]) -> Any:
    """Rebuild a value from its stream and out-of-band buffers.

    Read-only buffers (`mmap_mode="r"`) give read-only arrays; writable ones
    (private copies, copy-on-write maps) writable arrays, whose writes never
    reach the cache.
    A `bytes` value comes back as one `bytes` object, its pieces joined.
    """
    if stored == "bytes":
        return b"".join((stream, *buffers)) if buffers else bytes(stream)
    if stored == "json":
        import json  # noqa: PLC0415 - see serialize_json

        return json.loads(bytes(stream))
    if stored in ("pickle", "cloudpickle"):
        # `_pickle` is the C unpickler that `pickle.loads` is on CPython;
        # importing it alone spares a reader pickle.py's own imports.
        from _pickle import loads  # noqa: PLC0415

        return loads(stream, buffers=buffers)
    raise SerializationError(f"unknown stored format {stored!r}")


def load_value(
    stored: StoredFormat,
    stream: Buffer | None,
    loaded: Sequence[Buffer | None],
    key: ExecutionKey,
    *,
    where: str = "",
    stacklevel: int,
) -> Any:
    """A value from its read stream and buffers (None: one could not be
    read), or `MISSING` when one is missing or the value no longer loads
    (with `unloadable`'s warning; `stacklevel` from the caller)."""
    buffers = [buffer for buffer in loaded if buffer is not None]
    if stream is None or len(buffers) != len(loaded):
        return MISSING
    try:
        return deserialize(stored, stream, buffers)
    except Exception as error:  # a value that no longer loads is a miss, not a crash
        return unloadable(error, key, where=where, stacklevel=stacklevel + 1)
