"""`persistent_cache`: a function's results, stored and found again by call.

A call is looked up by its execution key (see `_call_key`): the function's
code, the code of the same-module helpers it calls, the globals and closure
variables they read, and the arguments. A hit returns the stored result
without running anything; a miss runs the function and stores its result
under that key, as the `"return"` variable of an entry. A function that
raises stores nothing. A result that cannot be serialized is returned and
not stored, with a warning (`on_error="raise"` raises instead).

Concurrent callers of one key may both compute it; with `single_flight`
they take turns through a lease (`_flight`). What a wrapper reports about
itself (`cache_info()`, `explain()`) is in `_cache_reports`.

The module-level `persistent_cache` (in `marimo_store.app`) stores into the
current `App`; `app.persistent_cache` and `persistent_cache(store=...)` into
a given one.
"""

from __future__ import annotations

import functools
import sys
import time
import types
import warnings

from marimo_store._cache_reports import (
    CacheInfo,
    Explanation,
    call_record,
    explain_call,
    store_location,
)
from marimo_store._call_key import CallHasher, CallKey
from marimo_store._code_identity import _CO_VARARGS, _CO_VARKEYWORDS, is_async, is_generator
from marimo_store._entry import (
    CALL_METADATA_KEY,
    EXPIRE,
    Entry,
    EntryMetadata,
    ExecutionKey,
    now_ms,
)
from marimo_store._errors import (
    InvalidArgumentError,
    SerializationError,
    StoreIOError,
    StoreWarning,
)
from marimo_store._flight import _Flight, _lease_seconds
from marimo_store._named import missing_store_methods
from marimo_store._serialize import MISSING
from marimo_store._value_hash import Unhashable
from marimo_store.config import anchor_directory

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from typing import Any, Generic, Literal, ParamSpec, TypeAlias, TypeVar, overload

    from marimo_store._entry import ContentFormat

    P = ParamSpec("P")
    R = TypeVar("R")
    OnError: TypeAlias = Literal["warn", "raise"]
    from marimo_store._protocol import Store

    StoreResolver: TypeAlias = Callable[[str], Store]
    """Gives the store of a call, from the directory of the function's file."""

    class _Generic(Generic[P, R]):
        pass

else:
    P = R = None

    class _Generic:
        """Runtime stand-in for `Generic[P, R]`: importing `typing` costs ms at start-up."""

        def __class_getitem__(cls, item: object) -> type:
            return cls


RESULT = "return"
"""The variable under which an entry holds the function's return value."""


