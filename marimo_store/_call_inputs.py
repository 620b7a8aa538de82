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
from itertools import repeat

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
        "_codes",
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
        self._reads: list[Reads] = []
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
        return (not self._reads or self._same_reads()) and (
            not self._wrappers or self._same_wrappers()
        )

    def _same_reads(self) -> bool:
        for namespace, names, values, cells, contents in self._reads:
            if names and not all(map(_is, map(namespace.get, names, repeat(_ABSENT)), values)):
                return False
            if cells and not all(map(_is, map(_cell_contents, cells), contents)):
                return False
        return True

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
    inputs._reads = [read for read in inputs._reads if read[1] or read[3]]  # names or cells
    return inputs


def _immutable(value: Any, depth: int) -> bool:
    """Whether `value` (of an exact type) can never change in place."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return True
    if (kind is tuple or kind is frozenset) and depth < _MAX_NESTING:
        return all(_immutable(item, depth + 1) for item in value)
    return False
