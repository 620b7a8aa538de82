"""Value hashing: the canonical digest of a value, and of code. No I/O.

Values are hashed by a canonical encoding that does not depend on the
process (no `hash()`, no id, no dict or set order): numpy arrays, pandas
objects and bytes-like values through their buffers, without a copy;
dataclasses and plain instances by their fields; anything else through
pickle protocol 5 with its buffers hashed out of band.

Code is hashed from its syntax tree, so comments and formatting do not
count. The source is only trusted after it has been compiled and compared
with the function's bytecode (`_code_identity._source_definition`). When
the source is missing or does not match, the bytecode itself is hashed
(stable for one Python version).

Code digests live here, beside the encoder, because the two recurse into
each other: a function passed as a value is hashed by its code, and code
is hashed by encoding its constants. What the code is and reads comes from
`_code_identity`, which hashes nothing, so there is no import loop.
"""

from __future__ import annotations

import functools
import struct
import sys
import types

import xxhash

from marimo_store._code_identity import (
    _CLASS,
    _HELPER,
    _REFERENCE,
    _fingerprint,
    _functions_of,
    _input_kind,
    _inputs_of,
    _remember,
    _source_definition,
)
from marimo_store._key_components import CELL

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    import pickle
    from collections.abc import Callable
    from typing import Any

_HEAP_TYPE = 1 << 9

_U64 = struct.Struct("<Q").pack
_I64 = struct.Struct("<q").pack
_F64 = struct.Struct("<d").pack


class _Plain:
    """Only its size matters: the instance size of a class without `__slots__`."""


_PLAIN_BASICSIZE = _Plain.__basicsize__
_DEFAULT_PICKLING: tuple[tuple[str, Any], ...] = tuple(
    (name, getattr(object, name, None)) for name in ("__reduce_ex__", "__reduce__", "__getstate__")
)
"""What a class that pickles its `__dict__` as is inherits unchanged."""


class Unhashable(Exception):  # noqa: N818 - internal; surfaces as an InvalidArgumentError
    """A value has no canonical encoding; the message says why."""


# -- values -------------------------------------------------------------------------


def value_digest(value: Any, *, home_module: str | None = None) -> str:
    """The canonical xxh3-128 hex digest of a value; raises `Unhashable`.

    `home_module`: instances of plain classes defined in this module also
    hash their class's code (a cached method's result depends on the other
    methods it calls through `self`).
    """
    scalar = _SCALARS.get(type(value))
    if scalar is not None:  # the common argument: one call, the same bytes as below
        return xxhash.xxh3_128_hexdigest(scalar(value))
    hasher = xxhash.xxh3_128()
    _Encoder(hasher, home_module, set()).feed(value)
    return hasher.hexdigest()