class CachedFunction(_Generic[P, R]):
    """A function whose results persist; made by `persistent_cache`.

    Call it like the function. `cache_info()`, `cache_clear()` and
    `explain(*args, **kwargs)` inspect and manage what is stored.
    """

    __wrapped__: Callable[P, R]  # set by functools.update_wrapper

    def __init__(
        self,
        func: Callable[P, R],
        resolve: StoreResolver,
        *,
        name: str | None,
        format: ContentFormat,
        ignore: Collection[str],
        version: Any,
        pin_modules: bool | Collection[str],
        on_error: OnError,
        single_flight: bool | float,
        expire: float | None = None,
    ) -> None:
        if not isinstance(func, types.FunctionType):
            raise InvalidArgumentError(
                f"persistent_cache decorates functions (def or async def), got {func!r}"
            )
        if is_generator(func):
            raise InvalidArgumentError(
                f"cannot cache {func.__qualname__}: a generator's result is an iterator "
                "that cannot be stored; return a list instead"
            )
        _check_ignored(func, ignore)
        functools.update_wrapper(self, func)
        self._options: dict[str, Any] = {
            "name": name,
            "format": format,
            "ignore": ignore,
            "version": version,
            "pin_modules": pin_modules,
            "on_error": on_error,
            "single_flight": single_flight,
            "expire": expire,
        }
        try:
            self._hasher = CallHasher(
                func, name=name, ignore=ignore, version=version, pin_modules=pin_modules
            )
        except Unhashable as error:
            raise InvalidArgumentError(f"version= cannot be hashed: {error}") from error
        self._resolve = resolve
        self._anchor = anchor_directory(func.__globals__)
        self._function = f"{func.__module__}.{func.__qualname__}"
        self._format: ContentFormat = format
        self._on_error: OnError = on_error
        self._lease = _lease_seconds(single_flight)
        self._expire_ms = _expire_ms(expire)
        self._async = is_async(func)
        self._hits = 0
        self._misses = 0

    def __repr__(self) -> str:
        return f"<persistent_cache of {self._function}>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        """Pickled like a function, so it can be mapped over worker processes.

        Defined at the top level of an importable module, by reference: the
        worker imports it, with its store. Otherwise (a script's
        `__main__`, a notebook cell, a nested function) by value: the
        function through cloudpickle, with its store and options. Either
        way a worker computes the same keys as this process, so results
        stored by one are hits for all.
        """
        module_name, qualname = self.__wrapped__.__module__, self.__wrapped__.__qualname__
        found: Any = sys.modules.get(module_name)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if module_name != "__main__" and found is self:
            return qualname
        import cloudpickle  # noqa: PLC0415 - only by-value pickling needs it

        by_value = cloudpickle.dumps(self.__wrapped__)
        return (_unpickle_cached, (by_value, self._resolve, self._options, self._anchor))

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Methods: the instance is the first argument (and part of the key)."""
        if instance is None:
            return self
        return _BoundCachedFunction(self, instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._async:
            return self._call_async(args, kwargs)  # type: ignore[return-value]
        store = self._resolve(self._anchor)
        call = self._hasher.key(args, kwargs)
        value = _lookup(store, call.key, self._expire_ms)
        if value is not MISSING:
            self._hits += 1
            return value  # type: ignore[no-any-return]
        if self._lease is None:
            self._misses += 1
            result = self.__wrapped__(*args, **kwargs)
            self._save(store, call, result)
            return result
        with _Flight(store, call.key, self._lease) as flight:
            for pause in flight.waits():
                time.sleep(pause)
            value = self._stored_meanwhile(store, call)
            if value is not MISSING:
                return value  # type: ignore[no-any-return]
            self._misses += 1
            result = self.__wrapped__(*args, **kwargs)
            flight.completed = self._save(store, call, result)
            return result

    async def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        coroutine_function: Any = self.__wrapped__
        store = self._resolve(self._anchor)
        call = self._hasher.key(args, kwargs)
        value = _lookup(store, call.key, self._expire_ms)
        if value is not MISSING:
            self._hits += 1
            return value
        if self._lease is None:
            self._misses += 1
            result = await coroutine_function(*args, **kwargs)
            self._save(store, call, result)
            return result
        import asyncio  # noqa: PLC0415 - loaded already: we are in a coroutine

        with _Flight(store, call.key, self._lease) as flight:
            for pause in flight.waits():
                await asyncio.sleep(pause)
            value = self._stored_meanwhile(store, call)
            if value is not MISSING:
                return value
            self._misses += 1
            result = await coroutine_function(*args, **kwargs)
            flight.completed = self._save(store, call, result)
            return result

    def _stored_meanwhile(self, store: Store, call: CallKey) -> Any:
        """Once this caller holds the lease (or gave up waiting): the result
        another caller stored meanwhile, if any.

        Always looked up again, also without a wait: the caller that held
        the lease may have stored the result and released it between our
        miss and our taking the lease (its lock file then is a fresh one,
        taken at once). Only a miss here computes: one computation per key
        unless the computing process dies."""
        store.refresh()  # it was put a moment ago: do not wait for refresh_interval
        value = _lookup(store, call.key, self._expire_ms)
        if value is not MISSING:
            self._hits += 1
        return value

    def _save(self, store: Store, call: CallKey, result: Any) -> bool:
        """Store a result; on failure warn (or raise, with `on_error="raise"`)."""
        record = call_record(self._function, call)
        if self._expire_ms is not None:
            record[EXPIRE] = self._expire_ms  # cleanup drops the call once it expired
        metadata = {CALL_METADATA_KEY: record}
        entry = Entry.of(call.key, {RESULT: result}, user_metadata=metadata, format=self._format)
        try:
            store.put(entry)
        except (SerializationError, StoreIOError) as error:
            if self._on_error == "raise":
                raise
            warnings.warn(
                f"marimo_store: the result of {self._function} was not stored: {error}",
                StoreWarning,
                stacklevel=4,
            )
            return False
        return True

    def _own_entries(self, store: Store) -> list[EntryMetadata]:
        block_id = self._hasher.block_id
        return [metadata for metadata in store.entries() if metadata.key.block_id == block_id]

    def cache_info(self) -> CacheInfo:
        """Hits and misses here; entries and bytes of this function's block in the store."""
        store = self._resolve(self._anchor)
        entries = self._own_entries(store)
        objects = {
            object_id: ref.size
            for metadata in entries
            for object_id, ref in metadata.objects().items()
        }
        strategy = getattr(store, "cleanup_strategy", None)
        maxsize = getattr(strategy, "max_calls_per_function", None)
        return CacheInfo(
            self._hits,
            self._misses,
            maxsize if isinstance(maxsize, int) else None,
            len(entries),
            len(entries),
            sum(objects.values()),
            store_location(store),
        )

    def cache_clear(self) -> int:
        """Delete this block's entries (tombstones); reset the counters.

        Returns how many entries were deleted. Entries of earlier versions
        of the function's code are in other blocks and stay until cleanup.
        """
        store = self._resolve(self._anchor)
        deleted = store.delete_entries([metadata.key for metadata in self._own_entries(store)])
        self._hits = self._misses = 0
        return deleted

    def explain(self, *args: P.args, **kwargs: P.kwargs) -> Explanation:
        """Whether this call would hit, and on a miss which key components
        differ from the nearest stored entry. Runs nothing."""
        call = self._hasher.key(args, kwargs)
        return explain_call(self._function, call, self._resolve(self._anchor))


def _check_ignored(func: types.FunctionType, ignore: Collection[str]) -> None:
    """Refuse `ignore=` names that name nothing the key is made of: a typo
    would otherwise silently leave the argument in the key (joblib raises too).

    A name may be a parameter, or a global or closure variable the function
    can read (`helper.name`: one its helper `helper` reads). A function with
    `**kwargs` takes any keyword, so any name may be an argument of it.
    Reads only the code object: no `inspect` at decoration.
    """
    code = func.__code__
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & _CO_VARARGS)
    if code.co_flags & _CO_VARKEYWORDS:
        return
    parameters = code.co_varnames[:count]
    readable = {*parameters, *code.co_freevars, *func.__globals__}
    unknown = [name for name in ignore if name.split(".", 1)[0] not in readable]
    if unknown:
        raise InvalidArgumentError(
            f"ignore={tuple(ignore)!r}: {', '.join(map(repr, unknown))} is neither a parameter "
            f"of {func.__qualname__} (its parameters: {', '.join(parameters) or 'none'}) nor a "
            "global of its module nor one of its closure variables"
        )


