"""Execution hashing: the key of one call of a cached function. No I/O.

A call's key has two parts (see DESIGN.md §2). `block_id` groups the runs of
one function for cleanup: the hash of its own code, or the `name` the user
gave. `module_hash` identifies the computation: the hash of *components*,
each a named digest that `explain()` can compare one by one:

- `code`: the function's own code;
- `function:<name>` / `class:<name>`: the code of each function or class of
  the same module that it uses, transitively (helpers of helpers);
- `global:<name>` / `cell:<name>`: the value of each global or closure
  variable it (or a helper) reads;
- `arg:<name>`: each argument, bound to its parameter name with defaults
  applied, so `f(1, b=2)` and `f(a=1, b=2)` are one key;
- `version`: the user's `version=`; `module:<name>`: with `pin_modules`, the
  installed version of each package it uses.

Code is hashed from its syntax tree, so comments and formatting do not
count. The source is only trusted after it has been compiled and compared
with the function's bytecode: a module edited on disk after it was imported
would otherwise make the *old* code's results be stored under the *new*
code's key, a lie the next run would read back. When the source is missing
or does not match, the bytecode itself is hashed (stable for one Python
version).

Values are hashed by a canonical encoding that does not depend on the
process (no `hash()`, no id, no dict or set order): numpy arrays, pandas
objects and bytes-like values through their buffers, without a copy;
dataclasses and plain instances by their fields; anything else through
pickle protocol 5 with its buffers hashed out of band.
"""

from __future__ import annotations

import functools
import struct
import sys
import types

import xxhash

from marimo_store._entry import ExecutionKey
from marimo_store._environment import package_versions
from marimo_store._errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    import pickle
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
    from typing import Any

CODE = "code"
VERSION = "version"
FUNCTION = "function:"
CLASS = "class:"
GLOBAL = "global:"
CELL = "cell:"
ARGUMENT = "arg:"
MODULE = "module:"

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200
_CO_FUTURE_ANNOTATIONS = 0x1000000
_SHAPE_FLAGS = _CO_VARARGS | _CO_VARKEYWORDS | _CO_GENERATOR | _CO_COROUTINE | _CO_ASYNC_GENERATOR
_HEAP_TYPE = 1 << 9
_GLOBAL_LOADS = frozenset(("LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"))
_MAX_UNWRAP = 16
_MAX_CACHED_CODE = 4096

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


def is_async(func: types.FunctionType) -> bool:
    """Whether `func` is an `async def` (a coroutine function)."""
    return bool(func.__code__.co_flags & _CO_COROUTINE)


def is_generator(func: types.FunctionType) -> bool:
    """Whether `func` is a generator or async generator function."""
    return bool(func.__code__.co_flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR))


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
_code_globals: dict[int, tuple[types.CodeType, tuple[str, ...]]] = {}


def _remember(
    cache: dict[int, tuple[types.CodeType, Any]], code: types.CodeType, value: Any
) -> None:
    if len(cache) >= _MAX_CACHED_CODE:  # notebooks redefine functions without end
        cache.clear()
    cache[id(code)] = (code, value)  # the code object is kept: its id stays unique


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
    if func.__name__ == "<lambda>":  # a line may hold several lambdas: use the bytecode
        return None
    import inspect  # noqa: PLC0415 - ~5 ms; needed once per function

    try:
        source = "".join(inspect.getsourcelines(func)[0])
    except (OSError, TypeError):
        return None
    node = _parse_definition(source, func.__name__)
    if node is None or not _compiles_to(node, func.__code__):
        return None
    return _tree_digest(node)


