"""Which store a command works on, which entry a KEY argument names, and
how an entry is described (the JSON shapes docs/cli.md documents).

The store is found the way `App()` finds it (configuration files, then
`__marimo__/persist` in the working directory), so the command sees the
store a notebook or script run from here would use; `--store PATH` only
replaces the path. Nothing here unpickles: entries are described from
their metadata.
"""

from __future__ import annotations

import os

from marimo_store._cleanup import is_function_call
from marimo_store._entry import CALL_METADATA_KEY
from marimo_store._errors import NotFoundError, NotSupportedError, StoreFormatError
from marimo_store._format.layout import STORE_MARKERS
from marimo_store._hashing import text_digest
from marimo_store._marimo_keys import LEGACY_DIR, MARIMO_DIR, PERSIST_DIR
from marimo_store._named import NAMED_OBJECT
from marimo_store.app import resolve_store
from marimo_store.config import read_settings
from marimo_store.legacy import LegacyPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from marimo_store._entry import EntryMetadata, ExecutionKey, ObjectRef
    from marimo_store.store import FsPersistentStore

SHORT_ID = 12
"""Characters of an entry id shown in tables (JSON has all 16)."""
_AMBIGUITY_SHOWN = 8


def open_store(path: str | None) -> FsPersistentStore:
    """The existing store at `path` (else the one `App()` would use here),
    opened with the configuration of the working directory.

    `cleanup_on_exit` is off: a command changes the store only when that is
    what it was asked to do (`cleanup`, `verify --repair`, `migrate`).
    """
    store = open_any_store(path)
    if isinstance(store, LegacyPersistentStore):
        raise _use_migrate(store.path)
    return store


def _use_migrate(path: str) -> NotSupportedError:
    return NotSupportedError(
        f"the store here is marimo's own cache folder {path} (one pickle file "
        "per entry: no log, snapshots or metadata to inspect); import it with "
        f"`marimo-store migrate {path}`"
    )


def open_any_store(path: str | None) -> FsPersistentStore | LegacyPersistentStore:
    """As `open_store`, and marimo's own cache folder too: the one `App()`
    would read here, or `--store` naming a `__marimo__/cache` folder. The
    commands that only read entries (`ls`, `show`, `export-json`) work on
    it through the `Store` protocol; the others need `open_store`. A folder
    of marimo's own cache files, which only `migrate` reads, is an error
    naming it, not an empty listing."""
    store: FsPersistentStore | LegacyPersistentStore
    if path is not None and _is_marimo_cache(path):
        store = LegacyPersistentStore(path)
    else:
        store = resolve_store(os.getcwd(), _config(path))
    if not isinstance(store, LegacyPersistentStore):
        _require_store(store.path)
    elif not store.entries():
        raise _use_migrate(store.path)
    return store


def _is_marimo_cache(path: str) -> bool:
    """A `__marimo__/cache` folder that is not a store of ours."""
    absolute = os.path.abspath(path)
    return (
        os.path.basename(absolute) == LEGACY_DIR
        and os.path.basename(os.path.dirname(absolute)) == MARIMO_DIR
        and os.path.isdir(absolute)
        and not any(os.path.exists(os.path.join(absolute, part)) for part in STORE_MARKERS)
    )


def open_import_target(path: str | None) -> FsPersistentStore:
    """Where `migrate` imports to: `path`, else the store `App()` would use
    here, or where that is marimo's own cache folder, `persist/` beside it
    (where `App()` looks once it exists). It need not exist yet."""
    config = _config(path)
    store = resolve_store(os.getcwd(), config)
    if isinstance(store, LegacyPersistentStore):
        persist = os.path.join(os.path.dirname(store.path), PERSIST_DIR)
        return read_settings(os.getcwd(), config).open_store(persist)
    return store


def marimo_cache_here() -> str:
    """marimo's `__marimo__/cache` in the working directory (where `App()`
    would read it), never a parent's."""
    cache = os.path.join(os.getcwd(), MARIMO_DIR, LEGACY_DIR)
    if not os.path.isdir(cache):
        raise NotFoundError(
            f"no {MARIMO_DIR}/{LEGACY_DIR} in {os.getcwd()}; give the folder to import"
        )
    return cache