def _unpickle_cached(
    by_value: bytes, resolve: StoreResolver, options: dict[str, Any], anchor: str
) -> CachedFunction[Any, Any]:
    import cloudpickle  # noqa: PLC0415 - only by-value pickling needs it

    cached: CachedFunction[Any, Any] = CachedFunction(
        cloudpickle.loads(by_value), resolve, **options
    )
    cached._anchor = anchor  # where the original found its configuration
    return cached


class _BoundCachedFunction:
    """A cached method bound to its instance (what `instance.method` gives)."""

    __slots__ = ("_cached", "_instance")

    def __init__(self, cached: CachedFunction[Any, Any], instance: object) -> None:
        self._cached = cached
        self._instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._cached(self._instance, *args, **kwargs)

    def explain(self, *args: Any, **kwargs: Any) -> Explanation:
        return self._cached.explain(self._instance, *args, **kwargs)

    def cache_info(self) -> CacheInfo:
        return self._cached.cache_info()

    def cache_clear(self) -> int:
        return self._cached.cache_clear()

    def __getattr__(self, name: str) -> Any:  # __name__, __doc__, __wrapped__, ...
        return getattr(self._cached, name)


def _lookup(store: Store, key: ExecutionKey, expire_ms: int | None) -> Any:
    """The stored result of a call, or MISSING: none stored, or (with
    `expire=`) only one older than that, which is computed again."""
    entry = store.get(key)
    if entry is None:
        return MISSING
    created_at = entry.key.created_at
    if expire_ms is not None and created_at is not None and now_ms() - created_at > expire_ms:
        return MISSING
    return entry.variables.get(RESULT, MISSING)


