"""marimo_store: a content-addressed, persistent execution cache.

The public API is exactly what this module exports; every other module is
private, except `marimo_store.marimo` (the marimo plug-in). Importing it
stays light (no numpy, pandas or marimo): a new process pays for every
import. So `MarimoStore`, whose module imports marimo when it is installed,
is exported lazily: `marimo_store.MarimoStore` imports it on first access.
"""

from marimo_store._cleanup import (
    CleanupReport,
    CleanupStrategy,
    DefaultCleanupStrategy,
    DroppedEntry,
    parse_size,
)
from marimo_store._entry import (
    Entry,
    EntryMetadata,
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
    SerializationError,
    StoreError,
    StoreFormatError,
    StoreIOError,
    StoreWarning,
)
from marimo_store._migrate import MigrationReport, migrate_marimo_cache
from marimo_store.store import FsPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store.marimo import MarimoStore

__all__ = [
    "CleanupReport",
    "CleanupStrategy",
    "ConfigError",
    "DefaultCleanupStrategy",
    "DroppedEntry",
    "Entry",
    "EntryMetadata",
    "Environment",
    "ExecutionKey",
    "ExecutionKeyClash",
    "FsPersistentStore",
    "InvalidArgumentError",
    "InvalidKeyError",
    "MarimoStore",
    "MigrationReport",
    "NotFoundError",
    "ObjectRef",
    "SerializationError",
    "StoreError",
    "StoreFormatError",
    "StoreIOError",
    "StoreWarning",
    "migrate_marimo_cache",
    "parse_size",
]

__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> object:
    """Exports that would make `import marimo_store` heavy, imported on first use."""
    if name == "MarimoStore":
        from marimo_store.marimo import MarimoStore  # noqa: PLC0415

        return MarimoStore
    raise AttributeError(f"module 'marimo_store' has no attribute {name!r}")
