"""`StoreOptions`: the options of `FsPersistentStore`, each defined once.

Each option is one field below: its name (also its `.marimo.toml` key in
`[fs_persister.defaults]`), its default and its check. The constructor's
signature takes its defaults from these fields, `config` and pickling carry
`StoreOptions.config()`, and configuration files check their values through
`validate_options`: the invariant is that the constructor, the files and a
pickled copy can never disagree about an option's default or range.
"""

from __future__ import annotations

import os

from marimo_store._errors import ConfigError
from marimo_store._trust import check_trust_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping
    from typing import Any, Literal, TypeAlias

    from marimo_store._cleanup import CleanupStrategy
    from marimo_store._objects import MmapMode
    from marimo_store._trust import VerifyMode

    Durability: TypeAlias = Literal["flush", "fsync"]
    ObjectIdMode: TypeAlias = Literal["deduplication", "execution_key_qualified"]
    Check: TypeAlias = Callable[[str, Any], None]

MAX_INLINE_THRESHOLD = 1 << 20
"""Values kept inside log records stay small: a record holds every inline
value of its entry, and every reader of the log reads every record."""


def _one_of(*allowed: str) -> Check:
    def check(name: str, value: Any) -> None:
        if value not in allowed:
            raise ConfigError(
                f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            )

    return check


