"""The `marimo-store` command: look into a store, clean it up, check it.

    marimo-store [--store PATH] [--json] COMMAND ...

Also `python -m marimo_store`. docs/cli.md describes every command, its
JSON document and its exit codes: 0 done, 1 problems found (`verify`,
`doctor`), 2 a usage or store error, reported in one line on stderr (never
a traceback: every `StoreError` and `OSError` is caught here).

argparse (standard library) parses: the commands are few and flat. rich
draws tables and progress bars; it is imported only when a person reads
the output, never by `import marimo_store`.
"""

from __future__ import annotations

import argparse
import sys

from marimo_store._errors import StoreError
from marimo_store.cli import _check, _inspect, _keygen, _maintain, _migrate, _remote, _watch
from marimo_store.cli._output import EXIT_ERROR, EXIT_OK, PROGRAM, Output

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

    Register: TypeAlias = Callable[..., argparse.ArgumentParser]
    """`add(name, *, help, store=True)`: how a command group adds its commands."""

_COMMAND_GROUPS = (_inspect, _maintain, _check, _watch, _migrate, _keygen, _remote)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (each group module registers its own)."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Inspect, clean up and check a marimo_store store.",
        epilog="The store is the one App() would use in the working directory, "
        "unless --store gives its path. See docs/cli.md.",
    )
    _common_options(parser, store=True, top_level=True)
    from marimo_store import __version__  # noqa: PLC0415

    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, *, help: str, store: bool = True) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help, description=help)
        _common_options(command, store=store, top_level=False)
        return command

    for group in _COMMAND_GROUPS:
        group.register(add)
    return parser


def _common_options(parser: argparse.ArgumentParser, *, store: bool, top_level: bool) -> None:
    """`--store` and `--json`, before or after the command: on a command their
    default is SUPPRESS, so that the value given before it stays unless
    they are given again."""
    if store:
        parser.add_argument(
            "--store",
            metavar="PATH",
            default=None if top_level else argparse.SUPPRESS,
            help="the store directory (default: resolved like App() from here)",
        )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="print one JSON document (schemas: docs/cli.md)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = build_parser().parse_args(argv)
    out = Output(json_mode=args.json)
    with out.warnings_as_lines():
        try:
            code: int = args.run(args, out)
        except BrokenPipeError:  # `marimo-store ls | head`: the reader has what it wanted
            _silence_stdout()
            return EXIT_OK
        except (StoreError, OSError) as error:
            out.error(str(error) or type(error).__name__)
            return EXIT_ERROR
        except KeyboardInterrupt:
            out.error("interrupted")
            return EXIT_ERROR
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail again."""
    import os  # noqa: PLC0415

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
