"""What a cached function's key reads besides its arguments, walked once and reused.

A call's key counts the function's code, the code of the helpers of its
module that it calls (transitively), the globals and closure cells they
read, the classes of its module they use, and (with `pin_modules`) the
versions of the packages they use (see `_key_components`). Walking that
graph on every call (listing each code's globals, classifying each value,
looking up each helper's code digest) was half the cost of a tiny hit.
`walk` does it once and returns `Inputs`: the components that stay the
same while what the walk read stays the same, the inputs to hash again on
every call, and a record of everything read.

Invariant: reused `Inputs` never give a stale key. `unchanged()` holds only
while every read is the very same object as when the walk read it: each
global name looked up, in its function's namespace (names that were
unbound too: a builtin, or a global not defined yet), each closure cell's
contents, each function's `__code__`, and the function each decorated
helper unwraps to. Anything whose value can change without a new binding
is hashed again on every call: every global or cell value but immutable
ones (`None`, bool, int, float, complex, str, bytes, and tuples and
frozensets of them, exact types only), every class (its methods can be
replaced) and every package version. The record holds references to what
was read until the next walk: an identity is only compared while the
object it names cannot be freed and its address reused.
"""

from __future__ import annotations

import operator
import types

from marimo_store._code_identity import (
    _ABSENT,
    _CLASS,
    _HELPER,
    _REFERENCE,
    _cell_contents,
    _input_kind,
    _inputs_of,
    _unwrap,
)
from marimo_store._key_components import CLASS, CODE, FUNCTION
from marimo_store._value_hash import code_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from typing import Any

    from marimo_store._code_identity import Reads

_IMMUTABLE = frozenset((type(None), bool, int, float, complex, str, bytes))
_MAX_NESTING = 8
_is = operator.is_


class Inputs:
    """The result of one walk (see the module docstring).

    - `fixed`: components (name -> digest) that stay while `unchanged()`;
    - `values`: `(component, label, value)` of globals and cells to hash
      on every call;
    - `classes`: `(component, class)` of the module's classes used;
    - `modules`: the top-level modules used by name (for `pin_modules`).
    """

    __slots__ = (
        "_cells",
        "_codes",
        "_globals",
        "_reads",
        "_wrappers",
        "classes",
        "fixed",
        "modules",
        "values",
    )

    def __init__(self) -> None:
        self.fixed: dict[str, str] = {}
        self.values: list[tuple[str, str, Any]] = []
        self.classes: list[tuple[str, type]] = []
        self.modules: set[str] = set()
        self._reads: list[Reads] = []  # filled by the walk, then made into the two below
        self._globals: list[
            tuple[dict[str, Any], Callable[[Any], Any], tuple[Any, ...], frozenset[str]]
        ]
        self._globals = []
        self._cells: tuple[tuple[types.CellType, ...], tuple[Any, ...]] = ((), ())
        self._codes: list[tuple[types.FunctionType, types.CodeType]] = []
        self._wrappers: list[tuple[Any, Any]] = []

    def _code_of(self, func: types.FunctionType, component: str) -> None:
        """Count `func` by its code digest; its `__code__` is recorded first,
        so a code replaced meanwhile fails `unchanged()`, never goes unseen."""
        self._codes.append((func, func.__code__))
        self.fixed[component] = code_digest(func).hex()

    def unchanged(self) -> bool:
        """Whether everything the walk read is still the same object."""
        for func, code in self._codes:
            if func.__code__ is not code:
                return False
        return (
            (not self._globals or self._same_globals())
            and (
                not self._cells[0]
                or all(map(_is, map(_cell_contents, self._cells[0]), self._cells[1]))
            )
            and (not self._wrappers or self._same_wrappers())
        )

    def _same_globals(self) -> bool:
        for namespace, get, values, absent in self._globals:
            try:
                if not all(map(_is, get(namespace), values)):
                    return False
            except KeyError:  # a name that was bound is not any more
                return False
            if absent and not namespace.keys().isdisjoint(absent):
                return False
        return True

    def _compile_reads(self) -> None:
        """`_reads` as one check per namespace: an `itemgetter` of the names
        that were bound, with their values, and the set of those that were
        not (builtins, or globals not defined yet), which must stay unbound."""
        by_namespace: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        cells: list[types.CellType] = []
        contents: list[Any] = []
        for namespace, read_names, read_values, read_cells, read_contents in self._reads:
            read = by_namespace.setdefault(id(namespace), (namespace, {}))[1]
            read.update(zip(read_names, read_values, strict=True))
            cells.extend(read_cells)
            contents.extend(read_contents)
        for namespace, read in by_namespace.values():
            names = tuple(name for name, value in read.items() if value is not _ABSENT)
            absent = frozenset(read.keys() - set(names))
            if names:
                values = tuple(read[name] for name in names)
                if len(names) == 1:  # an itemgetter of one name returns the value, not a tuple
                    names, values = names * 2, values * 2
                self._globals.append((namespace, operator.itemgetter(*names), values, absent))
            elif absent:
                self._globals.append((namespace, _no_names, (), absent))
        self._cells = (tuple(cells), tuple(contents))
        self._reads = []

    def _same_wrappers(self) -> bool:
        return all(_unwrap(wrapper) is inner for wrapper, inner in self._wrappers)


def walk(
    root: types.FunctionType,
    *,
    home_module: str | None,
    ignore: Collection[str],
    digest: Callable[[Any, str, str], str],
) -> Inputs:
    """Follow `root`'s inputs through the helpers of its module, transitively.

    Functions and classes of the same module count by their code; modules,
    and functions and classes of other modules, by name only (with
    `pin_modules`, by their package's version); anything else by its value
    (`digest(value, "global", label)`, which raises for a value that cannot
    be hashed).
    """
    inputs = Inputs()
    namespace = root.__globals__
    visited = {id(root)}
    pending: list[tuple[types.FunctionType, str]] = [(root, "")]
    inputs._code_of(root, CODE)
    while pending:
        func, owner = pending.pop()
        for label, component, value in _inputs_of(func, owner, inputs._reads):
            if label in ignore:
                continue
            if not isinstance(value, types.FunctionType):
                inner = _unwrap(value)
                if inner is not value:
                    inputs._wrappers.append((value, inner))
            kind, what = _input_kind(value, namespace, home_module)
            if kind is _HELPER:
                inputs._code_of(what, FUNCTION + label)
                if id(what) not in visited:
                    visited.add(id(what))
                    pending.append((what, f"{what.__name__}."))
            elif kind is _CLASS:
                inputs.classes.append((CLASS + label, what))
            elif kind is _REFERENCE:
                inputs.modules.add(what.partition(".")[0])
            elif _immutable(what, 0):
                inputs.fixed[component] = digest(what, "global", label)
            else:
                inputs.values.append((component, label, what))
    inputs._compile_reads()
    return inputs


def _no_names(namespace: dict[str, Any]) -> tuple[()]:
    return ()


def _immutable(value: Any, depth: int) -> bool:
    """Whether `value` (of an exact type) can never change in place."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return True
    if (kind is tuple or kind is frozenset) and depth < _MAX_NESTING:
        return all(_immutable(item, depth + 1) for item in value)
    return False
