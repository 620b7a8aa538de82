"""`info`, `ls`, `show`, `export-json`: look into a store without changing it.

None of them unpickles anything: they read metadata (log records and
snapshots), list files, and `export-json` decodes only values stored as
JSON. So they are safe on a store others can write (docs/security.md):
looking never runs a stranger's code.
"""

from __future__ import annotations

import fnmatch
import os

from marimo_store._cache_reports import recorded_scheme
from marimo_store._cleanup import is_function_call, last_used
from marimo_store._errors import NotFoundError
from marimo_store._format.layout import SNAPSHOT_SUFFIX, parse_format
from marimo_store._format.segments import SEGMENT_SUFFIX, writer_of_file
from marimo_store._marimo_keys import holds_json
from marimo_store._snapshot import read_snapshots
from marimo_store.cli._numbers import positive_count
from marimo_store.cli._output import size_text, time_text
from marimo_store.cli._remote import add_remote_option, run_remote_info
from marimo_store.cli._target import (
    SHORT_ID,
    entry_header,
    entry_id,
    entry_summary,
    key_document,
    kind_of,
    label_of,
    open_any_store,
    open_store,
    ref_document,
    select_entry,
)
from marimo_store.legacy import LegacyPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable
    from typing import Any

    from marimo_store._entry import EntryMetadata
    from marimo_store.cli import Register
    from marimo_store.cli._output import Output
    from marimo_store.store import FsPersistentStore


SORTS: dict[str, Callable[[EntryMetadata], Any]] = {
    "created": lambda m: m.created_at,
    "size": lambda m: m.content_size,
    "accessed": last_used,
    "name": lambda m: (label_of(m), m.created_at),
}
"""`ls --sort`: each key's natural order is largest / newest first (but names: A to Z)."""


def register(add: Register) -> None:
    info = add("info", help="summary of the store: entries, objects, sizes, snapshots, writers")
    add_remote_option(info, "summarize the remote instead: entries, segments, objects")
    info.set_defaults(run=run_info)

    ls = add("ls", help="list entries (filter by block or name, sort by size or time)")
    ls.add_argument("--block", help="only entries whose block id starts with this")
    ls.add_argument("--name", help="only entries whose name matches this glob (e.g. 'train*')")
    ls.add_argument("--kind", choices=("call", "named", "entry"), help="only entries of this kind")
    ls.add_argument("--sort", choices=tuple(SORTS), default="created", help="default: created")
    ls.add_argument("--reverse", action="store_true", help="oldest / smallest first")
    ls.add_argument("--limit", type=positive_count, metavar="N", help="at most N entries")
    ls.set_defaults(run=run_ls)

    show = add("show", help="one entry: key, variables, sizes, formats, environment")
    show.add_argument("key", metavar="KEY_OR_PREFIX", help="an id (prefix), key or name")
    show.set_defaults(run=run_show)

    export = add("export-json", help="print the JSON-format variables of an entry")
    export.add_argument("key", metavar="KEY_OR_PREFIX", help="an id (prefix), key or name")
    export.add_argument("--variable", action="append", metavar="NAME", help="only these")
    export.set_defaults(run=run_export_json)


# -- info ----------------------------------------------------------------------------


