"""Since when this machine has seen each entry dangle: late is not lost.

An entry *dangles* while one of its object files is absent or shorter or
longer than its record says. That is the normal state of an entry whose
log record a sync tool delivered before its objects (rsync copies `log/`
before `objects/`; Dropbox, OneDrive and Syncthing deliver files in any
order), or whose object is still being copied. Such an entry is a miss
while it dangles and loads as soon as the objects arrive, so no cleanup
drops it *because* it dangles now. Only an entry that has dangled on this
machine for `DANGLING_GRACE_DAYS` (longer than any sync tool takes to
deliver a file) may be dropped, by cleanup and by `verify(repair=True)`.

The clock is this machine's own: when *it* first saw the entry dangle.
It lives in `local/` (one file per host, `dangling-<host>.msgpack`, never
synced in a way that matters: another machine's clock says nothing about
what arrived here). Cleanup rewrites it under the `modification` lock,
forgetting entries that no longer dangle. A file that is missing or does
not decode restarts every clock at now: an entry is then dropped later,
never earlier.

Implements W3, M6 (docs/format.md §14).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping

import msgpack

from marimo_store import _fs
from marimo_store._entry import ExecutionKey
from marimo_store._format.layout import dangling_table
from marimo_store._log import host_name

DANGLING_GRACE_DAYS = 7
"""How long an entry may dangle on this machine before a cleanup drops it."""

_DAY_MS = 86_400_000


def ledger_path(local_dir: str) -> str:
    """This host's record of dangling entries."""
    return os.path.join(local_dir, dangling_table(host_name()))


def read_first_seen(local_dir: str) -> dict[ExecutionKey, int]:
    """When this machine first saw each entry dangle (ms); empty if unknown."""
    try:
        with _fs.open_read(ledger_path(local_dir)) as file:
            rows = msgpack.unpackb(_fs.read(file), raw=False)
    except (OSError, ValueError, msgpack.UnpackException):
        return {}
    found: dict[ExecutionKey, int] = {}
    if not isinstance(rows, list):
        return found
    for row in rows:
        if (
            isinstance(row, list)
            and len(row) == 4
            and isinstance(row[0], str)
            and isinstance(row[1], str)
            and all(type(n) is int for n in row[2:])
        ):
            found[ExecutionKey(row[0], row[1], row[2])] = row[3]
    return found


def dangling_since(
    local_dir: str, dangling: Collection[ExecutionKey], now: int, *, temp_path: str | None
) -> dict[ExecutionKey, int]:
    """Since when (ms) each of `dangling` has dangled on this machine.

    Keys seen for the first time start at `now`. With `temp_path` (a cleanup
    that is not a dry run), the record is rewritten to hold exactly these
    keys: an entry that stopped dangling starts afresh if it dangles again.
    """
    known = read_first_seen(local_dir)
    since = {key: known.get(key, now) for key in dangling}
    if temp_path is not None and since != known:
        rows = [[k.block_id, k.module_hash, k.created_at, at] for k, at in since.items()]
        _fs.makedirs(local_dir)
        _fs.write_new_file(
            ledger_path(local_dir),
            msgpack.packb(rows, use_bin_type=True),
            temp_path=temp_path,
            durable=False,
        )
    return since


def overdue(since: Mapping[ExecutionKey, int], now: int) -> dict[ExecutionKey, str]:
    """The dangling entries a cleanup may drop now, each with its reason."""
    horizon = now - DANGLING_GRACE_DAYS * _DAY_MS
    return {
        key: f"objects missing for more than {DANGLING_GRACE_DAYS} days on this machine"
        for key, at in since.items()
        if at <= horizon
    }