def _config(path: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup_on_exit": False}
    if path is not None:
        config["dir_path"] = path
    return config


def _require_store(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreFormatError(f"{path} is a file, not a store directory")
    if not os.path.isdir(path):
        raise NotFoundError(
            f"no store at {path} (nothing was cached there yet; give another with --store PATH)"
        )
    if not any(os.path.exists(os.path.join(path, part)) for part in STORE_MARKERS):
        raise StoreFormatError(
            f"{path} is not a marimo_store store (it has no format.json, log/, snapshots/ "
            f"or objects/); if it is marimo's own cache, `marimo-store migrate {path}` imports it"
        )


# -- naming entries ------------------------------------------------------------------


def entry_id(key: ExecutionKey) -> str:
    """A short stable name for one entry: 16 hex digits of xxh3-64 of its
    key, like a git commit id (tables show the first 12)."""
    return text_digest(f"{key.block_id}\x00{key.module_hash}\x00{key.created_at}").hex()


def key_text(key: ExecutionKey) -> str:
    """`block_id/module_hash/created_at`: the whole key as one argument."""
    return f"{key.block_id}/{key.module_hash}/{key.created_at}"


def kind_of(metadata: EntryMetadata) -> str:
    """`call` (a `persistent_cache` call), `named` (a named object) or
    `entry` (anything else: a marimo cache entry, a block's run, a put)."""
    if is_function_call(metadata):
        return "call"
    if metadata.key.module_hash == NAMED_OBJECT:
        return "named"
    return "entry"


def label_of(metadata: EntryMetadata) -> str:
    """What people call an entry: the function of a call, the name of a
    named object, else its block id."""
    call = metadata.user_metadata.get(CALL_METADATA_KEY)
    if isinstance(call, dict) and isinstance(call.get("function"), str):
        return str(call["function"])
    return metadata.key.block_id


def select_entry(store: FsPersistentStore | LegacyPersistentStore, text: str) -> EntryMetadata:
    """The entry `text` names: a prefix of its id or of its key text, or
    its label exactly. When every match is a run of one computation, the
    newest run (what `get` would return); otherwise `NotFoundError` listing
    the candidates."""
    if not text:
        raise NotFoundError("an entry id, key or name must not be empty")
    entries = store.entries()
    matches = [
        metadata
        for metadata in entries
        if entry_id(metadata.key).startswith(text)
        or key_text(metadata.key).startswith(text)
        or label_of(metadata) == text
    ]
    if not matches:
        raise NotFoundError(f"no entry matches {text!r} in {store.path} ({len(entries)} entries)")
    computations = {(m.key.block_id, m.key.module_hash) for m in matches}
    if len(computations) > 1:
        shown = sorted(matches, key=lambda m: m.created_at, reverse=True)[:_AMBIGUITY_SHOWN]
        candidates = ", ".join(f"{entry_id(m.key)[:SHORT_ID]} ({label_of(m)})" for m in shown)
        more = len(matches) - len(shown)
        raise NotFoundError(
            f"{text!r} matches {len(matches)} entries of {len(computations)} computations: "
            f"{candidates}{f' and {more} more' if more else ''}; give more of an id"
        )
    return max(matches, key=lambda m: m.created_at)


# -- JSON shapes ---------------------------------------------------------------------


def key_document(key: ExecutionKey) -> dict[str, Any]:
    """`{"block_id", "module_hash", "created_at"}`."""
    return {"block_id": key.block_id, "module_hash": key.module_hash, "created_at": key.created_at}


def entry_header(metadata: EntryMetadata) -> dict[str, Any]:
    """What every description of an entry starts with: its names, key, use and size."""
    return {
        "id": entry_id(metadata.key),
        "kind": kind_of(metadata),
        "label": label_of(metadata),
        **key_document(metadata.key),
        "last_access": metadata.last_access,
        "hits": metadata.hits,
        "size": metadata.content_size,
    }


def entry_summary(metadata: EntryMetadata) -> dict[str, Any]:
    """One entry as `ls` and `watch` list it."""
    return {
        **entry_header(metadata),
        "variables": {name: ref.format for name, ref in sorted(metadata.variables.items())},
    }


def ref_document(ref: ObjectRef) -> dict[str, Any]:
    """One value's storage: its format, size and the objects that hold it."""
    return {
        "format": ref.format,
        "size": ref.total_size,
        "objects": [
            {"id": part.id, "size": part.size, "inline": part.inline} for part in ref.objects()
        ],
    }