def _inline_threshold(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        value_in_range = False
    else:
        value_in_range = 0 <= value <= MAX_INLINE_THRESHOLD
    if not value_in_range:
        raise ConfigError(
            f"{name} must be an int from 0 to {MAX_INLINE_THRESHOLD} (1 MiB), got {value!r}"
        )


def _entry_limit(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ConfigError(f"{name} must be an int >= 0, or -1 for no limit, got {value!r}")


def _non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}")


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")


def _callable_or_none(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise ConfigError(f"{name} must be callable, got {value!r}")


def _remote_url(name: str, value: Any) -> None:
    if value == "":
        return
    scheme, separator, rest = value.partition("://") if isinstance(value, str) else ("", "", "")
    if not separator or not scheme or (not rest.strip("/") and scheme != "memory"):
        raise ConfigError(
            f"{name} must be '' (none) or a URL such as 's3://bucket/prefix', got {value!r}"
        )
    if "@" in rest.split("/", 1)[0] or "?" in rest:
        raise ConfigError(
            f"{name} must not carry credentials or options ({value!r}): they come from the "
            "environment and the provider's usual chain (docs/remote.md)"
        )


def _no_check(name: str, value: Any) -> None:
    """Checked elsewhere (the trust options together by `check_trust_options`)."""


ARGUMENTS_DOC = """Arguments (each also a `.marimo.toml` key of the same name):

    - `path`: the store directory; created on the first `put`. It must be
      missing, empty or a store: a directory holding other files (a project,
      the working directory through `""`) raises `ConfigError`, since the
      store's files at its root would mix with them.
    - `object_id_mode`: `"deduplication"` (default) names objects by content
      alone, so equal values share one file; `"execution_key_qualified"`
      adds the entry's key to the name, so no object is shared across
      entries (for stores that several machines clean up concurrently).
    - `auto_variables_format`: what `format="auto"` means (`"pickle"` or
      `"json"`).
    - `inline_threshold`: serialized values smaller than this many bytes
      (at most 1 MiB) are kept inside the entry record instead of as files.
    - `durability`: `"flush"` (default) hands writes to the OS; a power cut
      may lose the newest entries, which then read as misses, never as
      wrong values (every read is verified). `"fsync"` makes each `put`
      durable before it returns. Snapshots are always fsynced.
    - `verify_reads`: check every object's hash before using it (default).
      Objects this process wrote or already verified, and that have not
      changed since, are not hashed again; objects of 4 MiB or more that
      any process of this machine verified since boot neither.
    - `cloudpickle_fallback`: pickle lambdas, closures and `__main__`
      classes by value with cloudpickle; when False they raise
      `SerializationError`.
    - `memory_map`: load out-of-band buffers (numpy arrays, ...) by memory
      mapping (no copy) rather than reading them into memory.
    - `mmap_mode`: how they are mapped, as joblib's option of that name:
      `"c"` (default) copy-on-write, so a hit returns writable arrays as the
      miss did, and a write copies the page it touches, privately (the
      object file never changes); `"r"` read-only arrays (a write raises
      `ValueError`; the miss still returns the function's own value).
    - `refresh_interval`: seconds between re-reads of other writers' logs
      and snapshots after a miss where no change notification runs, and
      before a put in any case (0: on every miss, with no watch).
    - `cleanup_strategy`: what `cleanup()` drops; default
      `DefaultCleanupStrategy()` (least recently used above 1 GB; count
      limits opt-in).
    - `entry_merge_timeout_seconds`: a put starts a background cleanup when
      the oldest entry not yet in a snapshot is older than this.
    - `max_entries_in_log`: ... or when more entries than this wait in the
      log (-1: no limit).
    - `cleanup_on_exit`: clean up at interpreter exit if this instance
      stored entries, or if more than 64 log segments have piled up (never
      raises).
    - `tombstone_ttl_days`: how long a snapshot remembers deleted keys, so a
      machine syncing late cannot bring them back.
    - `object_grace_seconds`: object GC spares objects younger than this
      (they may belong to entries not visible here yet), and a damaged
      object this young stays in place instead of going to quarantine (it
      may be a sync tool's copy still arriving).
    - `lock_timeout`: seconds to wait for a local lock; on timeout a put
      goes on without it and a cleanup is skipped and reported.
    - `signing_key`: a PEM Ed25519 private key file; every entry put is
      signed with it. None: `$MARIMO_STORE_SIGNING_KEY` (the PEM text) or
      `$MARIMO_STORE_SIGNING_KEY_FILE` (a path) when set, else no signing.
    - `verify_signatures`: `"off"` (default) loads what it finds; `"on"`
      unpickles only values of entries signed by this store's key or a
      `trusted_signers` key, after checking every object's SHA-256 (others
      are a miss, with one warning per signer); `"strict"` raises
      `UntrustedEntryError` instead. JSON and bytes values load either way.
    - `trusted_signers`: fingerprints of the keys whose entries are trusted
      (from arguments or the user's configuration file, never a project's).
      docs/security.md has the threat model and a team's set-up.
    - `allow_other_files`: make a store in a directory that holds other
      files anyway. The store then writes no `.gitignore` or
      `.gitattributes` there (they would apply to those files too).
    - `remote`: a shared remote behind this store (`""`: none;
      `"s3://bucket/prefix"`,
      `"gs://..."`, `"az://..."`, `"file:///..."`; docs/remote.md): a local
      miss is looked up there and a hit copied here; every put goes there
      too. Credentials come from the environment, never from this URL.
    - `remote_write`: `"through"` (default) puts to the remote before `put`
      returns; `"back"` queues it for a background thread (bounded, flushed
      at `close()` and at exit).
    - `remote_timeout`: seconds a lookup waits for the remote's first
      listing before it counts as a miss; later listings run in the
      background, so a miss the remote answered costs no request.
    """
"""The arguments of `FsPersistentStore` (its docstring shows them): each is
an option below."""


class StoreOptions:
    """The checked options of one store (see `FsPersistentStore` for what
    each means), read as attributes; the class attributes are the defaults.
    Numbers are floats; `trusted_signers` is a sorted tuple, hashable and
    independent of order: the configuration is the store's identity. (Not a
    dataclass: importing `dataclasses` costs every process ~15 ms, see
    _value.py.)"""

    path: str
    object_id_mode: ObjectIdMode = "deduplication"
    auto_variables_format: Literal["pickle", "json"] = "pickle"
    inline_threshold: int = 512
    durability: Durability = "flush"
    verify_reads: bool = True
    cloudpickle_fallback: bool = True
    memory_map: bool = True
    mmap_mode: MmapMode = "c"
    refresh_interval: float = 0.2
    cleanup_strategy: CleanupStrategy | None = None
    entry_merge_timeout_seconds: float = 3600
    max_entries_in_log: int = -1
    cleanup_on_exit: bool = True
    tombstone_ttl_days: float = 30
    object_grace_seconds: float = 3600
    lock_timeout: float = 10
    signing_key: str | os.PathLike[str] | None = None
    verify_signatures: VerifyMode = "off"
    trusted_signers: Collection[str] = ()
    allow_other_files: bool = False
    remote: str = ""
    remote_write: Literal["through", "back"] = "through"
    remote_timeout: float = 2.0

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.__dict__.update(config)

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> StoreOptions:
        """Check the constructor's arguments (`ConfigError` naming the first
        out of range) and normalize them."""
        config = {**arguments, "path": store_path(arguments["path"])}
        validate_options(config)
        config["trusted_signers"] = tuple(sorted(set(config["trusted_signers"])))
        for name, check in _CHECKS.items():
            if check is _non_negative:
                config[name] = float(config[name])
        return cls(config)

    def config(self) -> dict[str, Any]:
        """The options by name: all that a pickled copy of the store carries."""
        return {name: getattr(self, name) for name in OPTION_NAMES}

    @property
    def strategy(self) -> CleanupStrategy:
        """The cleanup strategy (`DefaultCleanupStrategy()` when none is set;
        `_cleanup` is imported by the first cleanup, not with the store)."""
        if self.cleanup_strategy:
            return self.cleanup_strategy
        from marimo_store._cleanup import DefaultCleanupStrategy  # noqa: PLC0415 - cleanups only

        return DefaultCleanupStrategy()

    @property
    def durable(self) -> bool:
        """Whether every put is fsynced (`durability="fsync"`)."""
        return self.durability == "fsync"


_CHECKS: dict[str, Check] = {
    "object_id_mode": _one_of("deduplication", "execution_key_qualified"),
    "auto_variables_format": _one_of("pickle", "json"),
    "inline_threshold": _inline_threshold,
    "durability": _one_of("flush", "fsync"),
    "verify_reads": _flag,
    "cloudpickle_fallback": _flag,
    "memory_map": _flag,
    "mmap_mode": _one_of("c", "r"),
    "refresh_interval": _non_negative,
    "cleanup_strategy": _callable_or_none,
    "entry_merge_timeout_seconds": _non_negative,
    "max_entries_in_log": _entry_limit,
    "cleanup_on_exit": _flag,
    "tombstone_ttl_days": _non_negative,
    "object_grace_seconds": _non_negative,
    "lock_timeout": _non_negative,
    "signing_key": _no_check,
    "verify_signatures": _no_check,
    "trusted_signers": _no_check,
    "allow_other_files": _flag,
    "remote": _remote_url,
    "remote_write": _one_of("through", "back"),
    "remote_timeout": _non_negative,
}
"""Each option's check (but `path`'s: see `store_path`), in the order
`validate_options` applies them."""

OPTION_NAMES = ("path", *_CHECKS)


def option_defaults() -> dict[str, Any]:
    """Every option but `path`, with its default."""
    return {name: getattr(StoreOptions, name) for name in _CHECKS}


def validate_options(config: Mapping[str, Any]) -> None:
    """Raise `ConfigError` naming the first option that is out of range.

    `config` holds every constructor argument; configuration files check
    their values through this too, so both say the same thing.
    """
    for name, check in _CHECKS.items():
        check(name, config[name])
    check_trust_options(config)


def store_path(path: object) -> str:
    """The absolute store path; `ConfigError` for what cannot name a store
    directory (an empty path would make the working directory a store)."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"path must be a str or os.PathLike, got {path!r}")
    if not os.fspath(path):
        raise ConfigError(
            "path must not be empty (it would make the working directory a store); "
            "name the store directory, for example '__marimo__/persist'"
        )
    return os.path.abspath(os.fspath(path))
