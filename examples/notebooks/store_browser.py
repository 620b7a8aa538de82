"""Browse a marimo_store store: entries, sizes, deduplication, and what a
cleanup would drop, as marimo tables.

`marimo edit store_browser.py` to browse interactively; `python
store_browser.py` runs it headless. The store is `__marimo__/persist`
beside this file (where cached_pipeline.py writes) unless `$STORE` names
another.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import datetime
    import os

    import marimo as mo

    from marimo_store import DefaultCleanupStrategy, FsPersistentStore

    default_path = os.environ.get("STORE") or str(mo.notebook_dir() / "__marimo__" / "persist")
    return DefaultCleanupStrategy, FsPersistentStore, datetime, default_path, mo


@app.cell
def _(default_path, mo):
    path = mo.ui.text(value=default_path, label="Store", full_width=True)
    path
    return (path,)


@app.cell
def _(FsPersistentStore, path):
    store = FsPersistentStore(path.value, cleanup_on_exit=False)
    entries = store.entries()
    return entries, store


@app.cell
def _(datetime, entries, mo):
    def when(ms):
        return datetime.datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")

    def formats(metadata):
        return ", ".join(sorted({ref.format for ref in metadata.variables.values()}))

    mo.ui.table(
        [
            {
                "block": m.key.block_id,
                "computation": m.key.module_hash[:24],
                "created": when(m.created_at),
                "last used": when(m.last_access) if m.last_access else "",
                "variables": len(m.variables),
                "formats": formats(m),
                "bytes": m.content_size,
            }
            for m in entries
        ],
        label=f"{len(entries)} entries",
        selection=None,
    )
    return


@app.cell
def _(entries, mo):
    # Each entry counts its own objects; on disk, an object shared by
    # several entries (or variables) exists once.
    logical = sum(m.content_size for m in entries)
    distinct = {}
    for m in entries:
        for object_id, ref in m.objects().items():
            distinct[object_id] = ref.size
    stored = sum(distinct.values())
    ratio = logical / stored if stored else 1.0
    blocks = {}
    for m in entries:
        row = blocks.setdefault(m.key.block_id, {"block": m.key.block_id, "entries": 0, "bytes": 0})
        row["entries"] += 1
        row["bytes"] += m.content_size
    mo.vstack(
        [
            mo.hstack(
                [
                    mo.stat(f"{logical / 1e6:.1f} MB", label="entries hold"),
                    mo.stat(f"{stored / 1e6:.1f} MB", label="stored"),
                    mo.stat(f"{ratio:.2f}x", label="deduplication"),
                ]
            ),
            mo.ui.table(list(blocks.values()), label="Per block", selection=None),
        ]
    )
    return


@app.cell
def _(mo):
    per_block = mo.ui.slider(1, 10, value=3, label="Keep per block", show_value=True)
    per_block
    return (per_block,)


@app.cell
def _(DefaultCleanupStrategy, mo, per_block, store):
    report = store.cleanup(
        DefaultCleanupStrategy(max_entries_per_block=per_block.value), dry_run=True
    )
    mo.ui.table(
        [
            {
                "block": dropped.key.block_id,
                "computation": dropped.key.module_hash[:24],
                "reason": dropped.reason,
                "bytes": dropped.content_size,
            }
            for dropped in report.dropped
        ]
        or [{"block": "", "computation": "", "reason": "nothing to drop", "bytes": 0}],
        label=f"Cleanup dry run: {len(report.dropped)} dropped, {report.entries_kept} kept",
        selection=None,
    )
    return


if __name__ == "__main__":
    app.run()
