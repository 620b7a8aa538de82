"""marimo_store: a content-addressed, persistent execution cache.

The public API is exactly what this module exports; every other module is
private. Importing it stays light (no numpy, pandas or marimo): a new
process pays for every import.
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
    NotFoundError,
    SerializationError,
    StoreError,
    StoreFormatError,
    StoreIOError,
    StoreWarning,
)
from marimo_store.store import FsPersistentStore

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
    "NotFoundError",
    "ObjectRef",
    "SerializationError",
    "StoreError",
    "StoreFormatError",
    "StoreIOError",
    "StoreWarning",
    "parse_size",
]

__version__ = "0.1.0.dev0"
