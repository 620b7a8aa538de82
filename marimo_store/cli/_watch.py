"""`watch`: entries as they arrive from other processes and machines.

Polls: every `--interval` seconds the store reads what other writers
appended to their log segments since the last look (only new bytes), and
each entry not seen before is printed, one line (or JSON document) each, as
`tail -f` does for a log. It only reads, and unpickles nothing.
`--timeout` and `--count` end it on their own (scripts, tests); Ctrl-C ends
it otherwise, with exit code 0.
"""

from __future__ import annotations

import time

from marimo_store.cli._numbers import positive_count, positive_seconds, seconds
from marimo_store.cli._output import size_text, time_text
from marimo_store.cli._target import SHORT_ID, entry_summary, open_store

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from marimo_store._entry import EntryMetadata
    from marimo_store.cli import Register
    from marimo_store.cli._output import Output


def register(add: Register) -> None:
    watch = add("watch", help="print entries as other processes and machines add them")
    watch.add_argument(
        "--interval", type=positive_seconds, default=0.5, metavar="SECONDS", help="default: 0.5"
    )
    watch.add_argument("--timeout", type=seconds, metavar="SECONDS", help="stop after this long")
    watch.add_argument("--count", type=positive_count, metavar="N", help="stop after N new entries")
    watch.add_argument("--existing", action="store_true", help="first list the entries there are")
    watch.set_defaults(run=run_watch)


def run_watch(args: argparse.Namespace, out: Output) -> int:
    store = open_store(args.store)
    present = store.entries()
    seen = {metadata.key for metadata in present}
    if args.existing:
        for metadata in present:
            _show(metadata, out)
    if not out.json_mode:
        out.line(f"watching {store.path} for new entries (Ctrl-C to stop)", style="dim")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    arrived = 0
    try:
        while args.count is None or arrived < args.count:
            store.refresh()
            for metadata in store.entries():
                if metadata.key not in seen:
                    seen.add(metadata.key)
                    _show(metadata, out)
                    arrived += 1
            if args.count is not None and arrived >= args.count:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            pause = args.interval
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))
    except KeyboardInterrupt:
        pass
    return 0


def _show(metadata: EntryMetadata, out: Output) -> None:
    summary = entry_summary(metadata)
    if out.json_mode:
        out.json_line(summary)
        return
    variables = ", ".join(f"{name} ({form})" for name, form in summary["variables"].items())
    out.line(
        f"{time_text(metadata.created_at)}  {summary['id'][:SHORT_ID]}  {summary['kind']:<5}  "
        f"{summary['label']}  {size_text(summary['size'])}  {variables}"
    )
