"""How marimo's cache keys map onto the store's entries.

marimo's persistent loaders name what they store with relative paths
(marimo 0.25, `marimo/_save/loaders`):

- `method="pickle"` / `"json"`: `<block>/<T>_<hash>.pickle` or `.json`;
- `method="lazy"`: blobs `<block>/<hash>/<name>.<ext>` first, then the
  manifest `<block>/<T>_<hash>.jsonl`;
- the kernel's record of a notebook's entries: `<stem>-<16 hex>.json` at
  the root.

`<block>` is the cache's name (the `with` block's or the function's), `T`
one capital letter for the cache type. One marimo entry (a file; a lazy
manifest with the blobs under `<hash>/`) becomes one entry of the store,
`ExecutionKey(block, entry)`, holding each of its keys as a variable named
by the key itself. Cleanup works on whole entries, so a manifest and its
blobs are kept or dropped together, and per-block limits count marimo
entries of one block. A root-level key is a block of its own.

Keys are checked before anything else: they become names of variables,
not paths, but a key that would escape or alias a directory in marimo's
own file store (`..`, absolute, backslashes, NUL, empty segments) is a bug
or an attack either way, and is refused with `InvalidKeyError`.
"""

from __future__ import annotations

from marimo_store._entry import Entry, ExecutionKey
from marimo_store._errors import InvalidKeyError
from marimo_store._pieces import split_blob
from marimo_store._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MARIMO_DIR = "__marimo__"
"""marimo's folder beside a notebook."""
PERSIST_DIR = "persist"
"""The store lives in `__marimo__/persist`, beside marimo's `__marimo__/cache`."""
LEGACY_DIR = "cache"
"""marimo's own `FileStore` directory inside `__marimo__`."""
DEFAULT_STORE_PATH = f"{MARIMO_DIR}/{PERSIST_DIR}"
"""Relative to the working directory, where no notebook directory is known."""
MARIMO_CACHE_PATH = f"{MARIMO_DIR}/{LEGACY_DIR}"
"""marimo's own `FileStore` directory, relative to the notebook."""

FILE = "file"
"""A key that is a whole entry by itself (pickle or json loader, root files)."""
MANIFEST = "manifest"
"""A lazy entry's manifest: written last, it completes the entry."""
BLOB = "blob"
"""A lazy entry's blob: `<block>/<hash>/...`, written before its manifest."""

_LAZY_MANIFEST_SUFFIX = ".jsonl"
_JSON_SUFFIXES = (".json", _LAZY_MANIFEST_SUFFIX)


def holds_json(key: str) -> bool:
    """Whether marimo stores JSON (`.json`) or JSON lines (`.jsonl`) under
    `key`: bytes it decodes as JSON, never unpickles."""
    return key.endswith(_JSON_SUFFIXES)


class MarimoKey(Value):
    """A checked marimo key, what part of an entry it is (`role`), and the
    computation (`execution_key`) of the store entry it belongs to."""

    __slots__ = ("key", "execution_key", "role")
    key: str
    execution_key: ExecutionKey
    role: str

    def __init__(self, key: str, block: str, entry: str, role: str) -> None:
        self._assign(key=key, execution_key=ExecutionKey(block, entry), role=role)


def marimo_entry(
    key: ExecutionKey,
    members: Mapping[str, bytes],
    *,
    user_metadata: Mapping[str, str] | None = None,
) -> Entry:
    """One marimo entry as a store entry: each key a variable of that name,
    its bytes kept as they are (`format="bytes"`: nothing is ever unpickled
    by the store), cut into pieces so that equal data is stored once."""
    return Entry.of(
        key,
        {name: split_blob(data) for name, data in members.items()},
        user_metadata=user_metadata,
        format="bytes",
    )


def key_problem(key: str) -> str | None:
    """Why `key` is not a safe relative path with `/` separators, if it is not."""
    if not key:
        return "it is empty"
    if "\x00" in key:
        return "it contains a NUL character"
    if "\\" in key:
        return "it contains a backslash (marimo keys separate segments with '/')"
    if key.startswith("/") or (len(key) >= 2 and key[1] == ":" and key[0].isalpha()):
        return "it is an absolute path"
    for segment in key.split("/"):
        if not segment:
            return "it has an empty segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
    return None


def parse_marimo_key(key: object) -> MarimoKey:
    """The entry a marimo key belongs to; `InvalidKeyError` for an unsafe key."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"a marimo cache key must be a str, got {type(key).__name__}")
    problem = key_problem(key)
    if problem is not None:
        raise InvalidKeyError(f"invalid marimo cache key {key!r}: {problem}")
    segments = key.split("/")
    block = segments[0]
    if len(segments) == 1:
        return MarimoKey(key, block, block, FILE)
    if len(segments) > 2:
        return MarimoKey(key, block, segments[1], BLOB)
    name = segments[1]
    if (
        name.endswith(_LAZY_MANIFEST_SUFFIX)
        and len(name) > 2 + len(_LAZY_MANIFEST_SUFFIX)
        and name[0].isupper()
        and name[1] == "_"
    ):
        return MarimoKey(key, block, name[2 : -len(_LAZY_MANIFEST_SUFFIX)], MANIFEST)
    return MarimoKey(key, block, name, FILE)
