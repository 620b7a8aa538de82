"""Execution hashing: the key of one call of a cached function. No I/O.

The key is made of the components `_key_components` names: `CallHasher`
binds a call's arguments to its parameters (`_Parameters`, as Python
would), follows the function's dependencies (helpers of the same module,
their globals and closure cells, transitively: `_call_inputs`, which walks
them once and says when anything it read changed) and hashes each with
`_value_hash`. `module_hash` is the hash of the key scheme's version, the
block and the sorted components, so a change of scheme is a clean miss.

Invariant: a key is always the one a fresh walk and a fresh hash of every
argument would give. The last call's key is reused only for the very same
walk, arguments of the same types and equal values, and only when those
types have one digest per value and nothing is hashed on every call.
"""

from __future__ import annotations

import xxhash

from marimo_store._call_inputs import Inputs, walk
from marimo_store._code_identity import _CO_VARARGS, _CO_VARKEYWORDS, global_names
from marimo_store._entry import ExecutionKey
from marimo_store._environment import package_versions
from marimo_store._errors import InvalidArgumentError
from marimo_store._key_components import ARGUMENT, KEY_SCHEME, MODULE, SCHEME, VERSION
from marimo_store._value_hash import _SCALARS, Unhashable, class_digest, code_digest, value_digest

_SCALAR_TYPES = frozenset((type(None), bool, int, float, str, bytes))
"""Immutable argument types whose equal values (of one type) have one digest."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
    from typing import Any


class _Parameters:
    """Binds a call's arguments to parameter names, as Python would.

    Read from the code object rather than `inspect.signature`: binding runs
    on every call, and this costs a fraction of `Signature.bind`.
    """

    __slots__ = (
        "_func",
        "_plain",
        "keyword_only",
        "names",
        "positional",
        "positional_only",
        "varargs",
        "varkw",
    )

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
        self.names: tuple[str, ...] = (
            *self.positional,
            *self.keyword_only,
            *(name for name in (self.varargs, self.varkw) if name is not None),
        )
        """Every parameter, in the order of what `bind` returns."""
        self._plain = not self.keyword_only and self.varargs is None and self.varkw is None

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """`(name, value)` in parameter order; `TypeError` as the call would raise."""
        positional = self.positional
        if not kwargs and self._plain and len(args) == len(positional):
            return list(zip(positional, args, strict=True))  # the common call: all positional
        func = self._func
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
    object reads, code digests) is worked out once; the walk through the
    function's dependencies (`_call_inputs`) is reused while nothing it
    read has changed; argument values, and the inputs that can change in
    place (mutable globals and cells, classes, package versions), are
    hashed again on every call.
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
        self._arguments = sorted(
            (ARGUMENT + name, index, name)
            for index, name in enumerate(self._parameters.names)
            if name not in self.ignore
        )
        self._block_id: str | None = None
        self._inputs: Inputs | None = None
        self._fixed_text: str | None = None  # `inputs.fixed` as key lines, when that is all
        self._pins = False
        self._head = ""  # the scheme and block lines every key of this code starts with
        self._defaults: tuple[Any, ...] | None = None
        self._keyword_defaults: dict[str, Any] | None = None
        self._remembers = False  # whether `_last` may answer: nothing is hashed on every call
        # The last call with positional scalar arguments: its arguments, their
        # types, its key and the walk it was computed with.
        self._last: tuple[tuple[Any, ...], tuple[type, ...], CallKey, Inputs] | None = None

    @property
    def block_id(self) -> str:
        """The function's `name`, else the hash of its own code."""
        if self._block_id is None:
            self._block_id = self.name or code_digest(self.func).hex()
        return self._block_id

    def key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> CallKey:
        """The key of calling the function with these arguments now."""
        func = self.func
        inputs = self._inputs
        if (
            inputs is None
            or not inputs.unchanged()
            or func.__defaults__ is not self._defaults
            or func.__kwdefaults__ is not self._keyword_defaults
        ):
            inputs = self._walk()
        last = self._last
        if (
            last is not None
            and last[3] is inputs  # not a key another thread computed before a new walk
            and not kwargs
            and last[1] == tuple(map(type, args))  # first: only scalars are then compared
            and last[0] == args  # of one type each: 1, 1.0 and True are == but hash apart
        ):
            return last[2]
        call = self._compute(inputs, args, kwargs)
        if self._remembers and not kwargs:
            types = tuple(map(type, args))
            # Equal values of one of these types have one digest; but 0.0 == -0.0.
            if _SCALAR_TYPES.issuperset(types) and not (float in types and 0.0 in args):
                self._last = (tuple(args), types, call, inputs)
        return call

    def _compute(self, inputs: Inputs, args: Sequence[Any], kwargs: Mapping[str, Any]) -> CallKey:
        components = dict(inputs.fixed)
        bound = self._parameters.bind(args, kwargs)
        lines = [self._head]
        for component, index, name in self._arguments:
            value = bound[index][1]
            scalar = _SCALARS.get(type(value))  # value_digest's fast path, inlined: hot
            digest = (
                xxhash.xxh3_128_hexdigest(scalar(value))
                if scalar is not None
                else self._digest(value, "argument", name)
            )
            components[component] = digest
            lines.append(f"{component}={digest}")  # "arg:" sorts before every other component
        if self._fixed_text is not None:
            lines.append(self._fixed_text)
        else:
            self._rehash(inputs, components)
            lines.extend(_lines(components, lambda name: not name.startswith(ARGUMENT)))
        module_hash = xxhash.xxh3_128_hexdigest("\n".join(lines).encode())
        return CallKey(ExecutionKey._trusted(self.block_id, module_hash), components)

    def _walk(self) -> Inputs:
        """Walk the dependencies again; remember the result for the next calls."""
        func = self.func
        defaults, keyword_defaults = func.__defaults__, func.__kwdefaults__
        inputs = walk(func, home_module=self.home_module, ignore=self.ignore, digest=self._digest)
        if self._version is not None:
            inputs.fixed[VERSION] = self._version
        # Package versions only for a function that reads any global or cell
        # (a builtin counts): the components keys have always had.
        self._pins = bool(self.pin_modules) and bool(
            global_names(func.__code__) or func.__closure__
        )
        rehashed = inputs.values or inputs.classes or self._pins
        self._fixed_text = None if rehashed else "\n".join(_lines(inputs.fixed, None))
        self._head = f"{SCHEME}={KEY_SCHEME}\n{self.block_id}"
        self._defaults, self._keyword_defaults = defaults, keyword_defaults
        self._remembers = bool(
            not rehashed
            and not keyword_defaults
            and _SCALAR_TYPES.issuperset(map(type, defaults or ()))
        )
        self._last = None
        self._inputs = inputs
        return inputs

    def _rehash(self, inputs: Inputs, components: dict[str, str]) -> None:
        """The components of inputs that can change in place, hashed now."""
        for component, label, value in inputs.values:
            components[component] = self._digest(value, "global", label)
        for component, cls in inputs.classes:
            components[component] = class_digest(cls).hex()
        if self._pins:
            for module, version in package_versions(self._pinned(inputs.modules)).items():
                components[MODULE + module] = version

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

    def _pinned(self, used: Iterable[str]) -> Iterable[str]:
        if self.pin_modules is True:
            return used
        if self.pin_modules is False:
            return ()
        return self.pin_modules


def _lines(components: Mapping[str, str], keep: Callable[[str], bool] | None) -> Iterator[str]:
    """`name=digest` of the components `keep` accepts (all if None), sorted by name."""
    return (f"{name}={components[name]}" for name in sorted(filter(keep, components)))
