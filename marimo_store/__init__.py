"""marimo_store: a content-addressed, persistent execution cache.

The public API is exactly what this module exports; every other module is
private, except `marimo_store.marimo` (the marimo plug-in). Importing it
stays light (no numpy, pandas or marimo): a new process pays for every
import. The caching layer (`persistent_cache`, `App`,
`LegacyPersistentStore`, ...), the other stores (`MemoryStore`,
`TieredStore`) and the marimo integration (`MarimoStore`, whose module
imports marimo when it is installed; `migrate_marimo_cache`) load on first
use, so a process that only opens a store (a worker, the marimo plug-in)
does not pay for them.
"""

from marimo_store._entry import (
    Entry,
    EntryMetadata,
    EntrySignature,
    Environment,
    ExecutionKey,
    ObjectRef,
)
from marimo_store._errors import (
    ConfigError,
    ExecutionKeyClash,
    InvalidArgumentError,
    InvalidKeyError,
    NotFoundError,
    NotSupportedError,
    SerializationError,
    StoreError,
    StoreFormatError,
    StoreIOError,
    StoreWarning,
    UntrustedEntryError,
    VersionMismatchError,
)
from marimo_store._named import ObjectInfo
from marimo_store._signing import generate_signing_key
from marimo_store._trust import SignatureStatus
from marimo_store._versions import VersionDifference
from marimo_store.store import FsPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store._cache_reports import CacheInfo, Explanation
    from marimo_store._cleanup import (
        CleanupReport,
        CleanupStrategy,
        DefaultCleanupStrategy,
        DroppedEntry,
        parse_size,
    )
    from marimo_store._findings import Finding, VerifyProblem, VerifyReport
    from marimo_store._handles import ObjectHandle
    from marimo_store._migrate import MigrationReport, migrate_marimo_cache
    from marimo_store._protocol import Store
    from marimo_store.app import App, persistent_cache
    from marimo_store.cache import CachedFunction
    from marimo_store.legacy import LegacyPersistentStore
    from marimo_store.marimo import MarimoStore
    from marimo_store.memory import MemoryStore
    from marimo_store.tiered import TieredStore

_LAZY = {
    "App": "marimo_store.app",
    "persistent_cache": "marimo_store.app",
    "CachedFunction": "marimo_store.cache",
    "CacheInfo": "marimo_store._cache_reports",
    "Explanation": "marimo_store._cache_reports",
    "CleanupReport": "marimo_store._cleanup",
    "CleanupStrategy": "marimo_store._cleanup",
    "DefaultCleanupStrategy": "marimo_store._cleanup",
    "DroppedEntry": "marimo_store._cleanup",
    "parse_size": "marimo_store._cleanup",
    "Finding": "marimo_store._findings",
    "LegacyPersistentStore": "marimo_store.legacy",
    "MarimoStore": "marimo_store.marimo",
    "MemoryStore": "marimo_store.memory",
    "MigrationReport": "marimo_store._migrate",
    "ObjectHandle": "marimo_store._handles",
    "Store": "marimo_store._protocol",
    "TieredStore": "marimo_store.tiered",
    "migrate_marimo_cache": "marimo_store._migrate",
    "VerifyProblem": "marimo_store._findings",
    "VerifyReport": "marimo_store._findings",
}
"""Exports imported on first access (PEP 562)."""


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'marimo_store' has no attribute {name!r}")
    import importlib  # noqa: PLC0415 - loaded by the interpreter already

    value: object = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "App",
    "CacheInfo",
    "CachedFunction",
    "CleanupReport",
    "CleanupStrategy",
    "ConfigError",
    "DefaultCleanupStrategy",
    "DroppedEntry",
    "Entry",
    "EntryMetadata",
    "EntrySignature",
    "Environment",
    "ExecutionKey",
    "ExecutionKeyClash",
    "Explanation",
    "Finding",
    "FsPersistentStore",
    "InvalidArgumentError",
    "InvalidKeyError",
    "LegacyPersistentStore",
    "MarimoStore",
    "MemoryStore",
    "MigrationReport",
    "NotFoundError",
    "NotSupportedError",
    "ObjectHandle",
    "ObjectInfo",
    "ObjectRef",
    "SerializationError",
    "SignatureStatus",
    "Store",
    "StoreError",
    "StoreFormatError",
    "StoreIOError",
    "StoreWarning",
    "TieredStore",
    "UntrustedEntryError",
    "VerifyProblem",
    "VerifyReport",
    "VersionDifference",
    "VersionMismatchError",
    "generate_signing_key",
    "migrate_marimo_cache",
    "parse_size",
    "persistent_cache",
]

__version__ = "0.1.0.dev0"