class _Encoder:
    """Feeds one value's canonical encoding into a hasher.

    Every item is tagged with its type and length-prefixed, so no two
    different values share an encoding; containers whose order carries no
    meaning (dict, set) hash each item separately and feed the sorted digests.
    """

    __slots__ = ("_active", "_home", "_hasher", "_update")

    def __init__(self, hasher: xxhash.xxh3_128, home: str | None, active: set[int]) -> None:
        self._hasher = hasher
        self._update = hasher.update
        self._home = home
        self._active = active  # ids of the containers being encoded: cycles

    def feed(self, value: Any) -> None:
        scalar = _SCALARS.get(type(value))
        if scalar is not None:
            self._update(scalar(value))
            return
        encode = _ENCODERS.get(type(value))
        if encode is not None:
            encode(self, value)
        else:
            self._feed_other(value)

    def _digest_of(self, *values: Any) -> bytes:
        hasher = xxhash.xxh3_128()
        encoder = _Encoder(hasher, self._home, self._active)
        for value in values:
            encoder.feed(value)
        return hasher.digest()

    def _feed_text(self, tag: bytes, text: str) -> None:
        self._update(tag + _str_bytes(text))

    def _feed_reference(self, obj: Any) -> None:
        """A class or builtin by its name: what pickle would store."""
        self._feed_text(b"t", f"{getattr(obj, '__module__', None)}.{obj.__qualname__}")

    def _enter(self, value: Any) -> bool:
        """Start a container; False if it is already being encoded (a cycle)."""
        if id(value) in self._active:
            self._update(b"@")
            return False
        self._active.add(id(value))
        return True

    def _feed_sequence(self, tag: bytes, value: list[Any] | tuple[Any, ...]) -> None:
        if not self._enter(value):
            return
        self._update(tag + _U64(len(value)))
        for item in value:
            self.feed(item)
        self._active.discard(id(value))

    def _feed_unordered(self, tag: bytes, digests: list[bytes]) -> None:
        digests.sort()
        self._update(tag + _U64(len(digests)))
        self._update(b"".join(digests))

    def _feed_dict(self, value: dict[Any, Any]) -> None:
        if self._enter(value):
            self._feed_unordered(b"d", [self._digest_of(k, v) for k, v in value.items()])
            self._active.discard(id(value))

    def _feed_set(self, value: set[Any] | frozenset[Any]) -> None:
        tag = b"{" if type(value) is set else b"}"
        self._feed_unordered(tag, [self._digest_of(item) for item in value])

    def _feed_buffer(self, tag: bytes, view: memoryview) -> None:
        """Raw bytes of a buffer, hashed in place when it is contiguous."""
        self._feed_text(tag, f"{view.format}{view.shape}")
        self._update(_U64(view.nbytes))
        if view.c_contiguous and view.ndim:
            self._update(view.cast("B"))
        else:
            self._update(view.tobytes())  # strided or 0-d: copied in C order

    def _feed_other(self, value: Any) -> None:
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
            self._feed_numpy(numpy, value)
            return
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(value, _pandas_types(pandas)):
            self._feed_pandas(pandas, numpy, value)
            return
        fields = _dataclass_fields(value)
        if fields is not None:
            self._feed_reference(type(value))
            self._feed_fields([(name, getattr(value, name)) for name in fields])
            return
        state = _plain_state(value)
        if state is not None:
            cls = type(value)
            self._feed_reference(cls)
            if self._home is not None and cls.__module__ == self._home:
                self._feed_class(cls)
            if self._enter(value):
                self._feed_dict(state)
                self._active.discard(id(value))
            return
        self._feed_pickled(value)

    def _feed_fields(self, fields: list[tuple[str, Any]]) -> None:
        self._update(b"D" + _U64(len(fields)))
        for name, item in fields:
            self._update(_str_bytes(name))
            self.feed(item)

    def _feed_numpy(self, numpy: Any, value: Any) -> None:
        if isinstance(value, numpy.generic):
            self._feed_text(b"a", value.dtype.str)
            self._update(value.tobytes())
            return
        dtype = value.dtype
        if dtype.hasobject:  # elements are Python objects: no meaningful buffer
            self._feed_pickled(value)
            return
        descr = str(dtype.descr) if dtype.names is not None else dtype.str
        self._feed_text(b"A", f"{type(value).__qualname__}|{descr}|{value.shape}")
        if not value.flags.c_contiguous:
            value = numpy.ascontiguousarray(value)  # the one case that copies
        flat = value.reshape(-1).view(numpy.uint8)  # any dtype, even datetime64
        self._update(_U64(flat.nbytes))
        self._update(flat)

    def _feed_pandas(self, pandas: Any, numpy: Any, value: Any) -> None:
        if isinstance(value, pandas.Index):
            self._feed_text(b"X", type(value).__qualname__)
            self.feed(list(value.names))
            if isinstance(value, pandas.RangeIndex):  # the default index: never materialize it
                self.feed((value.start, value.stop, value.step))
            else:
                self.feed(value.to_numpy())
            return
        if isinstance(value, pandas.Series):
            self._update(b"S")
            self.feed(value.name)
            self._feed_pandas(pandas, numpy, value.index)
            self._feed_column(numpy, value)
            return
        # A DataFrame by columns: equal frames hash equally however pandas
        # happens to lay out their blocks in memory.
        self._update(b"F" + _U64(value.shape[1]))
        self._feed_pandas(pandas, numpy, value.columns)
        self._feed_pandas(pandas, numpy, value.index)
        for _, column in value.items():
            self._feed_column(numpy, column)

    def _feed_column(self, numpy: Any, series: Any) -> None:
        self._update(_str_bytes(str(series.dtype)))
        if isinstance(series.dtype, numpy.dtype):
            self.feed(series.to_numpy())
        else:  # extension arrays (categorical, string, arrow): their own pickling
            self._feed_pickled(series.array)

    def _feed_function(self, func: types.FunctionType) -> None:
        """A function as a value: what calling it depends on.

        Its code, defaults and closure cells; for a function of the home
        module (a helper passed as an argument), also the globals it reads,
        followed as the cached function's own dependencies are. Functions of
        other modules count by their code and cells only.
        """
        self._feed_text(b"L", func.__qualname__)
        self._update(code_digest(func))
        if not self._enter(func):
            return
        self.feed((func.__defaults__, func.__kwdefaults__))
        follows = self._home is not None and func.__globals__.get("__name__") == self._home
        for _, component, value in _inputs_of(func, ""):
            if follows or component.startswith(CELL):
                self._update(_str_bytes(component))
                self._feed_input(value, func.__globals__)
        self._active.discard(id(func))

    def _feed_input(self, value: Any, namespace: dict[str, Any]) -> None:
        """A global or cell value, counted as `_input_kind` says."""
        kind, what = _input_kind(value, namespace, self._home)
        if kind is _HELPER:
            self._feed_function(what)
        elif kind is _CLASS:
            self._feed_class(what)
        elif kind is _REFERENCE:
            self._update(b"r" + _str_bytes(what))
        else:
            self.feed(what)

    def _feed_class(self, cls: type) -> None:
        """A class by its name, bases, methods (as functions) and plain attributes.

        Built from the live class, never from its source, so it cannot
        describe a class other than the one running.
        """
        self._feed_reference(cls)
        if not self._enter(cls):
            return
        self.feed([f"{base.__module__}.{base.__qualname__}" for base in cls.__mro__])
        for name, attribute in sorted(vars(cls).items()):
            functions = [
                function
                for function in _functions_of(attribute)
                if isinstance(function, types.FunctionType)
            ]
            if functions:
                self.feed(name)
                for function in functions:
                    self._feed_function(function)
            elif not name.startswith("__"):
                self.feed(name)
                try:
                    self.feed(value_digest(attribute))
                except Unhashable:  # e.g. a lock shared by the instances
                    self.feed(f"{type(attribute).__module__}.{type(attribute).__qualname__}")
        self._active.discard(id(cls))

    def _feed_pickled(self, value: Any) -> None:
        import pickle  # noqa: PLC0415 - already loaded by the store; local for clarity

        self._update(b"P")
        try:
            _hashing_pickler(pickle)(self).dump(value)
        except Exception as error:  # anything __reduce__ may raise
            raise Unhashable(f"{type(error).__name__}: {error}") from error


