"""`Store`: what every store provides, as one runtime-checkable protocol.

`FsPersistentStore`, `MemoryStore`, `TieredStore` and
`LegacyPersistentStore` all implement it, and `persistent_cache`, `App`,
`TieredStore` tiers and named objects accept any object that does:
`isinstance(obj, marimo_store.Store)`. It is a `typing.Protocol`, so this
module loads `typing`; `import marimo_store` does not, and loads it only
when `marimo_store.Store` is first used. The library's own checks use
`STORE_METHODS` and `is_store` (`_named.py`, no `typing`), which
tests/store/test_protocol.py keeps equal to this protocol's members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterable

    from marimo_store._entry import Entry, EntryMetadata, ExecutionKey
    from marimo_store._versions import VersionPolicy


@runtime_checkable
class Store(Protocol):
    """A store of entries: put them, get them back by key, list, delete.

    The methods are those of `FsPersistentStore` (docs/objects.md); a store
    may do less underneath (a `MemoryStore` forgets at exit) but never
    returns a value other than the one put under a key.
    """

    def put(self, entry: Entry) -> EntryMetadata: ...

    def get(
        self,
        key: ExecutionKey,
        exact_match_created_at: bool = False,
        *,
        version_policy: VersionPolicy = "warn",
    ) -> Entry | None: ...

    def history(self, key: ExecutionKey) -> list[EntryMetadata]: ...

    def delete_entries(self, keys: Iterable[ExecutionKey]) -> int: ...

    def entries(self) -> list[EntryMetadata]: ...

    def load_variable(self, key: ExecutionKey, name: str, *, kind: str = ...) -> Any: ...

    def refresh(self) -> None: ...

    def close(self) -> None: ...
