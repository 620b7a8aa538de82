"""How commands talk: JSON documents, tables, progress, warnings and errors.

One `Output` per run decides once whether it writes for a person or for a
program. With `--json`, stdout carries exactly one JSON document (or, for
`watch`, one per line) and nothing else, so it can be piped into `jq`.
Without it, results are tables drawn by rich. Colour and progress appear
only when stdout is a terminal: redirected output is plain text, the same
on every run, which is what logs and tests need. Warnings and errors always
go to stderr as one line each, never as a traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any, TextIO

    from rich.console import Console

PROGRAM = "marimo-store"
EXIT_OK = 0
EXIT_FINDINGS = 1
"""`verify` found a problem, `doctor` a warning."""
EXIT_ERROR = 2
"""A usage error (argparse exits with 2 too) or a store error."""
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_WIDE = 10_000
"""Table width when stdout is not a terminal: never wrap a row."""


def size_text(count: int) -> str:
    """`1536` -> `"1.5 KiB"`: sizes as disk-usage tools show them."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def time_text(ms: int | None) -> str:
    """A timestamp in ms (UTC) as local time to the second; `-` for none."""
    if ms is None:
        return "-"
    try:
        moment = datetime.datetime.fromtimestamp(ms / 1000).astimezone()
    except (OverflowError, ValueError, OSError):  # a record may hold any u64: years past 9999
        return f"{ms} ms"
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _plain(value: object) -> object:
    """JSON for what `json` cannot write: bytes (user metadata may hold them)
    as hex, anything else as its repr."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return repr(value)


class Output:
    """Where a command's results, warnings and errors go."""

    def __init__(
        self, *, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.interactive = _is_terminal(self.stdout)
        self._console: Console | None = None

    # -- machine-readable ---------------------------------------------------------

    def document(self, document: object) -> None:
        """The command's one JSON document."""
        json.dump(document, self.stdout, indent=2, default=_plain, ensure_ascii=False)
        self.stdout.write("\n")
        self.stdout.flush()

    def json_line(self, document: object) -> None:
        """One JSON document on one line, flushed at once (streams: `watch`)."""
        self.stdout.write(json.dumps(document, default=_plain, ensure_ascii=False) + "\n")
        self.stdout.flush()

    # -- for people -----------------------------------------------------------------

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415 - only human output needs rich

            self._console = Console(
                file=self.stdout,
                force_terminal=self.interactive,
                no_color=not self.interactive,
                color_system="auto" if self.interactive else None,
                width=None if self.interactive else _WIDE,
                markup=False,
                emoji=False,
                highlight=False,
            )
        return self._console

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """One line of text (styled only on a terminal)."""
        self.console.print(text, style=style, soft_wrap=True)

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        right: Sequence[str] = (),
        wrap: Sequence[str] = (),
    ) -> None:
        """A table; `right` names the columns to align right (numbers), `wrap`
        those that may wrap in a narrow terminal (free text: the others, ids,
        times and sizes, stay whole)."""
        from rich import box  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD if self.interactive else box.ASCII2,
            header_style="bold" if self.interactive else "",
            title_style="bold" if self.interactive else "",
        )
        for column in columns:
            table.add_column(
                column, justify="right" if column in right else "left", no_wrap=column not in wrap
            )
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    def fields(self, pairs: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
        """`name: value` lines, names aligned: a record rather than a list."""
        if title:
            self.line(title, style="bold")
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            self.line(f"  {name.ljust(width)}  {value}")

    @contextlib.contextmanager
    def progress(self, description: str, *, unit: str = "") -> Iterator[Callable[[int, int], None]]:
        """A progress bar for a long step; yields `update(done, total)`.

        Only on a terminal and not with `--json`: elsewhere the callback
        does nothing, so logs hold results rather than redraws.
        """
        if self.json_mode or not (self.interactive and _is_terminal(self.stderr)):
            yield _ignore
            return
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TimeRemainingColumn,
        )

        amount = DownloadColumn(binary_units=True) if unit == "bytes" else MofNCompleteColumn()
        with Progress(
            "{task.description}",
            BarColumn(),
            amount,
            TimeRemainingColumn(),
            console=Console(file=self.stderr),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            yield update

    @contextlib.contextmanager
    def activity(self, description: str) -> Iterator[None]:
        """A spinner for a step whose length is unknown (same rules as `progress`)."""
        if self.json_mode or not (self.interactive and _is_terminal(self.stderr)):
            yield
            return
        from rich.console import Console  # noqa: PLC0415

        with Console(file=self.stderr).status(description):
            yield

    # -- stderr ---------------------------------------------------------------------

    def error(self, message: str) -> None:
        """A one-line error on stderr (the exit code says the rest)."""
        self._stderr_line(f"{PROGRAM}: error: {message}")

    def warning(self, message: str) -> None:
        """A one-line warning on stderr."""
        self._stderr_line(f"{PROGRAM}: warning: {message}")

    def _stderr_line(self, text: str) -> None:
        self.stderr.write(" ".join(text.split()) + "\n")
        self.stderr.flush()

    @contextlib.contextmanager
    def warnings_as_lines(self) -> Iterator[None]:
        """Show warnings (a damaged file's `StoreWarning`) as one line each,
        without the source line Python would print under them."""
        with warnings.catch_warnings():
            warnings.simplefilter("default")

            def show(message: Warning | str, *_: Any, **__: Any) -> None:
                self.warning(str(message).removeprefix("marimo_store: "))

            warnings.showwarning = show
            yield


def _ignore(done: int, total: int) -> None:
    """The progress callback where no progress is shown."""


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
