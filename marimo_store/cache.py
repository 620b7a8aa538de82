"""`persistent_cache`: a function's results, stored and found again by call.

A call is looked up by its execution key (see `_call_key`): the function's
code, the code of the same-module helpers it calls, the globals and closure
variables they read, and the arguments. A hit returns the stored result
without running anything; a miss runs the function and stores its result
under that key, as the `"return"` variable of an entry. A function that
raises stores nothing. A result that cannot be serialized is returned and
not stored, with a warning (`on_error="raise"` raises instead).

Concurrent callers of one key may both compute it. With `single_flight`,
callers on one machine take turns through a lease: a lock file under the
store's `locks/flights/`, held with `flock` while the first caller computes.
The kernel drops the lock when its holder dies, even by `kill -9`, so the
next caller takes over at once; and no caller waits longer than the lease,
so a holder that hangs delays the others by at most that long.

The module-level `persistent_cache` (in `marimo_store.app`) stores into the
current `App`; `app.persistent_cache` and `persistent_cache(store=...)` into
a given one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import types
import warnings

from marimo_store import _fs
from marimo_store._call_key import CallHasher, CallKey
from marimo_store._code_identity import is_async, is_generator
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
from marimo_store._hashing import content_digest
from marimo_store._key_components import (
    ARGUMENT,
    CELL,
    CLASS,
    CODE,
    FUNCTION,
    GLOBAL,
    MODULE,
    VERSION,
)
from marimo_store._locks import LocalLock
from marimo_store._named import missing_store_methods
from marimo_store._serialize import MISSING
from marimo_store._value import Value
from marimo_store._value_hash import Unhashable
from marimo_store.config import anchor_directory
from marimo_store.legacy import LegacyPersistentStore
from marimo_store.store import FsPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
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


DEFAULT_LEASE_SECONDS = 600.0
_FIRST_PAUSE = 0.005
_LONGEST_PAUSE = 0.1


class CacheInfo(Value):
    """`hits` and `misses` of this wrapper in this process; as in
    `functools.lru_cache`, `maxsize` (how many calls the store's cleanup keeps
    of this function: its `max_calls_per_function`, None when unbounded by
    count) and `currsize` (how many are stored); `entries` (the same as
    `currsize`) and `bytes` (distinct objects, each counted once) of its
    block in the store; `store`: where that store is (`store_location`)."""

    __slots__ = ("hits", "misses", "maxsize", "currsize", "entries", "bytes", "store")
    hits: int
    misses: int
    maxsize: int | None
    currsize: int
    entries: int
    bytes: int
    store: str

    def __init__(  # noqa: PLR0917 - a Value is rebuilt from positional fields (pickle)
        self,
        hits: int,
        misses: int,
        maxsize: int | None,
        currsize: int,
        entries: int,
        bytes: int,
        store: str,
    ) -> None:
        self._assign(
            hits=hits,
            misses=misses,
            maxsize=maxsize,
            currsize=currsize,
            entries=entries,
            bytes=bytes,
            store=store,
        )


def store_location(store: Store) -> str:
    """A store's directory, or for a store without one, its repr."""
    path = getattr(store, "path", None)
    return path if isinstance(path, str) else repr(store)


class Explanation:
    """Why a call hits or misses, without running it (`wrapper.explain(...)`).

    `key` and `components` are the call's execution key and what it was
    hashed from. On a hit, `nearest` is the stored entry. On a miss,
    `nearest` is the stored entry of the same block (else of the same
    function, whose code then changed) that differs in the fewest
    components, `changed` names those components and `reasons` says what
    they are in words; both are empty when nothing of this function is
    stored. `store` is where the store looked in is (`store_location`).
    """

    __slots__ = (
        "changed",
        "components",
        "function",
        "hit",
        "key",
        "nearest",
        "reasons",
        "store",
    )

    def __init__(
        self,
        function: str,
        call: CallKey,
        *,
        store: str,
        hit: bool,
        nearest: EntryMetadata | None,
        changed: tuple[str, ...],
        reasons: tuple[str, ...],
    ) -> None:
        self.function = function
        self.store = store
        self.key: ExecutionKey = call.key
        self.components: Mapping[str, str] = types.MappingProxyType(call.components)
        self.hit = hit
        self.nearest = nearest
        self.changed = changed
        self.reasons = reasons

    def __repr__(self) -> str:
        return f"<Explanation of {self.function}: {'hit' if self.hit else 'miss'}>"

    def __str__(self) -> str:
        lines = [
            f"{self.function}: {'hit' if self.hit else 'miss'}",
            f"  key: block_id={self.key.block_id} module_hash={self.key.module_hash}",
            f"  store: {self.store}",
        ]
        if self.hit:
            lines.append(f"  stored entry: {self.nearest.key if self.nearest else '?'}")
        elif self.nearest is None:
            lines.append("  nothing of this function is stored yet")
        else:
            lines.append(f"  nearest stored entry: {self.nearest.key}")
            lines.extend(f"  changed: {reason}" for reason in self.reasons)
        return "\n".join(lines)