def run_info(args: argparse.Namespace, out: Output) -> int:
    if args.remote is not None:
        return run_remote_info(args, out)
    store = open_store(args.store)
    info = store_info(store)
    if out.json_mode:
        out.document(info)
        return 0
    heads = info["heads"]
    out.fields(
        [
            ("format version", str(info["format_version"])),
            ("entries", f"{info['entries']} in {info['blocks']} blocks"),
            ("objects", f"{info['objects']} files referenced, {info['object_files']} on disk"),
            ("bytes on disk", size_text(info["bytes_on_disk"])),
            ("logical bytes", size_text(info["logical_bytes"])),
            ("stored bytes", size_text(info["stored_bytes"])),
            ("dedup ratio", f"{info['dedup_ratio']:.2f}"),
            ("snapshots", f"{info['snapshots']} files, {len(heads)} heads"),
            ("log", f"{info['segments']} segments by {info['writers']} writers"),
            ("last cleanup", time_text(info["last_cleanup"])),
        ],
        title=info["path"],
    )
    if len(heads) > 1:
        out.table(
            ("head", "created", "writer", "entries"),
            [
                (h["id"][:SHORT_ID], time_text(h["created_at"]), h["writer"], str(h["entries"]))
                for h in heads
            ],
            title="snapshot heads (merged at the next cleanup)",
            right=("entries",),
            wrap=("writer",),
        )
    if info["functions"]:
        out.table(
            ("function", "calls", "hits", "misses", "size"),
            [
                (
                    f["function"],
                    str(f["calls"]),
                    str(f["hits"]),
                    str(f["misses"]),
                    size_text(f["size"]),
                )
                for f in info["functions"]
            ],
            title="cached functions (every process)",
            right=("calls", "hits", "misses", "size"),
            wrap=("function",),
        )
    return 0


def store_info(store: FsPersistentStore) -> dict[str, Any]:
    """The `info` document (docs/cli.md): counts and sizes from metadata
    and file listings; nothing is read but records, snapshots and names."""
    layout = store.layout
    entries = store.entries()
    logical = sum(
        ref.total_size for m in entries for refs in m.contents.values() for ref in refs.values()
    )
    distinct = {ref.id: ref for m in entries for ref in m.objects().values()}
    stored = sum(ref.size for ref in distinct.values())
    raw = layout.read_format_file()
    declared = parse_format(raw) if raw is not None else None
    snapshots = read_snapshots(layout.snapshots)
    try:
        heads: list[dict[str, Any]] = [
            {
                "id": head.id,
                "created_at": head.created_at,
                "writer": head.header.get("writer"),
                "entries": head.count,
            }
            for head in snapshots.heads
        ]
    finally:
        for snapshot in snapshots.files:
            snapshot.close()
    segments, writers = _segments_and_writers(layout.log)
    object_files, _ = _files_under(layout.objects)
    _, on_disk = _files_under(layout.root)
    return {
        "path": store.path,
        "format_version": declared[1] if declared is not None else None,
        "entries": len(entries),
        "blocks": len({m.key.block_id for m in entries}),
        "objects": sum(1 for ref in distinct.values() if not ref.inline),
        "object_files": object_files,
        "bytes_on_disk": on_disk,
        "logical_bytes": logical,
        "stored_bytes": stored,
        "dedup_ratio": round(logical / stored, 3) if stored else 1.0,
        "heads": heads,
        "snapshots": _count(layout.snapshots, SNAPSHOT_SUFFIX),
        "segments": segments,
        "writers": writers,
        "last_cleanup": max((head.created_at for head in snapshots.heads), default=None),
        "functions": _functions(entries),
    }


def _functions(entries: Iterable[EntryMetadata]) -> list[dict[str, Any]]:
    """Per `persistent_cache` function: its stored calls (each one a miss that
    computed it), the hits on them, and their distinct bytes."""
    calls: dict[str, list[EntryMetadata]] = {}
    for metadata in entries:
        if is_function_call(metadata):
            calls.setdefault(label_of(metadata), []).append(metadata)
    rows = [
        {
            "function": function,
            "calls": len(group),
            "hits": sum(m.hits for m in group),
            "misses": len(group),
            "size": sum({ref.id: ref.size for m in group for ref in m.objects().values()}.values()),
        }
        for function, group in calls.items()
    ]
    return sorted(rows, key=lambda row: (-row["hits"], row["function"]))


def _files_under(directory: str) -> tuple[int, int]:
    """Files under `directory` and their total size (apparent bytes)."""
    count = size = 0
    for root, _, names in os.walk(directory):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # deleted meanwhile (a cleanup elsewhere)
                continue
            count += 1
    return count, size