@functools.cache
def _hashing_pickler(pickle: Any) -> Callable[[_Encoder], pickle.Pickler]:
    """A pickler writing into an encoder's hasher; buffers are hashed where they lie.

    The class is made once (cached): making it is about as slow as hashing
    a small value through it, and this runs on every call of a cached
    function whose arguments or globals need pickling.
    """

    class HashingPickler(pickle.Pickler):  # type: ignore[misc]
        def __init__(self, encoder: _Encoder) -> None:
            self._encoder = encoder
            self._hasher = encoder._hasher
            super().__init__(_Sink(self._hasher), protocol=5, buffer_callback=self._buffer)

        def _buffer(self, buffer: pickle.PickleBuffer) -> bool:
            try:
                raw = buffer.raw()
            except BufferError:  # not contiguous: let pickle copy it in band
                return True
            self._hasher.update(b"B" + _U64(raw.nbytes))
            self._hasher.update(raw)
            return False

        def reducer_override(self, obj: Any) -> Any:
            # Functions as the encoder hashes them, not by name: a lambda
            # inside a value is hashable, and an edited one changes the key.
            if type(obj) is types.FunctionType:
                return str, (f"function {self._encoder._digest_of(obj).hex()}",)
            return NotImplemented

    return HashingPickler


class _Sink:
    """A file object whose `write` feeds a hasher (pickle streams into it)."""

    __slots__ = ("write",)

    def __init__(self, hasher: xxhash.xxh3_128) -> None:
        self.write = hasher.update


def _pandas_types(pandas: Any) -> tuple[type, ...]:
    return (pandas.DataFrame, pandas.Series, pandas.Index)


def _dataclass_fields(value: Any) -> list[str] | None:
    if isinstance(value, type) or not hasattr(type(value), "__dataclass_fields__"):
        return None
    dataclasses = sys.modules["dataclasses"]  # loaded: the class was made with it
    return [field.name for field in dataclasses.fields(value)]


def _plain_state(value: Any) -> dict[str, Any] | None:
    """The `__dict__` of an instance whose whole state it is, else None.

    True for instances of Python classes without `__slots__`, custom
    pickling or a builtin base (a `list` subclass keeps items outside its
    `__dict__`): hashing those by their attributes is canonical (dict order
    does not count) where pickling them would not be.
    """
    cls = type(value)
    if cls.__basicsize__ != _PLAIN_BASICSIZE:
        return None
    for method, default in _DEFAULT_PICKLING:
        if getattr(cls, method, None) is not default:
            return None
    import copyreg  # noqa: PLC0415 - loaded with pickle

    if cls in copyreg.dispatch_table:
        return None
    for klass in cls.__mro__[:-1]:
        if not klass.__flags__ & _HEAP_TYPE or "__slots__" in klass.__dict__:
            return None
    state = getattr(value, "__dict__", None)
    return state if type(state) is dict else None


def _none_bytes(value: None) -> bytes:
    return b"N"


def _bool_bytes(value: bool) -> bytes:
    return b"T" if value else b"F"


