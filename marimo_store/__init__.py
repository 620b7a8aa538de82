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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store._findings import Finding, VerifyProblem, VerifyReport

_LAZY = frozenset(("Finding", "VerifyProblem", "VerifyReport"))
"""What `verify()` and `doctor()` return: loaded on first use, not by every
process that only puts and gets."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from marimo_store import _findings  # noqa: PLC0415

        return getattr(_findings, name)
    raise AttributeError(f"module 'marimo_store' has no attribute {name!r}")


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
    "Finding",
    "FsPersistentStore",
    "InvalidArgumentError",
    "NotFoundError",
    "ObjectRef",
    "SerializationError",
    "StoreError",
    "StoreFormatError",
    "StoreIOError",
    "StoreWarning",
    "VerifyProblem",
    "VerifyReport",
    "parse_size",
]

__version__ = "0.1.0.dev0"
