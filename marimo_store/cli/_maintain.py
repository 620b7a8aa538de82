"""`cleanup` and `clear`: what the store keeps, and (with `--dry-run`) what it would drop.

The options of `DefaultCleanupStrategy` become command-line options of the
same names (`--max-entries-per-block 5`), read from its signature so that
the two cannot drift; each overrides the store's configured strategy for
this run only. `none` (or -1, as in configuration files) lifts a limit.
`clear` drops every entry: on a terminal it asks first (`--yes` does not);
elsewhere it needs `--yes`, so that no script empties a store by mistake.
A dry run of either is a `CleanupPlan` (`store.plan_cleanup`): the entries
it would drop, then the rest of the plan (`plan.rewrites()`: the snapshot
it would write, the objects it would collect, with sizes and reasons);
with `--json`, the same as the document's `plan`.
"""

from __future__ import annotations

import os
import sys

from marimo_store._cleanup import DefaultCleanupStrategy, drop_everything
from marimo_store._errors import ConfigError, InvalidArgumentError, StoreError
from marimo_store.cli._output import EXIT_FINDINGS, EXIT_OK, size_text, time_text
from marimo_store.cli._remote import add_remote_option, run_remote_cleanup
from marimo_store.cli._target import SHORT_ID, entry_id, key_document, label_of, open_store
from marimo_store.config import NO_LIMIT, read_settings, strategy_defaults

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from marimo_store._cleanup import CleanupReport
    from marimo_store._cleanup_plan import CleanupPlan
    from marimo_store._entry import EntryMetadata, ExecutionKey
    from marimo_store.cli import Register
    from marimo_store.cli._output import Output


def register(add: Register) -> None:
    cleanup = add(
        "cleanup",
        help="compact the log into a snapshot and drop what the cleanup strategy says",
    )
    cleanup.add_argument("--dry-run", action="store_true", help="change nothing; list the drops")
    add_remote_option(cleanup, "instead, delete the remote's unreferenced objects, under a lease")
    content = cleanup.add_mutually_exclusive_group()
    content.add_argument(
        "--keep-content",
        dest="include_content",
        action="store_false",
        help="skip object GC (by default it deletes the objects no entry references)",
    )
    content.add_argument(
        "--include-content",
        dest="include_content",
        action="store_true",
        help="run object GC (the default; kept for scripts that say so)",
    )
    cleanup.set_defaults(include_content=True)
    limits = cleanup.add_argument_group("strategy overrides (this run only; 'none' lifts a limit)")
    configured, where = _configured_strategy()
    for name, default in strategy_defaults().items():
        value = getattr(configured, name)
        limits.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_limit,
            default=_UNSET,
            metavar=_METAVARS.get(name, "N"),
            help=f"default: {'none' if value is None else value}"
            + (f" (set in {where})" if value != default else ""),
        )
    cleanup.set_defaults(run=run_cleanup)
    clear = add("clear", help="drop every entry and delete the objects they used")
    clear.add_argument("--dry-run", action="store_true", help="change nothing; list the drops")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(run=run_clear)


_METAVARS = {"max_total_content_size": "SIZE", "max_entry_age_days": "DAYS"}


def _configured_strategy() -> tuple[DefaultCleanupStrategy, str]:
    """The strategy the configuration files of the working directory give
    (what `cleanup` uses), and the files that set it; the built-in one when
    they set none or cannot be read (the command itself then says why)."""
    try:
        settings = read_settings(os.getcwd())
    except StoreError:
        return DefaultCleanupStrategy(), ""
    return settings.cleanup_strategy or DefaultCleanupStrategy(), ", ".join(settings.sources)


class _Unset:
    """Marks a strategy option the command line did not give."""


_UNSET = _Unset()


def _limit(text: str) -> int | float | str | None:
    """A strategy value from the command line: a number, a size, or none."""
    if text.strip().lower() in ("none", str(NO_LIMIT)):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text  # a size such as "10GB": the strategy checks it


def _strategy(args: argparse.Namespace, configured: object) -> DefaultCleanupStrategy | None:
    overrides = {
        name: getattr(args, name)
        for name in strategy_defaults()
        if not isinstance(getattr(args, name), _Unset)
    }
    if not overrides:
        return None
    if not isinstance(configured, DefaultCleanupStrategy):
        raise ConfigError(
            "the store's cleanup strategy is not a DefaultCleanupStrategy; "
            f"options {', '.join('--' + n.replace('_', '-') for n in overrides)} cannot apply"
        )
    return configured.replace(**overrides)


def run_cleanup(args: argparse.Namespace, out: Output) -> int:
    if args.remote is not None:
        return run_remote_cleanup(args, out)
    store = open_store(args.store)
    strategy = _strategy(args, store.cleanup_strategy)
    # Names of what is dropped, for the table (read before the entries go).
    labels = {} if out.json_mode else {m.key: m for m in store.entries()}
    if args.dry_run:
        with out.activity("deciding what to drop"):
            plan = store.plan_cleanup(strategy, include_content=args.include_content)
        return _show_report(plan.report, labels, out, plan)
    with out.activity("cleaning up"):
        report = store.cleanup(strategy, include_content=args.include_content)
    return _show_report(report, labels, out)