def _int_bytes(value: int) -> bytes:
    if -(1 << 63) <= value < (1 << 63):
        return b"i" + _I64(value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"I" + _U64(len(data)) + data


def _float_bytes(value: float) -> bytes:
    return b"f" + _F64(value)


def _complex_bytes(value: complex) -> bytes:
    return b"c" + _F64(value.real) + _F64(value.imag)


def _str_bytes(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return b"s" + _U64(len(data)) + data


_SCALARS: dict[type, Callable[[Any], bytes]] = {
    type(None): _none_bytes,
    bool: _bool_bytes,
    int: _int_bytes,
    float: _float_bytes,
    complex: _complex_bytes,
    str: _str_bytes,
}
"""Exact types whose whole encoding is one short byte string."""


def _encode_bytes(encoder: _Encoder, value: bytes) -> None:
    encoder._update(b"b" + _U64(len(value)))
    encoder._update(value)


def _encode_bytearray(encoder: _Encoder, value: bytearray) -> None:
    encoder._update(b"y" + _U64(len(value)))
    encoder._update(value)


def _encode_memoryview(encoder: _Encoder, value: memoryview) -> None:
    encoder._feed_buffer(b"m", value)


def _encode_tuple(encoder: _Encoder, value: tuple[Any, ...]) -> None:
    encoder._feed_sequence(b"(", value)


def _encode_list(encoder: _Encoder, value: list[Any]) -> None:
    encoder._feed_sequence(b"[", value)


def _encode_dict(encoder: _Encoder, value: dict[Any, Any]) -> None:
    encoder._feed_dict(value)


def _encode_set(encoder: _Encoder, value: set[Any] | frozenset[Any]) -> None:
    encoder._feed_set(value)


def _encode_reference(encoder: _Encoder, value: Any) -> None:
    encoder._feed_reference(value)


def _encode_function(encoder: _Encoder, value: types.FunctionType) -> None:
    encoder._feed_function(value)


def _encode_module(encoder: _Encoder, value: types.ModuleType) -> None:
    encoder._feed_text(b"M", value.__name__)


_ENCODERS: dict[type, Callable[[_Encoder, Any], None]] = {
    bytes: _encode_bytes,
    bytearray: _encode_bytearray,
    memoryview: _encode_memoryview,
    tuple: _encode_tuple,
    list: _encode_list,
    dict: _encode_dict,
    set: _encode_set,
    frozenset: _encode_set,
    type: _encode_reference,
    types.BuiltinFunctionType: _encode_reference,
    types.FunctionType: _encode_function,
    types.ModuleType: _encode_module,
}


# -- code ---------------------------------------------------------------------------
_code_digests: dict[int, tuple[types.CodeType, bytes]] = {}


def code_digest(func: types.FunctionType) -> bytes:
    """xxh3-128 of a function's code: its syntax tree when the source is
    available and matches the bytecode, else its bytecode. Cached per code object."""
    code = func.__code__
    cached = _code_digests.get(id(code))
    if cached is not None and cached[0] is code:
        digest: bytes = cached[1]
        return digest
    digest = _source_digest(func) or _bytecode_digest(code)
    _remember(_code_digests, code, digest)
    return digest


def _source_digest(func: types.FunctionType) -> bytes | None:
    node = _source_definition(func)
    return None if node is None else _tree_digest(node)


def _bytecode_digest(code: types.CodeType) -> bytes:
    hasher = xxhash.xxh3_128(b"bytecode " + sys.implementation.cache_tag.encode())
    _Encoder(hasher, None, set()).feed(_fingerprint(code))
    return hasher.digest()


def _tree_digest(node: ast.AST) -> bytes:
    """xxh3-128 of a syntax tree: node types, fields and constants, no positions.

    Fields that are empty (None, []) are left out, so a field that a newer
    Python adds (such as `type_params`) does not change the hash of code
    that does not use it.
    """
    import ast  # noqa: PLC0415

    hasher = xxhash.xxh3_128(b"ast")
    update = hasher.update
    constants = _Encoder(hasher, None, set())

    def visit(value: Any) -> None:
        if isinstance(value, ast.AST):
            update(b"<" + type(value).__name__.encode())
            for name, field in ast.iter_fields(value):
                if field is None or field == [] or name in ("kind", "type_comment"):
                    continue
                update(b" " + name.encode() + b"=")
                visit(field)
            update(b">")
        elif isinstance(value, list):
            update(b"[" + _U64(len(value)))
            for item in value:
                visit(item)
        else:
            constants.feed(value)

    visit(node)
    return hasher.digest()


def class_digest(cls: type) -> bytes:
    """xxh3-128 of a class: its methods followed as functions of its module."""
    hasher = xxhash.xxh3_128(b"class")
    _Encoder(hasher, cls.__module__, set())._feed_class(cls)
    return hasher.digest()
