"""`App`: a store and the decorator bound to it; which App a call uses.

The module-level `persistent_cache` stores into the *current* App: the
innermost `with App(...)` block of the running context (contextvars: an
asyncio task inherits it; a new thread starts outside it), else a default
App for the directory of the decorated function's file, created on first
use and then reused. A default App (and `App()` without a store) resolves
its store from the configuration files (see `config`), else the
`__marimo__` folder beside the notebook or script, never one in a parent
(a `__marimo__` left in a home or temp directory must not capture every
script below it):

- marimo's `__marimo__/cache` and no `__marimo__/persist` beside the file:
  a `LegacyPersistentStore` on marimo's folder (logged once, with how to
  switch), unless the settings verify signatures, which that layout cannot
  carry;
- otherwise an `FsPersistentStore` at `__marimo__/persist` beside the file,
  made on its first put.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading

from marimo_store._errors import InvalidArgumentError
from marimo_store._marimo_config import log_ignored_store
from marimo_store._marimo_keys import LEGACY_DIR, MARIMO_DIR, PERSIST_DIR
from marimo_store.cache import CacheDecorator, check_store
from marimo_store.config import anchor_directory, read_settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType
    from typing import Any

    from marimo_store._protocol import Store
    from marimo_store.legacy import LegacyPersistentStore
    from marimo_store.store import FsPersistentStore


_current: contextvars.ContextVar[tuple[App, ...]] = contextvars.ContextVar(
    "marimo_store_current_apps", default=()
)
_default_apps: dict[str, App] = {}
_default_apps_lock = threading.Lock()
_migration_suggested: set[str] = set()


class App:
    """A store and its settings, and the `persistent_cache` bound to them.

    `App(store)` uses the given store; `App()` resolves one as the module
    docstring says, with `config` (keys of `.marimo.toml`'s
    `[fs_persister.defaults]` and `[fs_persister.default_cleanup_strategy]`
    tables, in one mapping) over the configuration files. As a context
    manager it is the current App inside the block and closes its store on
    leaving it. The store's own exit hook runs its cleanup at interpreter
    exit (`cleanup_on_exit`).
    """

    def __init__(
        self, store: Store | None = None, *, config: Mapping[str, Any] | None = None
    ) -> None:
        if store is None:
            store = _resolve_default(anchor_directory(sys._getframe(1).f_globals), config)
        elif config is not None:
            raise InvalidArgumentError(
                "App(store=..., config=...): config only applies to a store the App "
                "resolves itself; configure the store you pass instead"
            )
        else:
            check_store(store)
        self.store: Store = store
        self._tokens: list[contextvars.Token[tuple[App, ...]]] = []

    @property
    def persistent_cache(self) -> CacheDecorator:
        """`persistent_cache`, storing into this App's store."""
        return CacheDecorator(self._store_of)

    def _store_of(self, anchor: str) -> Store:
        return self.store

    def close(self) -> None:
        """Close the store (seal its log segment); it stays usable."""
        self.store.close()

    def __enter__(self) -> App:
        self._tokens.append(_current.set((*_current.get(), self)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())
        self.close()

    def __repr__(self) -> str:
        return f"App({self.store!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # a cached function of this App, shipped to a worker
        return (App, (self.store,))


def current_app() -> App | None:
    """The App of the innermost `with App(...)` block, if any."""
    apps = _current.get()
    return apps[-1] if apps else None


def default_app(directory: str) -> App:
    """The default App of code in `directory` (one per directory and process)."""
    app = _default_apps.get(directory)
    if app is None:
        with _default_apps_lock:
            app = _default_apps.get(directory)
            if app is None:
                app = _default_apps[directory] = App(_resolve_default(directory))
    return app


def _current_store(anchor: str) -> Store:
    apps = _current.get()
    if apps:
        return apps[-1].store
    app = _default_apps.get(anchor)
    return (app or default_app(anchor)).store


def resolve_store(
    directory: str, config: Mapping[str, Any] | None = None
) -> FsPersistentStore | LegacyPersistentStore:
    """The store for a notebook or script in `directory` (see the module docstring)."""
    settings = read_settings(directory, config)
    if settings.dir_path is not None:
        return settings.open_store(settings.dir_path)
    marimo_dir = os.path.join(directory, MARIMO_DIR)
    legacy = os.path.join(marimo_dir, LEGACY_DIR)
    persist = os.path.join(marimo_dir, PERSIST_DIR)
    verifies = settings.store_options.get("verify_signatures", "off") != "off"
    if os.path.isdir(legacy) and not os.path.exists(persist) and not verifies:
        from marimo_store.legacy import LegacyPersistentStore  # noqa: PLC0415 - imports pickle

        _suggest_migration(legacy, persist)
        return LegacyPersistentStore(legacy)
    return settings.open_store(persist)


def _resolve_default(directory: str, config: Mapping[str, Any] | None = None) -> Store:
    """`resolve_store` for an App, which is marimo_store's first use in a
    project: it also says (once) when marimo would ignore a configured
    `fs_persistent` store there (`_marimo_config`)."""
    store = resolve_store(directory, config)
    log_ignored_store(os.getcwd())  # marimo searches from its working directory
    return store


def _suggest_migration(legacy: str, persist: str) -> None:
    if legacy in _migration_suggested:
        return
    _migration_suggested.add(legacy)
    import logging  # noqa: PLC0415 - ~5 ms; only this message needs it

    logging.getLogger("marimo_store").warning(
        "marimo_store: caching into marimo's legacy folder %s (one pickle file per entry, "
        "no cleanup); run marimo_store.migrate_marimo_cache(%r, %r) to move it into an "
        "FsPersistentStore, or create %s to start one",
        legacy,
        legacy,
        persist,
        persist,
    )


persistent_cache = CacheDecorator(_current_store)
"""Cache a function's results in the current App's store (see `CacheDecorator`).

    @persistent_cache
    def simulate(walkers, steps): ...

    @persistent_cache(ignore=("progress",), single_flight=True)
    def train(data, epochs, progress=None): ...
"""