def _expire_ms(expire: float | None) -> int | None:
    """`expire=` in milliseconds; `InvalidArgumentError` unless None or > 0 seconds."""
    if expire is None:
        return None
    if isinstance(expire, bool) or not isinstance(expire, int | float) or not expire > 0:
        raise InvalidArgumentError(
            f"expire must be a number of seconds > 0 or None, got {expire!r}"
        )
    return max(1, int(expire * 1000))


def _names(value: str | Iterable[str], argument: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(name, str) and name for name in names):
        raise InvalidArgumentError(f"{argument} must name parameters or globals, got {value!r}")
    return names


class CacheDecorator:
    """`persistent_cache` and `app.persistent_cache`: bare, or with options.

    - `store`: where results go, any `Store` (default: the App's store);
    - `name`: the block id, instead of the hash of the function's code
      (entries of every version of the code are then one block for cleanup);
    - `format`: `"auto"` (the store's default), `"pickle"` or `"json"`;
    - `ignore`: argument (or global) names left out of the key;
    - `version`: any value, part of the key: change it to invalidate
      entries when something the hashing cannot see changed;
    - `pin_modules`: also key on the installed version of every package the
      function uses (True) or of the packages named;
    - `on_error`: `"warn"` (return the result unstored) or `"raise"` when
      the result cannot be stored;
    - `single_flight`: concurrent callers of one key on this machine wait
      for the first one instead of computing too; True, or the lease in
      seconds (default 600): nobody waits longer than that;
    - `expire`: seconds after which a stored result is computed again (as
      diskcache's `expire`); cleanup drops expired calls.
    """

    def __init__(self, resolve: StoreResolver) -> None:
        self._resolve = resolve

    if TYPE_CHECKING:

        @overload
        def __call__(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...

        @overload
        def __call__(
            self,
            func: None = None,
            /,
            *,
            store: Store | None = None,
            name: str | None = None,
            format: ContentFormat = "auto",
            ignore: str | Iterable[str] = (),
            version: Any = None,
            pin_modules: bool | Iterable[str] = False,
            on_error: OnError = "warn",
            single_flight: bool | float = False,
            expire: float | None = None,
        ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...

    def __call__(
        self,
        func: Any = None,
        /,
        *,
        store: Store | None = None,
        name: str | None = None,
        format: ContentFormat = "auto",
        ignore: str | Iterable[str] = (),
        version: Any = None,
        pin_modules: bool | Iterable[str] = False,
        on_error: OnError = "warn",
        single_flight: bool | float = False,
        expire: float | None = None,
    ) -> Any:
        if name is not None and (not isinstance(name, str) or not name or "\x00" in name):
            raise InvalidArgumentError(f"name must be a non-empty str, got {name!r}")
        if format not in ("auto", "pickle", "json"):
            raise InvalidArgumentError(f"format must be 'auto', 'pickle' or 'json', got {format!r}")
        if on_error not in ("warn", "raise"):
            raise InvalidArgumentError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
        _lease_seconds(single_flight)
        _expire_ms(expire)
        resolve = self._resolve if store is None else _fixed(store)
        options: dict[str, Any] = {
            "name": name,
            "format": format,
            "ignore": _names(ignore, "ignore"),
            "version": version,
            "pin_modules": (
                pin_modules if isinstance(pin_modules, bool) else _names(pin_modules, "pin_modules")
            ),
            "on_error": on_error,
            "single_flight": single_flight,
            "expire": expire,
        }

        def decorate(function: Callable[P, R]) -> CachedFunction[P, R]:
            return CachedFunction(function, resolve, **options)

        return decorate if func is None else decorate(func)


class _Fixed:
    """The resolver of `persistent_cache(store=...)`: always that store.
    A class rather than a lambda so that cached functions pickle."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, anchor: str) -> Store:
        return self.store

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Fixed, (self.store,))


def check_store(store: object) -> Store:
    """`store` if it implements the `Store` protocol (every store of this
    library does), else `InvalidArgumentError` naming what it lacks."""
    missing = missing_store_methods(store)
    if missing:
        raise InvalidArgumentError(
            "store must be a Store (FsPersistentStore, MemoryStore, TieredStore, "
            "LegacyPersistentStore, or anything implementing the marimo_store.Store "
            f"protocol); {store!r} has no {', '.join(missing)}"
        )
    return store  # type: ignore[return-value]


def _fixed(store: Store) -> StoreResolver:
    return _Fixed(check_store(store))
