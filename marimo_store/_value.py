"""`Value`: the base of the library's small immutable value types.

Equality, hashing, `repr`, pickling and `replace` all come from the class's
`__slots__`. These are not dataclasses on purpose: importing `dataclasses`
(and the `inspect` it pulls in) and generating code for each class costs
about 15 ms of every process's start-up, most of what opening a store may
cost in total.
"""

from __future__ import annotations

import operator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, Self


class Value:
    """Immutable record: subclasses list their fields in `__slots__` (in the
    order of their `__init__` parameters) and set them with `_assign`."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _compared: tuple[str, ...] = ()
    """Fields that take part in equality and hashing (default: all)."""
    _key_of: ClassVar[Callable[[Any], Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: list[str] = []
        for klass in reversed(cls.__mro__):
            fields.extend(klass.__dict__.get("__slots__", ()))
        cls._fields = tuple(fields)
        if "_compared" not in cls.__dict__:
            cls._compared = cls._fields
        # attrgetter builds the comparison tuple in C: keys are hashed on every lookup.
        getter = operator.attrgetter(*cls._compared)
        cls._key_of = staticmethod(getter if len(cls._compared) > 1 else lambda v: (getter(v),))

    def _assign(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        key_of = type(self)._key_of
        return bool(key_of(self) == key_of(other))

    def __hash__(self) -> int:
        return hash(type(self)._key_of(self))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), tuple(getattr(self, name) for name in self._fields))

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed."""
        values = {name: getattr(self, name) for name in self._fields}
        values.update(changes)
        return type(self)(**values)