def _parse_definition(source: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The `def` statement in `source` (which may be indented), decorators removed."""
    import ast  # noqa: PLC0415 - only code hashing needs it

    try:
        if source[:1] in (" ", "\t"):  # a method or nested function
            statements = ast.parse("if True:\n" + source).body[0].body  # type: ignore[attr-defined]
        else:
            statements = ast.parse(source).body
    except (SyntaxError, ValueError):
        return None
    for node in statements:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            node.decorator_list = []  # `@persistent_cache(...)` is not the function's code
            return node
    return None


def _compiles_to(node: ast.FunctionDef | ast.AsyncFunctionDef, code: types.CodeType) -> bool:
    """Whether compiling `node` gives exactly `code`: the source is not stale."""
    import ast  # noqa: PLC0415

    module = ast.Module(body=[node], type_ignores=[])
    try:
        compiled = compile(
            module,
            code.co_filename,
            "exec",
            flags=code.co_flags & _CO_FUTURE_ANNOTATIONS,
            dont_inherit=True,
        )
    except (SyntaxError, ValueError, TypeError):  # e.g. `nonlocal` outside its function
        return False
    for const in compiled.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == code.co_name:
            return _fingerprint(const) == _fingerprint(code)
    return False


def _fingerprint(code: types.CodeType) -> tuple[Any, ...]:
    """What a code object does, without line numbers or file names."""
    consts = tuple(
        _fingerprint(const) if isinstance(const, types.CodeType) else (type(const).__name__, const)
        for const in code.co_consts
    )
    return (
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & _SHAPE_FLAGS,
        consts,
    )


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


def _functions_of(attribute: Any) -> list[Any]:
    """The functions behind a class attribute (methods, properties, wrappers)."""
    if isinstance(attribute, staticmethod | classmethod):
        return [attribute.__func__]
    if isinstance(attribute, property):
        return [attribute.fget, attribute.fset, attribute.fdel]
    return [_unwrap(attribute)]


def _unwrap(value: Any) -> Any:
    """The function under decorators that set `__wrapped__` (ours, functools')."""
    for _ in range(_MAX_UNWRAP):
        if isinstance(value, types.FunctionType):
            return value
        inner = getattr(value, "__wrapped__", None)
        if inner is None:
            return value
        value = inner
    return value


def global_names(code: types.CodeType) -> tuple[str, ...]:
    """Names a code object (and the code nested in it) reads as globals."""
    cached = _code_globals.get(id(code))
    if cached is not None and cached[0] is code:
        names: tuple[str, ...] = cached[1]
        return names
    import dis  # noqa: PLC0415 - ~1 ms; once per code object

    found: dict[str, None] = {}
    pending = [code]
    while pending:
        current = pending.pop()
        for instruction in dis.get_instructions(current):
            if instruction.opname in _GLOBAL_LOADS and isinstance(instruction.argval, str):
                found[instruction.argval] = None
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    names = tuple(found)
    _remember(_code_globals, code, names)
    return names


# -- calls --------------------------------------------------------------------------


class _Parameters:
    """Binds a call's arguments to parameter names, as Python would.

    Read from the code object rather than `inspect.signature`: binding runs
    on every call, and this costs a fraction of `Signature.bind`.
    """

    __slots__ = ("_func", "keyword_only", "positional", "positional_only", "varargs", "varkw")

    def __init__(self, func: types.FunctionType) -> None:
        code = func.__code__
        count, keyword_count = code.co_argcount, code.co_kwonlyargcount
        names = code.co_varnames
        self._func = func
        self.positional = names[:count]
        self.positional_only = code.co_posonlyargcount
        self.keyword_only = names[count : count + keyword_count]
        index = count + keyword_count
        self.varargs: str | None = None
        self.varkw: str | None = None
        if code.co_flags & _CO_VARARGS:
            self.varargs = names[index]
            index += 1
        if code.co_flags & _CO_VARKEYWORDS:
            self.varkw = names[index]

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """`(name, value)` in parameter order; `TypeError` as the call would raise."""
        func = self._func
        positional = self.positional
        if len(args) > len(positional) and self.varargs is None:
            raise TypeError(
                f"{func.__qualname__}() takes {len(positional)} positional arguments "
                f"but {len(args)} were given"
            )
        defaults = func.__defaults__ or ()
        first_default = len(positional) - len(defaults)
        remaining = dict(kwargs)
        bound: list[tuple[str, Any]] = []
        for index, name in enumerate(positional):
            by_keyword = index >= self.positional_only and name in remaining
            if index < len(args):
                if by_keyword:
                    raise TypeError(f"{func.__qualname__}() got multiple values for {name!r}")
                bound.append((name, args[index]))
            elif by_keyword:
                bound.append((name, remaining.pop(name)))
            elif index >= first_default:
                bound.append((name, defaults[index - first_default]))
            else:
                raise TypeError(f"{func.__qualname__}() missing required argument {name!r}")
        self._bind_rest(args, remaining, bound)
        return bound

    def _bind_rest(
        self, args: Sequence[Any], remaining: dict[str, Any], bound: list[tuple[str, Any]]
    ) -> None:
        """Keyword-only parameters, then `*args` and `**kwargs`."""
        func = self._func
        keyword_defaults = func.__kwdefaults__ or {}
        for name in self.keyword_only:
            if name in remaining:
                bound.append((name, remaining.pop(name)))
            elif name in keyword_defaults:
                bound.append((name, keyword_defaults[name]))
            else:
                raise TypeError(f"{func.__qualname__}() missing keyword argument {name!r}")
        if self.varargs is not None:
            bound.append((self.varargs, tuple(args[len(self.positional) :])))
        if self.varkw is not None:
            bound.append((self.varkw, remaining))
        elif remaining:
            unexpected = next(iter(remaining))
            raise TypeError(
                f"{func.__qualname__}() got an unexpected keyword argument {unexpected!r}"
            )


class CallKey:
    """The key of one call and the components it was hashed from."""

    __slots__ = ("components", "key")

    def __init__(self, key: ExecutionKey, components: dict[str, str]) -> None:
        self.key = key
        self.components = components


class CallHasher:
    """Computes `CallKey`s for one function.

    What is known from the code alone (parameters, the globals each code
    object reads, code digests) is worked out once; everything that can
    change between calls (argument values, globals, closure cells, helper
    functions a notebook redefined) is read again on every call.
    """

    def __init__(
        self,
        func: types.FunctionType,
        *,
        name: str | None,
        ignore: Collection[str],
        version: Any,
        pin_modules: bool | Collection[str],
    ) -> None:
        self.func = func
        self.name = name
        self.ignore = frozenset(ignore)
        self.pin_modules = pin_modules
        self.home_module: str | None = func.__globals__.get("__name__")
        self._version = None if version is None else value_digest(version)
        self._parameters = _Parameters(func)
        self._block_id: str | None = None
        self._code: types.CodeType | None = None
        self._code_hex = ""
        self._reads_inputs = True

    @property
    def block_id(self) -> str:
        """The function's `name`, else the hash of its own code."""
        if self._block_id is None:
            self._block_id = self.name or code_digest(self.func).hex()
        return self._block_id

    def key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> CallKey:
        """The key of calling the function with these arguments now."""
        func = self.func
        if func.__code__ is not self._code:  # first call, or the code was replaced
            self._code = func.__code__
            self._code_hex = code_digest(func).hex()
            self._reads_inputs = bool(global_names(func.__code__) or func.__closure__)
        components = {CODE: self._code_hex}
        if self._reads_inputs:
            self._dependencies(components)
        if self._version is not None:
            components[VERSION] = self._version
        ignore = self.ignore
        for name, value in self._parameters.bind(args, kwargs):
            if name not in ignore:
                scalar = _SCALARS.get(type(value))  # value_digest's fast path, inlined: hot
                components[ARGUMENT + name] = (
                    xxhash.xxh3_128_hexdigest(scalar(value))
                    if scalar is not None
                    else self._digest(value, "argument", name)
                )
        block_id = self.block_id
        lines = [block_id]
        lines.extend(f"{name}={components[name]}" for name in sorted(components))
        module_hash = xxhash.xxh3_128_hexdigest("\n".join(lines).encode())
        return CallKey(ExecutionKey._trusted(block_id, module_hash), components)

    def _digest(self, value: Any, kind: str, name: str) -> str:
        try:
            return value_digest(value, home_module=self.home_module)
        except (Unhashable, RecursionError) as error:
            kind_name = f"{type(value).__module__}.{type(value).__qualname__}"
            raise InvalidArgumentError(
                f"{self.func.__qualname__}: cannot hash {kind} {name!r} of type {kind_name} "
                f"for the cache key ({error}); pass ignore=({name!r},) to leave it out "
                "of the key"
            ) from error

    def _dependencies(self, components: dict[str, str]) -> None:
        """Helpers' code, globals and closure cells, followed transitively
        through the functions of the same module."""
        root = self.func
        modules: set[str] = set()
        visited = {id(root)}
        pending: list[tuple[types.FunctionType, str]] = [(root, "")]
        while pending:
            func, owner = pending.pop()
            for label, component, value in _inputs_of(func, owner):
                if label in self.ignore:
                    continue
                helper = self._classify(label, component, value, components, modules)
                if helper is not None and id(helper) not in visited:
                    visited.add(id(helper))
                    pending.append((helper, f"{helper.__name__}."))
        for module, version in package_versions(self._pinned(modules)).items():
            components[MODULE + module] = version

    def _classify(
        self,
        label: str,
        component: str,
        value: Any,
        components: dict[str, str],
        modules: set[str],
    ) -> types.FunctionType | None:
        """Record one input; return it if it is a helper whose inputs count too.

        Functions and classes of the same module count by their code;
        modules, and functions and classes of other modules, by name only
        (with `pin_modules`, by their package's version); anything else by
        its value.
        """
        kind, what = _input_kind(value, self.func.__globals__, self.home_module)
        if kind is _HELPER:
            components[FUNCTION + label] = code_digest(what).hex()
            return what  # type: ignore[no-any-return]
        if kind is _CLASS:
            components[CLASS + label] = class_digest(what).hex()
        elif kind is _REFERENCE:
            modules.add(what.partition(".")[0])
        else:
            components[component] = self._digest(what, "global", label)
        return None

    def _pinned(self, used: Iterable[str]) -> Iterable[str]:
        if self.pin_modules is True:
            return used
        if self.pin_modules is False:
            return ()
        return self.pin_modules


def _inputs_of(func: types.FunctionType, owner: str) -> Iterator[tuple[str, str, Any]]:
    """`(label, component, value)` of each global and closure cell `func` reads.

    `owner` prefixes the names of a helper's closure cells, which are its own.
    """
    namespace = func.__globals__
    for name in global_names(func.__code__):
        value = namespace.get(name, _ABSENT)
        if value is not _ABSENT:  # else a builtin, or not defined yet (a NameError to come)
            yield name, GLOBAL + name, value
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=True):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell: not assigned yet
            continue
        yield owner + name, CELL + owner + name, value


_HELPER = "helper"
_CLASS = "class"
_REFERENCE = "reference"
_VALUE = "value"


def _input_kind(value: Any, namespace: dict[str, Any], home_module: str | None) -> tuple[str, Any]:
    """How a global or closure value counts in a key: `(kind, what)`.

    - a function of the same namespace or home module (possibly under
      decorators): a helper, by its code and its own inputs (`what` is the
      function);
    - a class of the home module: by its code (`what` is the class);
    - modules, and functions and classes of other modules: by name only
      (`what` is the dotted name; `pin_modules` keys on the package version);
    - anything else: by its value.
    """
    inner = _unwrap(value)
    if isinstance(inner, types.FunctionType):
        # By module name too, not only by shared globals: a function shipped
        # by value (cloudpickle, to a worker) gets globals of its own, while
        # the helpers it calls may be imported there; both sides must agree.
        if inner.__globals__ is namespace or (
            home_module is not None and inner.__module__ == home_module
        ):
            return _HELPER, inner
        return _REFERENCE, _dotted_name(inner)
    if isinstance(value, type):
        if value.__module__ == home_module:
            return _CLASS, value
        return _REFERENCE, _dotted_name(value)
    if isinstance(value, types.ModuleType):
        return _REFERENCE, value.__name__
    if isinstance(value, types.BuiltinFunctionType):
        return _REFERENCE, _dotted_name(value)
    return _VALUE, value


def _dotted_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or 'builtins'}.{obj.__qualname__}"


_ABSENT: Any = object()
