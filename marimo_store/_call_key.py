"""Execution hashing: the key of one call of a cached function. No I/O.

The key is made of the components `_key_components` names: `CallHasher`
binds a call's arguments to its parameters (`_Parameters`, as Python
would), follows the function's dependencies (helpers of the same module,
their globals and closure cells, transitively) and hashes each with
`_value_hash`. `module_hash` is the hash of the key scheme's version, the
block and the sorted components, so a change of scheme is a clean miss.
"""

from __future__ import annotations

import xxhash

from marimo_store._code_identity import (
    _CLASS,
    _CO_VARARGS,
    _CO_VARKEYWORDS,
    _HELPER,
    _REFERENCE,
    _input_kind,
    _inputs_of,
    global_names,
)
from marimo_store._entry import ExecutionKey
from marimo_store._environment import package_versions
from marimo_store._errors import InvalidArgumentError
from marimo_store._key_components import (
    ARGUMENT,
    CLASS,
    CODE,
    FUNCTION,
    KEY_SCHEME,
    MODULE,
    SCHEME,
    VERSION,
)
from marimo_store._value_hash import _SCALARS, Unhashable, class_digest, code_digest, value_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from collections.abc import Collection, Iterable, Mapping, Sequence
    from typing import Any


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
        self._head = ""  # the scheme and block lines every key of this code starts with

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
            self._head = f"{SCHEME}={KEY_SCHEME}\n{self.block_id}"
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
        lines = [self._head]
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
