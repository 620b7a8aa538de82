"""What every benchmark script shares: argument types, the scratch directory,
timing in alternating turns, the description of the machine, and how
figures are written.

The scripts are modules of the `benchmarks` package and import this one
(and each other) by their full name; each is run from the repository root
as `python -m benchmarks.<script>`, the way benchmarks/run.py runs them all
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from marimo_store import FsPersistentStore

T = TypeVar("T")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def alternating(items: Sequence[T], rep: int) -> Sequence[T]:
    """`items` in order on even repetitions, reversed on odd ones, so that
    whatever the first of them pays for (page faults, write-back) is shared."""
    return items if rep % 2 == 0 else items[::-1]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def disk_usage(path: str) -> tuple[int, int, int]:
    """(apparent bytes of the files, allocated bytes of files and directories, file count)."""
    apparent = 0
    allocated = os.lstat(path).st_blocks * 512
    files = 0
    for root, directories, names in os.walk(path):
        for name in directories:
            allocated += os.lstat(os.path.join(root, name)).st_blocks * 512
        for name in names:
            stat = os.lstat(os.path.join(root, name))
            apparent += stat.st_size
            allocated += stat.st_blocks * 512
            files += 1
    return apparent, allocated, files


def open_store(path: str, **options: Any) -> FsPersistentStore:
    """A store that does no cleanup at exit (nothing to measure there)."""
    return FsPersistentStore(path, cleanup_on_exit=False, **options)


def seconds_text(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def micros_text(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def bytes_text(count: float) -> str:
    return f"{count:,.0f} B"


def ratio_text(mine: float, theirs: float) -> str:
    return f"{mine / theirs:.2f}x" if theirs > 0 else "n/a"


def filesystem_of(path: str) -> str:
    """The file system type of the mount holding `path` (Linux), else "unknown"."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as file:
            for line in file:
                fields = line.split()
                mount = fields[1]
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if len(fields) > 2 and inside and len(mount) >= len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def machine_info(root: str) -> list[str]:
    import msgpack
    import xxhash

    import marimo_store

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as file:
            kib = int(file.readline().split()[1])
            memory = f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return [
        f"- machine: {platform.platform()}, {cpu}, nproc {usable} "
        f"(cpu_count {os.cpu_count()}), memory {memory}",
        f"- python {platform.python_version()} ({sys.executable}), numpy {np.__version__}",
        f"- marimo_store {marimo_store.__version__} (commit {commit}, working tree), "
        f"xxhash {xxhash.VERSION}, msgpack {'.'.join(map(str, msgpack.version))}",
        f"- files under {root} ({filesystem_of(root)}, "
        f"{shutil.disk_usage(root).free / 1e9:.0f} GB free)",
    ]


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


@contextlib.contextmanager
def scratch_directory(parent: str | None, prefix: str) -> Iterator[str]:
    """A fresh directory under `parent` (default: .bench-tmp in the repository),
    removed afterwards with `parent` if this made it."""
    parent = os.path.abspath(parent) if parent else os.path.join(REPO, ".bench-tmp")
    made_parent = not os.path.exists(parent)
    os.makedirs(parent, exist_ok=True)
    root = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if made_parent:
            shutil.rmtree(parent, ignore_errors=True)


def seconds_per_call(
    functions: dict[str, Callable[[], object]], repeat: int, batch_seconds: float
) -> dict[str, list[float]]:
    """Seconds per call of each function, one value per round: each is called
    once first (a cache's miss), then a round times a batch of calls lasting
    about `batch_seconds`; the functions take turns, in alternating order."""
    calls: dict[str, int] = {}
    for name, function in functions.items():
        function()
        start = time.perf_counter()
        for _ in range(100):
            function()
        calls[name] = max(100, int(batch_seconds / ((time.perf_counter() - start) / 100)))
    names = list(functions)
    per_call: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeat):
        for name in alternating(names, rep):
            function, count = functions[name], calls[name]
            start = time.perf_counter()
            for _ in range(count):
                function()
            per_call[name].append((time.perf_counter() - start) / count)
    return per_call


def scratch_arguments(parser: argparse.ArgumentParser, repeat: int = 5) -> None:
    """`--repeat` and `--dir` (see `scratch_directory`), as every benchmark takes them."""
    parser.add_argument("--repeat", type=positive, default=repeat)
    parser.add_argument(
        "--dir", help="parent of the scratch directory (default: .bench-tmp in the repository)"
    )


# -- sections of docs/benchmarks.md that slow benchmarks publish ----------------------

SCALE_SECTION = "## Scale"
"""benchmarks/scale.py's section (stores of up to a million entries)."""
REMOTE_SECTION = "## Remote"
"""benchmarks/remote.py's section (it needs an S3-compatible server)."""
PUBLISHED_ELSEWHERE = (SCALE_SECTION, REMOTE_SECTION)
"""The sections benchmarks/run.py keeps when it writes the page anew."""


def _section_bounds(page: str, heading: str) -> tuple[int, int] | None:
    """Where the section `heading` of `page` starts and ends (the next "## ")."""
    start = page.find("\n" + heading + "\n")
    if start < 0:
        return None
    end = page.find("\n## ", start + 1)
    return start + 1, (end + 1 if end >= 0 else len(page))


def published_section(path: str, heading: str) -> str:
    """The section `heading` of the page at `path` ("" if none):
    benchmarks/run.py keeps the sections slower benchmarks publish."""
    try:
        with open(path, encoding="utf-8") as file:
            page = file.read()
    except FileNotFoundError:
        return ""
    bounds = _section_bounds(page, heading)
    return "" if bounds is None else page[bounds[0] : bounds[1]]


def publish_section(text: str, path: str, heading: str) -> None:
    """Replace the section `heading` of `path` with `text` (or append it)."""
    with open(path, encoding="utf-8") as file:
        page = file.read()
    bounds = _section_bounds(page, heading)
    if bounds is None:
        page = page.rstrip("\n") + "\n\n" + text
    else:
        page = page[: bounds[0]] + text + page[bounds[1] :]
    with open(path, "w", encoding="utf-8") as file:
        file.write(page)