def _describe(name: str, before: str | None, after: str | None) -> str:
    """A component name in words, e.g. `global 'y'`."""
    if name == CODE:
        text = "the function's code"
    elif name == VERSION:
        text = "version="
    else:
        kinds = (
            (FUNCTION, "the code of function"),
            (CLASS, "the code of class"),
            (GLOBAL, "global"),
            (CELL, "closure variable"),
            (ARGUMENT, "argument"),
            (MODULE, "module"),
        )
        prefix, noun = next((p, n) for p, n in kinds if name.startswith(p))
        text = f"{noun} {name[len(prefix) :]!r}"
        if prefix == MODULE and before is not None and after is not None:
            text += f" version ({before} -> {after})"
    if before is None:
        return f"{text} (not used before)"
    if after is None:
        return f"{text} (no longer used)"
    return text


def _recorded(metadata: EntryMetadata) -> tuple[str | None, Mapping[str, str]]:
    """The function name and key components an entry was stored with."""
    recorded = metadata.user_metadata.get(CALL_METADATA_KEY)
    if not isinstance(recorded, dict):
        return None, {}
    function, components = recorded.get("function"), recorded.get("components")
    return (
        function if isinstance(function, str) else None,
        components if isinstance(components, dict) else {},
    )


def _differences(now: Mapping[str, str], stored: Mapping[str, str]) -> list[str]:
    return sorted(name for name in now.keys() | stored.keys() if now.get(name) != stored.get(name))


class _Flight:
    """One caller's turn at computing a key (see the module docstring).

    `waits()` yields pauses until this caller holds the lease or the lease
    expired; a caller that could not create the lock file (a read-only
    store) goes ahead without one.
    """

    def __init__(self, store: Store, key: ExecutionKey, lease: float) -> None:
        locks = _lock_directory(store)
        name = content_digest(f"{key.block_id}\x00{key.module_hash}".encode()).hex()
        self._lock = (
            None if locks is None else LocalLock(os.path.join(locks, "flights", name + ".lock"))
        )
        self._deadline = time.monotonic() + lease
        self._held = contextlib.ExitStack()
        self.holding = False
        self.completed = False

    def waits(self) -> Iterator[float]:
        pause = _FIRST_PAUSE
        while not self._try_enter():
            if time.monotonic() >= self._deadline:
                return  # the holder is taking longer than the lease: go ahead
            yield pause
            pause = min(pause * 2, _LONGEST_PAUSE)

    def _try_enter(self) -> bool:
        if self._lock is None:
            return True  # a store with no directory: compute without a lease
        try:
            self.holding = self._held.enter_context(self._lock.hold(exclusive=True, timeout=0))
        except OSError:
            return True  # no lock file possible: compute without a lease
        if not self.holding:
            self._held.close()
        return self.holding

    def __enter__(self) -> _Flight:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._lock is not None and self.holding and self.completed:
                # The result is stored: later callers find it without a lease.
                with contextlib.suppress(OSError):
                    _fs.unlink(self._lock.path)
        finally:
            self._held.close()


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
        call_record: dict[str, Any] = {"function": self._function, "components": call.components}
        if self._expire_ms is not None:
            call_record[EXPIRE] = self._expire_ms  # cleanup drops the call once it expired
        metadata = {CALL_METADATA_KEY: call_record}
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
        store = self._resolve(self._anchor)
        call = self._hasher.key(args, kwargs)
        explained = functools.partial(
            Explanation, self._function, call, store=store_location(store)
        )
        entries = store.entries()
        own = [m for m in entries if m.key.block_id == call.key.block_id]
        for metadata in reversed(own):  # newest first
            if metadata.key.module_hash == call.key.module_hash:
                return explained(hit=True, nearest=metadata, changed=(), reasons=())
        candidates = own or [m for m in entries if _recorded(m)[0] == self._function]
        best: tuple[tuple[int, int], EntryMetadata, list[str]] | None = None
        for metadata in candidates:
            recorded = _recorded(metadata)[1]
            if not recorded:
                continue
            changed = _differences(call.components, recorded)
            rank = (len(changed), -metadata.created_at)
            if best is None or rank < best[0]:
                best = (rank, metadata, changed)
        if best is None:
            return explained(hit=False, nearest=None, changed=(), reasons=())
        _, nearest, changed = best
        recorded = _recorded(nearest)[1]
        reasons = tuple(
            _describe(name, recorded.get(name), call.components.get(name)) for name in changed
        )
        return explained(hit=False, nearest=nearest, changed=tuple(changed), reasons=reasons)


_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08


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


def _lease_seconds(single_flight: bool | float) -> float | None:
    if single_flight is False:
        return None
    if single_flight is True:
        return DEFAULT_LEASE_SECONDS
    if isinstance(single_flight, int | float) and single_flight > 0:
        return float(single_flight)
    raise InvalidArgumentError(
        f"single_flight must be True, False or a lease in seconds > 0, got {single_flight!r}"
    )


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


def _lock_directory(store: Store) -> str | None:
    """Where a store keeps the lock files of single-flight leases: its
    `locks/` (for a `TieredStore`, that of its first tier on disk); None
    for a store with no directory (a `MemoryStore`)."""
    if isinstance(store, FsPersistentStore):
        return store.layout.locks
    if isinstance(store, LegacyPersistentStore):
        return os.path.join(store.path, ".locks")
    for tier in getattr(store, "tiers", ()):
        found = _lock_directory(tier)
        if found is not None:
            return found
    return None


def _fixed(store: Store) -> StoreResolver:
    return _Fixed(check_store(store))
