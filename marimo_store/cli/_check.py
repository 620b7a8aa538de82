"""`verify` and `doctor`: is the store whole, and is it kept somewhere safe?

Both are thin: `FsPersistentStore.verify()` and `.doctor()` (and, for
`verify --remote`, `RemoteStore.verify()`) do the work;
this module turns their reports into a table or a JSON document and into
the exit code a script can test (1 when something was found). Neither
unpickles anything, so both are safe on a folder others can write.
"""

from __future__ import annotations

import os

from marimo_store._errors import NotFoundError
from marimo_store._marimo_config import ignored_store_finding
from marimo_store.cli._output import EXIT_FINDINGS, EXIT_OK, size_text
from marimo_store.cli._remote import add_remote_option, open_remote
from marimo_store.cli._target import open_store

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from marimo_store._findings import Finding, VerifyReport
    from marimo_store.cli import Register
    from marimo_store.cli._output import Output


def register(add: Register) -> None:
    verify = add(
        "verify",
        help="rehash every object and check every snapshot, segment and entry (exit 1: problems)",
    )
    verify.add_argument(
        "--repair",
        action="store_true",
        help="also fix what is found: rename, quarantine, new snapshot",
    )
    verify.add_argument(
        "--drop-dangling",
        action="store_true",
        help="with --repair, drop entries whose objects are missing now "
        "(by default they stay, as misses, until they have dangled 7 days here)",
    )
    add_remote_option(
        verify,
        "verify the remote instead: rehash its objects, decode its segments "
        "(--repair: under its lease)",
    )
    verify.set_defaults(run=run_verify)
    doctor = add(
        "doctor",
        help="where and how the store is kept: sync folders, network drives, "
        "conflicted copies, clocks (exit 1: a warning)",
    )
    doctor.set_defaults(run=run_doctor)


def run_verify(args: argparse.Namespace, out: Output) -> int:
    if args.remote is not None:
        _, remote = open_remote(args)
        with out.progress("hashing the remote's objects", unit="bytes") as update:
            report = remote.verify(repair=args.repair, progress=update)
    else:
        store = open_store(args.store)
        with out.progress("hashing objects", unit="bytes") as update:
            report = store.verify(
                repair=args.repair, drop_dangling=args.drop_dangling, progress=update
            )
    if out.json_mode:
        out.document(verify_document(report))
    else:
        _show_verify(report, out)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def verify_document(report: VerifyReport) -> dict[str, Any]:
    """The `verify` document (docs/cli.md)."""
    return {
        "ok": report.ok,
        "repaired": report.repaired,
        "objects_checked": report.objects_checked,
        "bytes_hashed": report.bytes_hashed,
        "snapshots_checked": report.snapshots_checked,
        "segments_checked": report.segments_checked,
        "entries_checked": report.entries_checked,
        "problems": [
            {
                "kind": problem.kind,
                "path": problem.path,
                "detail": problem.detail,
                "action": problem.action,
            }
            for problem in report.problems
        ],
        "snapshot": report.snapshot,
        "skipped": list(report.skipped),
    }


def _show_verify(report: VerifyReport, out: Output) -> None:
    out.line(
        f"checked {report.objects_checked} objects ({size_text(report.bytes_hashed)} hashed), "
        f"{report.snapshots_checked} snapshots, {report.segments_checked} log segments, "
        f"{report.entries_checked} entries"
    )
    for reason in report.skipped:
        out.warning(reason)
    if report.ok:
        out.line("no problems found")
        return
    columns = ("kind", "path", "detail") + (("action",) if report.repaired else ())
    out.table(
        columns,
        [
            (problem.kind, problem.path or "-", problem.detail)
            + ((problem.action or "-",) if report.repaired else ())
            for problem in report.problems
        ],
        title=f"{len(report.problems)} problems" + (" (repaired)" if report.repaired else ""),
        wrap=("detail", "action"),
    )
    if report.repaired:
        fresh = f"fresh snapshot {report.snapshot}; " if report.snapshot else ""
        out.line(f"{fresh}run verify again to confirm")
    else:
        out.line("marimo-store verify --repair fixes them (reads already skip damaged files)")


def run_doctor(args: argparse.Namespace, out: Output) -> int:
    try:
        findings = open_store(args.store).doctor()
    except NotFoundError:
        # No store yet: perhaps because marimo never used it. Say why, if so.
        ignored = ignored_store_finding(os.getcwd())
        if ignored is None:
            raise
        findings = [ignored]
    if out.json_mode:
        out.document({"findings": [finding_document(finding) for finding in findings]})
    elif not findings:
        out.line("nothing to report")
    else:
        for finding in findings:
            out.line(f"{finding.severity} [{finding.code}]: {finding.message}")
            for path in finding.paths:
                out.line(f"    {path}")
    warned = any(finding.severity == "warning" for finding in findings)
    return EXIT_FINDINGS if warned else EXIT_OK


def finding_document(finding: Finding) -> dict[str, Any]:
    """One finding of the `doctor` document (docs/cli.md)."""
    return {
        "code": finding.code,
        "severity": finding.severity,
        "message": finding.message,
        "paths": list(finding.paths),
    }
