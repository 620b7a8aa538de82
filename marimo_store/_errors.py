"""Every exception the library raises on purpose, under one base class.

Callers catch `StoreError` to handle anything the store refuses; the
subclasses also derive from the matching built-in (`ValueError`, `KeyError`)
so code written against plain Python conventions keeps working.
"""

from __future__ import annotations

import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store._entry import ExecutionKey
    from marimo_store._versions import VersionDifference


class StoreError(Exception):
    """Base class of every error marimo_store raises deliberately."""


class StoreWarning(UserWarning):
    """A problem the store recovered from (a damaged file cost a miss).

    Issued through `warnings.warn`, so applications can filter, log or turn
    it into an error; the store itself never fails because of one.
    """


def warn_unreadable(path: str, error: OSError) -> None:
    """Warn that a file of the store cannot be read right now (EACCES, EIO,
    a directory where a file belongs): what needed it is a miss, and nothing
    is dropped or deleted because of it."""
    warnings.warn(
        f"marimo_store: cannot read {path} ({error.strerror or error}); treated as a miss",
        StoreWarning,
        stacklevel=4,
    )


class UnreadableFiles:
    """Warns once about each file that cannot be read, until it reads again,
    so that a reader polling an unreadable directory does not warn on every
    miss."""

    __slots__ = ("_warned",)

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def failed(self, path: str, error: OSError) -> None:
        """Reading `path` failed with `error`: warn, unless already warned."""
        if path not in self._warned:
            self._warned.add(path)
            warn_unreadable(path, error)

    def read(self, path: str) -> None:
        """Reading `path` worked: a later failure warns again."""
        self._warned.discard(path)


class InvalidArgumentError(StoreError, ValueError):
    """An argument has the wrong type or value; the message names it."""


class InvalidKeyError(InvalidArgumentError):
    """A marimo cache key is not a safe relative path; the message says why."""


class NotFoundError(StoreError, KeyError):
    """What was asked for is not in the store (or could not be loaded)."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class ExecutionKeyClash(StoreError):  # noqa: N818 - the name is the design's vocabulary
    """The same execution key was put twice with different contents."""


class SerializationError(StoreError, ValueError):
    """A value could not be serialized in the requested format.

    The message names the variable and its type so the caller knows which
    value to change or which format to choose instead.
    """


class StoreFormatError(StoreError):
    """The directory holds a store of another or a newer on-disk format."""


class ConfigError(StoreError, ValueError):
    """A configuration value is unknown or out of range."""


class StoreIOError(StoreError, OSError):
    """A file operation of a write failed; the OS error is the `__cause__`."""


def os_error(error: OSError) -> OSError:
    """The operating system's own error behind `error`: a storage medium's
    error (`marimo_store._media.MediumError`) carries it as its `__cause__`,
    and a `StoreIOError` names that one as its cause in turn."""
    cause = error.__cause__
    if isinstance(error, StoreIOError) and isinstance(cause, OSError):
        return os_error(cause)
    return error


class VersionMismatchError(StoreError):
    """A stored value was made with other package versions than the running
    ones, and the version policy refused to load it.

    `differences` lists each mismatch (`VersionDifference`: package, recorded
    and running version); `key` is the entry's execution key.
    """

    def __init__(
        self,
        message: str,
        key: ExecutionKey | None = None,
        differences: tuple[VersionDifference, ...] = (),
    ) -> None:
        super().__init__(message)
        self.key = key
        self.differences = differences

    def __reduce__(self) -> tuple[object, ...]:  # keep key and differences across processes
        return (type(self), (self.args[0], self.key, self.differences))


class NotSupportedError(StoreError):
    """The store cannot do what was asked (e.g. cleanup of marimo's legacy cache)."""


class UntrustedEntryError(StoreError):
    """`verify_signatures="strict"` found an entry it must not unpickle.

    The entry is unsigned, signed by a key that is neither the store's own
    nor in `trusted_signers`, or its signature does not match its contents.
    The message names the entry, the signer and the remedy; docs/security.md
    has the threat model.
    """
