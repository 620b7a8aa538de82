"""`migrate [SRC]`: import marimo's own cache folder into a store.

A thin layer over `migrate_marimo_cache`: it never unpickles (marimo's
files are copied as bytes) and leaves `SRC` as it was.
"""

from __future__ import annotations

import os

from marimo_store._errors import NotFoundError
from marimo_store._migrate import migrate_marimo_cache
from marimo_store.cli._output import size_text
from marimo_store.cli._target import marimo_cache_here, open_import_target

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from marimo_store.cli import Register
    from marimo_store.cli._output import Output


def register(add: Register) -> None:
    migrate = add("migrate", help="import marimo's __marimo__/cache folder into the store")
    migrate.add_argument(
        "source",
        nargs="?",
        metavar="SRC",
        help="marimo's cache folder (default: __marimo__/cache in the working directory)",
    )
    migrate.set_defaults(run=run_migrate)


def run_migrate(args: argparse.Namespace, out: Output) -> int:
    source = os.path.abspath(args.source) if args.source else marimo_cache_here()
    if not os.path.isdir(source):
        raise NotFoundError(f"marimo cache folder {source} does not exist")
    store = open_import_target(args.store)
    with out.progress("importing", unit="files") as update:
        report = migrate_marimo_cache(source, store, progress=update)
    store.close()
    skipped = [{"path": path, "reason": reason} for path, reason in report.skipped]
    if out.json_mode:
        out.document(
            {
                "source": source,
                "store": store.path,
                "entries": report.entries,
                "files": report.files,
                "bytes_before": report.bytes_before,
                "bytes_after": report.bytes_after,
                "dedup_ratio": round(report.dedup_ratio, 3),
                "skipped": skipped,
            }
        )
        return 0
    if skipped:
        out.table(
            ("skipped file", "reason"),
            [(s["path"], s["reason"]) for s in skipped],
            wrap=("skipped file", "reason"),
        )
    out.line(
        f"imported {report.entries} entries ({report.files} files, "
        f"{size_text(report.bytes_before)}) from {source} into {store.path}: "
        f"{size_text(report.bytes_after)} stored (dedup ratio {report.dedup_ratio:.2f})"
    )
    out.line(
        "marimo finds them once its configuration says "
        '[cache] store = {type = "fs_persistent"} (docs/marimo.md); '
        f"delete {source} when it does"
    )
    return 0