def run_clear(args: argparse.Namespace, out: Output) -> int:
    store = open_store(args.store)
    labels = {} if out.json_mode else {m.key: m for m in store.entries()}
    if args.dry_run or not args.yes:
        with out.activity("listing the entries"):
            plan = store.plan_cleanup(drop_everything)
        if args.dry_run:
            return _show_report(plan.report, labels, out, plan)
        if not _confirmed(plan.report, store.path, out):
            out.line("cancelled: nothing was deleted")
            return EXIT_FINDINGS
    with out.activity("clearing"):
        report = store.clear()
    return _show_report(report, labels, out)


def _confirmed(plan: CleanupReport, path: str, out: Output) -> bool:
    """Ask on the terminal whether to clear; off a terminal, `--yes` is required."""
    if not sys.stdin.isatty():
        raise InvalidArgumentError(
            f"clear drops every entry of {path}; it asks for confirmation on a terminal, "
            "and elsewhere needs --yes"
        )
    size = size_text(sum(d.content_size for d in plan.dropped))
    out.stderr.write(f"Drop all {len(plan.dropped)} entries ({size}) of {path}? [y/N] ")
    out.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _show_report(
    report: CleanupReport,
    labels: dict[ExecutionKey, EntryMetadata],
    out: Output,
    plan: CleanupPlan | None = None,
) -> int:
    """Print what a cleanup (or clear) did, or (`plan`) would do, as a table
    or as its JSON document."""
    if report.snapshot is None and not report.dry_run and report.skipped:
        raise StoreError(f"cleanup skipped: {'; '.join(report.skipped)}")
    document = cleanup_document(report, plan)
    if out.json_mode:
        out.document(document)
        return EXIT_OK
    for reason in report.skipped:
        out.warning(reason)
    for reason in report.spared:
        out.line(f"spared {reason}")
    if report.dropped:
        _dropped_table(report, labels, out)
    if plan is not None and not report.skipped:
        for line in plan.rewrites():
            out.line(f"would {line}")
    freed = sum(d.content_size for d in report.dropped)
    out.line(
        f"{'would drop' if report.dry_run else 'dropped'} {len(report.dropped)} entries "
        f"({size_text(freed)} of content), kept {report.entries_kept}"
    )
    if not report.dry_run:
        out.line(
            f"snapshot {report.snapshot}; deleted {report.snapshots_deleted} snapshots, "
            f"{report.segments_deleted} log segments, {report.temp_files_deleted} temp files, "
            f"{report.objects_deleted} objects ({size_text(report.bytes_freed)})"
        )
    return 0


def _dropped_table(
    report: CleanupReport, labels: dict[ExecutionKey, EntryMetadata], out: Output
) -> None:
    out.table(
        ("id", "name", "created", "size", "reason"),
        [
            (
                entry_id(dropped.key)[:SHORT_ID],
                label_of(labels[dropped.key]) if dropped.key in labels else dropped.key.block_id,
                time_text(dropped.key.created_at),
                size_text(dropped.content_size),
                dropped.reason,
            )
            for dropped in report.dropped
        ],
        title=("would drop" if report.dry_run else "dropped") + f" {len(report.dropped)} entries",
        right=("size",),
        wrap=("name", "reason"),
    )


def cleanup_document(report: CleanupReport, plan: CleanupPlan | None = None) -> dict[str, Any]:
    """The `cleanup` document (docs/cli.md); `plan` (a dry run's) as `plan`."""
    return {
        "dry_run": report.dry_run,
        "dropped": [
            {
                "id": entry_id(dropped.key),
                **key_document(dropped.key),
                "size": dropped.content_size,
                "reason": dropped.reason,
            }
            for dropped in report.dropped
        ],
        "entries_kept": report.entries_kept,
        "snapshot": report.snapshot,
        "snapshots_deleted": report.snapshots_deleted,
        "segments_deleted": report.segments_deleted,
        "temp_files_deleted": report.temp_files_deleted,
        "objects_deleted": report.objects_deleted,
        "bytes_freed": report.bytes_freed,
        "objects_spared": report.objects_spared,
        "bytes_spared": report.bytes_spared,
        "spared": list(report.spared),
        "skipped": list(report.skipped),
        "plan": None if plan is None else plan_document(plan),
    }


def plan_document(plan: CleanupPlan) -> dict[str, Any]:
    """A dry run's `plan` (docs/cli.md): its steps in words (`describe()`),
    and as data the objects it would collect, the snapshot files it would
    replace and the log segments (bytes of each) its snapshot would hold."""
    return {
        "steps": plan.describe(),
        "include_content": plan.include_content,
        "collected": [{"id": i, "size": size} for i, size in sorted(plan.collected.items())],
        "bytes_collected": sum(plan.collected.values()),
        "snapshots_replaced": list(plan.snapshots),
        "segments": [{"name": name, "bytes": n} for name, n in sorted(plan.segments.items())],
    }
