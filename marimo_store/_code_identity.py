"""Code identity: what a function's code is and what it reads. No hashing, no I/O.

The source is only trusted after it has been compiled and compared with
the function's bytecode: a module edited on disk after it was imported
would otherwise make the *old* code's results be stored under the *new*
code's key, a lie the next run would read back. `_source_definition`
returns the syntax tree only when it compiles to exactly the running code;
`_fingerprint` describes that code without line numbers or file names.

`global_names` and `_inputs_of` list the globals and closure cells a
function reads (and can record exactly what they read, for `_call_inputs`
to tell later whether any of it changed), and `_input_kind` says how each counts in a key (a helper
by its code, a class of the home module by its code, a module or foreign
function by name, anything else by its value). Invariant: this module
knows code, never digests; `_value_hash` hashes what it returns, so both
the value encoder and the call key can follow a function's inputs without
an import loop.
"""

from __future__ import annotations

import io
import os
import sys
import types

from marimo_store._key_components import CELL, GLOBAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from collections.abc import Iterator
    from typing import Any, TypeAlias

    Reads: TypeAlias = tuple[
        dict[str, Any],
        tuple[str, ...],
        tuple[Any, ...],
        tuple[types.CellType, ...],
        tuple[Any, ...],
    ]
    """One function's reads: its globals namespace, the global names its code
    reads and the value of each there (`_ABSENT` if unbound), its closure
    cells and the contents of each (`_ABSENT` if empty)."""

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200
_CO_FUTURE_ANNOTATIONS = 0x1000000
_SHAPE_FLAGS = _CO_VARARGS | _CO_VARKEYWORDS | _CO_GENERATOR | _CO_COROUTINE | _CO_ASYNC_GENERATOR
_GLOBAL_LOADS = frozenset(("LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"))
_MAX_UNWRAP = 16
_MAX_CACHED_CODE = 4096


def is_async(func: types.FunctionType) -> bool:
    """Whether `func` is an `async def` (a coroutine function)."""
    return bool(func.__code__.co_flags & _CO_COROUTINE)


def is_generator(func: types.FunctionType) -> bool:
    """Whether `func` is a generator or async generator function."""
    return bool(func.__code__.co_flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR))


_code_globals: dict[int, tuple[types.CodeType, tuple[str, ...]]] = {}


def _remember(
    cache: dict[int, tuple[types.CodeType, Any]], code: types.CodeType, value: Any
) -> None:
    if len(cache) >= _MAX_CACHED_CODE:  # notebooks redefine functions without end
        cache.clear()
    cache[id(code)] = (code, value)  # the code object is kept: its id stays unique


def _source_definition(func: types.FunctionType) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The syntax tree of `func`'s `def`, if its source is available and
    compiles to exactly the running code (is not stale), else None.

    The tree is the one `inspect.getsourcelines` gives, which the keys of
    existing caches were computed from. `_definition_in_lines` finds it
    without `inspect` (~5 ms to import) and `tokenize` (~4 ms to compile its
    patterns), the cost of a first call in a fresh process; where it is not
    sure, `inspect` decides.
    """
    if func.__name__ == "<lambda>":  # a line may hold several lambdas: use the bytecode
        return None
    node = _definition_in_lines(func)
    if node is None:
        node = _inspected_definition(func)
    if node is None or not _compiles_to(node, func.__code__):
        return None
    return node


def _inspected_definition(
    func: types.FunctionType,
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The `def` in the block `inspect.getsourcelines` finds for `func`."""
    import inspect  # noqa: PLC0415 - ~5 ms; only where the line scan is not sure

    try:
        source = "".join(inspect.getsourcelines(func)[0])
    except (OSError, TypeError):
        return None
    return _parse_definition(source, func.__name__)


def _definition_in_lines(func: types.FunctionType) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """`func`'s `def` from the lines `inspect` reads, found without its
    tokenizer: the same AST as inspect's block, or None (then the inspect
    path decides).

    The lines are those inspect reads (`_source_lines`). The block starts
    at `co_firstlineno` (the first decorator), which must open a `def` or a
    decorator: then inspect starts there too. It runs to the last line the code
    and the code nested in it have positions for, then on over lines that
    are blank, comments or indented deeper than the first, and stops before
    the next line at or left of the first line's indentation (a margin of
    other tabs and spaces: not sure). Invariant: the block is used only if
    it parses to exactly one statement, the `def`. A block that parses, so
    ends outside any bracket, string or backslash continuation, and is
    followed by a line at or left of the `def` (or by nothing) holds the
    whole first statement there and nothing else: the statement inspect's
    tokenizer delimits. Lines the positions miss (dead code after a
    `return`, a string statement) that continue a string or bracket at a
    lesser indentation stop the block inside that statement, which then does
    not parse.
    """
    if hasattr(func, "__wrapped__"):  # inspect would read the wrapped function
        return None
    code = func.__code__
    lines = _source_lines(func)
    if lines is None:
        return None
    start = code.co_firstlineno - 1
    if not 0 <= start < len(lines):
        return None
    first = lines[start]
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    defs = (indent + "def ", indent + "async def ")
    if not first.startswith((*defs, indent + "@")):
        return None
    head = start
    while head < len(lines) and not lines[head].startswith(defs):
        head += 1  # a decorator: the positions may not reach the `def` (a docstring alone)
    end = max(head + 1, _last_line(code))
    while end < len(lines):
        line = lines[end]
        text = line.lstrip(" \t\f")
        margin = line[: len(line) - len(text)]
        if text.strip() and not text.startswith("#"):
            if indent.startswith(margin):
                break  # at or left of the `def`: the next statement
            if not margin.startswith(indent) or "\f" in margin:
                return None  # other tabs and spaces, or a form feed
        end += 1
    return _parse_definition("".join(lines[start:end]), func.__name__, alone=True)