def _names(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _count(directory: str, suffix: str) -> int:
    return sum(1 for name in _names(directory) if name.endswith(suffix))


def _segments_and_writers(log_dir: str) -> tuple[int, int]:
    """Segment files, and the writers named by their file names
    (`<writer>.<n>.log`; a renamed copy counts as a segment only)."""
    segments = 0
    writers: set[str] = set()
    for name in _names(log_dir):
        if not name.endswith(SEGMENT_SUFFIX):
            continue
        segments += 1
        writer = writer_of_file(name)
        if writer is not None:
            writers.add(writer)
    return segments, len(writers)


# -- ls ------------------------------------------------------------------------------


def run_ls(args: argparse.Namespace, out: Output) -> int:
    store = open_any_store(args.store)
    entries = _filtered(store.entries(), args)
    entries.sort(key=SORTS[args.sort], reverse=(args.sort != "name") != args.reverse)
    if args.limit is not None:
        entries = entries[: max(args.limit, 0)]
    if out.json_mode:
        out.document({"entries": [entry_summary(m) for m in entries]})
        return 0
    out.table(
        ("id", "kind", "name", "created", "last used", "hits", "size", "variables"),
        [
            (
                entry_id(m.key)[:SHORT_ID],
                kind_of(m),
                label_of(m),
                time_text(m.created_at),
                time_text(m.last_access),
                str(m.hits),
                size_text(m.content_size),
                ", ".join(f"{name} ({ref.format})" for name, ref in sorted(m.variables.items())),
            )
            for m in entries
        ],
        right=("hits", "size"),
        wrap=("name", "variables"),
    )
    total = sum(m.content_size for m in entries)
    out.line(f"{len(entries)} entries, {size_text(total)}")
    return 0


def _filtered(entries: Iterable[EntryMetadata], args: argparse.Namespace) -> list[EntryMetadata]:
    return [
        m
        for m in entries
        if (args.block is None or m.key.block_id.startswith(args.block))
        and (args.name is None or fnmatch.fnmatchcase(label_of(m), args.name))
        and (args.kind is None or kind_of(m) == args.kind)
    ]


# -- show ----------------------------------------------------------------------------


def run_show(args: argparse.Namespace, out: Output) -> int:
    store = open_any_store(args.store)
    metadata = select_entry(store, args.key)
    document = entry_details(store, metadata)
    if out.json_mode:
        out.document(document)
        return 0
    environment = document["environment"]
    signature = document["signature"]
    scheme = recorded_scheme(metadata)
    out.fields(
        [
            ("name", f"{document['label']} ({document['kind']})"),
            ("block_id", metadata.key.block_id),
            ("module_hash", metadata.key.module_hash),
            *([("key scheme", str(scheme))] if scheme is not None else []),
            ("created", f"{time_text(metadata.created_at)} ({metadata.created_at})"),
            ("last used", time_text(metadata.last_access)),
            ("size", size_text(metadata.content_size)),
            ("python", f"{environment['python']} on {environment['platform']}"),
            (
                "packages",
                ", ".join(f"{k} {v}" for k, v in sorted(environment["packages"].items())) or "-",
            ),
            ("signature", _signature_text(signature)),
            ("other runs", str(len(document["runs"]) - 1)),
        ],
        title=f"entry {document['id']}",
    )
    out.table(
        ("kind", "variable", "format", "size", "objects"),
        [
            (kind, name, ref["format"], size_text(ref["size"]), _objects_text(ref["objects"]))
            for kind, refs in document["contents"].items()
            for name, ref in refs.items()
        ],
        right=("size",),
        wrap=("variable", "objects"),
    )
    if document["user_metadata"]:
        import json  # noqa: PLC0415

        out.line("user metadata:")
        out.line(json.dumps(document["user_metadata"], indent=2, default=repr))
    return 0


def _signature_text(signature: dict[str, Any]) -> str:
    signer = signature["signer"]
    return str(signature["status"]) + (f" by {signer}" if signer else "")


def _objects_text(objects: list[dict[str, Any]]) -> str:
    return ", ".join(
        ("inline" if part["inline"] else part["id"][:SHORT_ID]) + f" {size_text(part['size'])}"
        for part in objects
    )


def entry_details(
    store: FsPersistentStore | LegacyPersistentStore, metadata: EntryMetadata
) -> dict[str, Any]:
    """The `show` document (docs/cli.md)."""
    environment = metadata.environment
    runs = store.history(metadata.key.replace(created_at=None))
    return {
        **entry_header(metadata),
        "contents": {
            kind: {name: ref_document(ref) for name, ref in sorted(refs.items())}
            for kind, refs in metadata.contents.items()
        },
        "environment": {
            "python": environment.python,
            "platform": environment.platform,
            "packages": dict(environment.packages),
        },
        "signature": _signature(store, metadata),
        "user_metadata": dict(metadata.user_metadata),
        "runs": [entry_id(run.key) for run in runs],
    }


def _signature(
    store: FsPersistentStore | LegacyPersistentStore, metadata: EntryMetadata
) -> dict[str, Any]:
    """What the store makes of the entry's signature (checking one needs
    `cryptography`; without it the claim is shown as `unchecked`)."""
    from marimo_store._errors import ConfigError  # noqa: PLC0415

    if isinstance(store, LegacyPersistentStore):
        return {"status": "unsigned", "signer": None, "reason": "marimo's cache files are unsigned"}
    try:
        status = store.signature_status(metadata.key)
    except ConfigError as error:
        claimed = metadata.signature
        return {
            "status": "unchecked",
            "signer": claimed.signer if claimed is not None else None,
            "reason": str(error),
        }
    if status is None:  # deleted since it was listed
        raise NotFoundError(f"entry {entry_id(metadata.key)} is no longer in the store")
    return {"status": status.status, "signer": status.signer, "reason": status.reason}


# -- export-json ---------------------------------------------------------------------


def _exportable(name: str, stored_format: str) -> bool:
    """A JSON value: stored as JSON, or the bytes of a marimo `.json`/`.jsonl` key."""
    return stored_format == "json" or (stored_format == "bytes" and holds_json(name))


def _decode_marimo_json(name: str, data: bytes) -> Any:
    """marimo's JSON bytes decoded (a `.jsonl` key: the list of its lines);
    `ValueError` when they are not JSON. Nothing is ever unpickled."""
    import json  # noqa: PLC0415 - only export-json decodes JSON

    text = data.decode("utf-8")
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def run_export_json(args: argparse.Namespace, out: Output) -> int:
    store = open_any_store(args.store)
    metadata = select_entry(store, args.key)
    variables = metadata.variables
    wanted = args.variable or sorted(variables)
    missing = [name for name in wanted if name not in variables]
    if missing:
        raise NotFoundError(
            f"entry {entry_id(metadata.key)} has no variable {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, sorted(variables))) or 'none'})"
        )
    exported = [name for name in wanted if _exportable(name, variables[name].format)]
    if not exported:
        formats = ", ".join(f"{name} ({variables[name].format})" for name in wanted)
        raise NotFoundError(
            f"entry {entry_id(metadata.key)} has no JSON-format variable to export: {formats}; "
            "export-json never unpickles"
        )
    values: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in exported:
        if variables[name].format == "json":
            values[name] = store.load_variable(metadata.key, name)
            continue
        try:
            data = store.load_variable(metadata.key, name)  # a bytes value: nothing unpickled
            values[name] = _decode_marimo_json(name, bytes(data))
        except ValueError as error:
            skipped[name] = f"bytes, not valid JSON ({error})"
    skipped.update({name: variables[name].format for name in wanted if name not in exported})
    for name, stored_format in skipped.items():
        out.warning(f"skipped {name!r}: stored as {stored_format}, not JSON")
    out.document(
        {
            "id": entry_id(metadata.key),
            **key_document(metadata.key),
            "variables": values,
            "skipped": skipped,
        }
    )
    return 0