def _source_lines(func: types.FunctionType) -> list[str] | None:
    """The lines `inspect.findsource` reads for `func`: the same file, cache
    check and module globals; None where inspect might look further (a
    loader, a `.pyc`'s `.py`).

    Before anything imports `linecache` its cache is empty, and inspect
    would read the file from disk: `_file_lines` reads it as linecache
    does, without importing `linecache` and with it `tokenize` (~2 ms).
    """
    filename = func.__code__.co_filename
    if filename.endswith(".py") and "linecache" not in sys.modules:
        lines = _file_lines(filename)
        if lines is not None:
            return lines
    if not (filename.endswith(".py") or (filename[:1] == "<" and filename[-1:] == ">")):
        return None  # inspect reads a .pyc's .py and no extension module
    import linecache  # noqa: PLC0415 - ~2 ms with tokenize; loaded by any traceback

    if filename not in linecache.cache and not os.path.exists(filename):
        return None  # inspect may still ask the module's loader
    linecache.checkcache(filename)  # a file edited since it was read
    module = sys.modules.get(func.__module__)
    return linecache.getlines(filename, module.__dict__) if module else linecache.getlines(filename)


def _file_lines(filename: str) -> list[str] | None:
    """The lines of a source file as `linecache` reads it (UTF-8, universal
    newlines, a newline after the last line); None if it may declare another
    encoding (a BOM, or a comment with `coding` in its first two lines) or
    does not read."""
    try:
        with open(filename, "rb") as file:
            data = file.read()
        if data.startswith(b"\xef\xbb\xbf") or any(
            line.lstrip(b" \t\f").startswith(b"#") and b"coding" in line
            for line in data.split(b"\n", 2)[:2]
        ):
            return None
        lines = io.StringIO(data.decode(), newline=None).readlines()
    except (OSError, UnicodeDecodeError):
        return None
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _last_line(code: types.CodeType) -> int:
    """The last line that an instruction of `code`, or of code nested in it, spans."""
    last = 0
    pending = [code]
    while pending:
        current = pending.pop()
        if sys.version_info >= (3, 11):
            ends = [end for _, end, _, _ in current.co_positions() if end is not None]
        else:  # only where each instruction starts
            ends = [line for _, _, line in current.co_lines() if line is not None]
        last = max(last, *ends, 0)
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return last


def _parse_definition(
    source: str, name: str, *, alone: bool = False
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The `def` statement in `source` (which may be indented), decorators
    removed; with `alone`, only if it is the only statement there."""
    import ast  # noqa: PLC0415 - only code hashing needs it

    try:
        if source[:1] in (" ", "\t"):  # a method or nested function
            outer = ast.parse("if True:\n" + source).body
            statements = outer[0].body  # type: ignore[attr-defined]
        else:
            outer = statements = ast.parse(source).body
    except (SyntaxError, ValueError):
        return None
    if alone and (len(outer) != 1 or len(statements) != 1):
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


def _inputs_of(
    func: types.FunctionType, owner: str, reads: list[Reads] | None = None
) -> Iterator[tuple[str, str, Any]]:
    """`(label, component, value)` of each global and closure cell `func` reads.

    `owner` prefixes the names of a helper's closure cells, which are its own.
    `reads`, if given, gets what was read, absent names and empty cells
    included (see `Reads`); the values yielded are those read there, once.
    """
    namespace = func.__globals__
    names = global_names(func.__code__)
    values = tuple([namespace.get(name, _ABSENT) for name in names])
    cells = func.__closure__ or ()
    contents = tuple(map(_cell_contents, cells))
    if reads is not None:
        reads.append((namespace, names, values, cells, contents))
    for name, value in zip(names, values, strict=True):
        if value is not _ABSENT:  # else a builtin, or not defined yet (a NameError to come)
            yield name, GLOBAL + name, value
    for name, value in zip(func.__code__.co_freevars, contents, strict=True):
        if value is not _ABSENT:  # else an empty cell: not assigned yet
            yield owner + name, CELL + owner + name, value


def _cell_contents(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return _ABSENT


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
"""What `_inputs_of` reads for a name that is not bound, or an empty cell."""
