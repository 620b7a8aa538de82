"""Every workload, every system, one run: writes docs/benchmarks.md.

Systems, each on the same machine in the same run:

- **marimo_store**: `persistent_cache` (and `FsPersistentStore` for the
  store-level rows);
- **joblib.Memory** and **diskcache** (`Cache.memoize`), the usual peers;
- **marimo FileStore**: marimo's own `mo.persistent_cache` with its default
  store, in a notebook run as a script (notebooks/marimo_filestore.py), on
  the same functions;
- **floor**: what the hardware allows for the row, where one exists:
  `np.save` / `np.load(mmap_mode="r")` of the same array, one xxh3-128 pass
  over an argument, one copy of a result on disk, `python -c pass`, one
  pickle file per entry, a tiny hit's `get` of its key once that key is
  known (the hit without hashing the call).

Workloads, from the benchmarks of the earlier issues (imported as modules,
not copied: core.py, open.py, cache.py, signing.py), plus two that every
cache has in common here (many small results; one large result):

- tiny hit (`add(1, 2)`), per call: cache.py;
- many small results: N calls with distinct arguments returning a small
  dict, per call as misses then as hits, and disk bytes per result;
- large argument hit (`first(x)` with an S MiB array): cache.py;
- large result: a call returning an S MiB array, as a miss (storing it) and
  as a hit in the same process (loading it; touched); the function reads the
  array from a global, which marimo_store is told to ignore (it would hash
  it on every call: a global a function reads is part of its key);
- 100 calls returning one equal 10 MiB array: disk used (cache.py);
- a new process that imports, opens a store of N entries and reads one:
  open.py (marimo_store and diskcache);
- store level against the floor: put and get of an S MiB array, small
  entries against one pickle file each: core.py;
- marimo_store's own costs of signing: signing.py.

Every cell is a median over --repeat rounds (systems take turns in an
alternating order within a round; marimo's notebook runs its rounds in its
own process); ratio = system / marimo_store, lower is better.

    .venv/bin/python -m benchmarks.run            # full: writes docs/benchmarks.md + PNG
    .venv/bin/python -m benchmarks.run --quick    # under 2 minutes; prints only

The page's "## Scale" section is benchmarks/scale.py's (too slow for this
run: it builds stores of up to a million entries) and its "## Remote"
section benchmarks/remote.py's (it needs an S3-compatible server); a full
run keeps both.

Run from the repository root: the scripts are modules of the `benchmarks`
package and import each other (and their helpers, `_common.py`) by full
name; each also runs on its own, the same way (`python -m benchmarks.core`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import _common as common
from benchmarks import cache as cache_bench
from benchmarks import core, signing
from benchmarks import open as open_bench
from marimo_store import generate_signing_key, persistent_cache

HERE = os.path.dirname(os.path.abspath(__file__))

SYSTEMS = ("marimo_store", "joblib.Memory", "diskcache", "marimo FileStore", "floor")
PEERS = SYSTEMS[1:4]
_LIBRARY = {"marimo_store": "marimo_store", "joblib.Memory": "joblib.Memory"}
_LIBRARY["diskcache memoize"] = "diskcache"
_LIBRARY["floor"] = "floor"
NOTEBOOK = os.path.join(HERE, "notebooks", "marimo_filestore.py")
MIB = 1024 * 1024


class Settings:
    """How big and how often: the full run, or --quick."""

    def __init__(self, quick: bool, repeat: int | None) -> None:
        self.quick = quick
        self.repeat = repeat or (3 if quick else 5)
        self.batch_seconds = 0.1 if quick else 0.5
        self.small = 200 if quick else 2000
        self.argument_mib = [64] if quick else [1024, 256]
        self.result_mib = 64 if quick else 1024
        self.open_entries = 1000 if quick else 100_000
        self.store_entries = 2000 if quick else 100_000
        self.digest_mib = 16 if quick else 256

    def command(self) -> str:
        """The command line that measures these settings."""
        return f"python -m benchmarks.run{' --quick' if self.quick else ''} --repeat {self.repeat}"


class Row:
    """One workload: per system, samples (seconds or bytes) or why it has none."""

    def __init__(self, key: str, workload: str, unit: str, floor: str = "") -> None:
        self.key = key
        self.workload = workload
        self.unit = unit
        self.floor = floor
        self.values: dict[str, list[float] | str] = {}

    def median(self, system: str) -> float | None:
        values = self.values.get(system)
        return statistics.median(values) if isinstance(values, list) and values else None

    def fastest(self, systems: Sequence[str]) -> str | None:
        """The system of `systems` with the smallest median (None: none has one)."""
        medians = [(m, s) for s in systems if (m := self.median(s)) is not None]
        return min(medians)[1] if medians else None

    def fastest_peer(self) -> str | None:
        """The fastest peer, if it beats marimo_store (the floor does not count)."""
        peer = self.fastest(PEERS)
        ours = self.median("marimo_store")
        if peer is None or ours is None or (self.median(peer) or 0.0) >= ours:
            return None
        return peer


# -- large results: a cached function returning a big array ------------------------------

_PREPARED: dict[tuple[int, int], np.ndarray[Any, Any]] = {}
_BASE: list[np.ndarray[Any, Any]] = []


def prepare_result(version: int, size_mib: int) -> None:
    """Make (untimed) the array `produce(version, size_mib)` returns: random
    content made once, its first element set to `version`, so that each
    version is new content no system can deduplicate away. Size 0 frees it."""
    _PREPARED.clear()
    if size_mib <= 0:
        _BASE.clear()
        return
    if not _BASE or _BASE[0].nbytes != size_mib * MIB:
        _BASE[:] = [np.random.default_rng(2).random(size_mib * MIB // 8)]
    _BASE[0][0] = float(version)
    _PREPARED[(version, size_mib)] = _BASE[0]


def produce(version: int, size_mib: int) -> np.ndarray[Any, Any]:
    """The large result (prepared by `prepare_result`): computing it costs nothing,
    so a miss measures what storing it costs."""
    return _PREPARED[(version, size_mib)]


def touch_result(value: np.ndarray[Any, Any], version: int) -> None:
    """Check a loaded result and read its end (forces whatever a lazy load deferred)."""
    if float(value[0]) != float(version):
        raise SystemExit(f"a cache returned a wrong large result ({value[0]} != {version})")
    float(np.asarray(value[-8:]).sum())


def large_results(root: str, size_mib: int, repeat: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of the miss and of the hit of `produce`, per system and round;
    the floor is `np.save` and `np.load(mmap_mode="r")` of the same array."""
    libraries = cache_bench.wrappers(os.path.join(root, "result"))
    cached = {_LIBRARY[name]: wrap(produce) for name, (_, wrap) in libraries.items()}
    # `produce` reads the prepared array from a global, which persistent_cache
    # would hash on every call (a global a function reads is one of its inputs);
    # the other systems never look at globals. What is measured is the result.
    cached["marimo_store"] = persistent_cache(
        store=common.open_store(libraries["marimo_store"][0]), ignore=("_PREPARED",)
    )(produce)
    times: dict[str, dict[str, list[float]]] = {
        name: {"miss": [], "hit": []} for name in (*cached, "floor")
    }
    for rep in range(repeat):
        common.progress(f"large result: round {rep + 1}/{repeat}")
        prepare_result(rep, size_mib)
        # A new file each round, as the caches write: rewriting one file is
        # several times faster than writing a new one (its pages are reused).
        npy = os.path.join(root, f"result-{rep}.npy")
        for name in common.alternating([*cached, "floor"], rep):
            os.sync()
            start = time.perf_counter()
            if name == "floor":
                np.save(npy, produce(rep, size_mib))
            else:
                cached[name](rep, size_mib)
            times[name]["miss"].append(time.perf_counter() - start)
            start = time.perf_counter()
            if name == "floor":
                touch_result(np.load(npy, mmap_mode="r"), rep)
            else:
                touch_result(cached[name](rep, size_mib), rep)
            times[name]["hit"].append(time.perf_counter() - start)
        os.remove(npy)
    prepare_result(-1, 0)
    return times


# -- many small results --------------------------------------------------------------------


def small_results(root: str, count: int, repeat: int) -> dict[str, dict[str, list[float]]]:
    """Per system: seconds per call of `count` misses and of the same calls
    as hits (new arguments each round), and disk bytes per stored result."""
    libraries = cache_bench.wrappers(os.path.join(root, "small"))
    cached = {_LIBRARY[name]: wrap(core.small_value) for name, (_, wrap) in libraries.items()}
    times: dict[str, dict[str, list[float]]] = {name: {"miss": [], "hit": []} for name in cached}
    for rep in range(repeat):
        common.progress(f"small results: round {rep + 1}/{repeat}")
        calls = range(rep * count, (rep + 1) * count)
        for name in common.alternating(list(cached), rep):
            function = cached[name]
            for kind in ("miss", "hit"):
                start = time.perf_counter()
                for i in calls:
                    function(i)
                times[name][kind].append((time.perf_counter() - start) / count)
    for name, (directory, _) in libraries.items():
        apparent, allocated, _ = common.disk_usage(directory)
        times[_LIBRARY[name]]["bytes"] = [apparent / (count * repeat)]
        times[_LIBRARY[name]]["du"] = [allocated / (count * repeat)]
    return times


# -- marimo's own cache ------------------------------------------------------------------


def marimo_filestore(root: str, settings: Settings) -> dict[str, list[float]]:
    """Run notebooks/marimo_filestore.py as a script in a fresh directory
    (marimo's default store is `__marimo__/cache` beside it); its results."""
    directory = os.path.join(root, "marimo")
    home = os.path.join(directory, "home")
    os.makedirs(home)
    notebook = shutil.copy(NOTEBOOK, directory)
    out = os.path.join(directory, "results.json")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MARIMO", "XDG_"))},
        "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "PYTHONPATH": os.pathsep.join([common.REPO, os.environ.get("PYTHONPATH", "")]),
        "BENCH_OUT": out,
        "BENCH_REPEAT": str(settings.repeat),
        "BENCH_BATCH_SECONDS": str(settings.batch_seconds),
        "BENCH_SMALL": str(settings.small),
        "BENCH_ARG_SIZES": ",".join(map(str, settings.argument_mib)),
        "BENCH_RESULT_MIB": str(settings.result_mib),
    }
    common.progress("marimo FileStore: running the notebook")
    done = subprocess.run(
        [sys.executable, notebook],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not os.path.exists(out):
        raise SystemExit(f"the marimo notebook failed ({done.returncode}):\n{done.stderr}")
    with open(out, encoding="utf-8") as file:
        results: dict[str, list[float]] = json.load(file)
    shutil.rmtree(directory, ignore_errors=True)
    return results


# -- the run ------------------------------------------------------------------------------


def measure(root: str, settings: Settings) -> tuple[list[Row], list[Row]]:
    """Every workload; (comparison rows, marimo_store's own signing rows)."""
    repeat = settings.repeat
    rows: list[Row] = []
    common.progress("tiny hits")
    tiny = cache_bench.tiny_hits(os.path.join(root, "tiny"), repeat, settings.batch_seconds)
    small = small_results(root, settings.small, repeat)
    arguments = {
        size: cache_bench.large_hits(os.path.join(root, "arguments"), size, repeat)
        for size in settings.argument_mib
    }
    result = large_results(root, settings.result_mib, repeat)
    equal = cache_bench.equal_results(root)
    marimo = marimo_filestore(root, settings)

    row = Row("tiny", "tiny hit `add(1, 2)`, per call", "s", "get of the known key")
    row.values = {_LIBRARY[name]: values for name, values in tiny.items()}
    row.values["marimo FileStore"] = marimo["tiny hit"]
    rows.append(row)

    for kind, label in (("miss", "miss (compute + store)"), ("hit", "hit")):
        row = Row(f"small {kind}", f"{settings.small} small results: {label}, per call", "s")
        row.values = {name: times[kind] for name, times in small.items()}
        row.values["marimo FileStore"] = marimo[f"small {kind}"]
        rows.append(row)
    for kind, label in (("bytes", "apparent (file sizes)"), ("du", "allocated (du)")):
        row = Row(f"small {kind}", f"small results: disk per result, {label}", "B")
        row.values = {name: times[kind] for name, times in small.items()}
        row.values["marimo FileStore"] = marimo[f"small {kind}"]
        rows.append(row)

    for size, (hashing, outcomes) in arguments.items():
        row = Row("argument", f"{size} MiB argument: hit", "s", "one xxh3-128 pass")
        row.values = {_LIBRARY[name]: outcome for name, outcome in outcomes.items()}
        row.values["marimo FileStore"] = marimo[f"argument {size}"]
        row.values["floor"] = hashing
        rows.append(row)

    mib = settings.result_mib
    for kind, label, floor in (
        ("miss", "miss (store it)", "np.save"),
        ("hit", "hit, same process", 'np.load(mmap_mode="r")'),
    ):
        row = Row(f"result {kind}", f"{mib} MiB result: {label}", "s", floor)
        row.values = {name: times[kind] for name, times in result.items()}
        row.values["marimo FileStore"] = marimo[f"result {kind}"]
        rows.append(row)

    row = Row(
        "equal", f"{cache_bench.EQUAL_RESULT_CALLS} calls, one equal 10 MiB result: disk", "B"
    )
    row.floor = "one copy"
    row.values = {_LIBRARY[name]: [float(usage[0])] for name, usage in equal.items()}
    row.values["marimo FileStore"] = marimo["equal bytes"]
    row.values["floor"] = [float(cache_bench.RESULT_BYTES)]
    rows.append(row)

    common.progress(f"cold processes with {settings.open_entries} entries")
    opened = open_bench.measure(
        settings.open_entries, repeat, os.path.join(root, "open"), random.Random(0)
    )
    row = Row(
        "open",
        f"new process: import, open {settings.open_entries:,} entries, one get",
        "s",
        "python -c pass",
    )
    row.values = {
        "marimo_store": [opened["marimo whole"]],
        "diskcache": [opened["diskcache whole"]],
        "floor": [opened["baseline"]],
    }
    rows.append(row)

    rows += store_rows(root, settings)
    return rows, signing_rows(root, settings)


def store_rows(root: str, settings: Settings) -> list[Row]:
    """core.py: the store's own put and get against the floor."""
    mib, count = settings.result_mib, settings.store_entries
    directory = os.path.join(root, "core")
    os.makedirs(directory)
    large = core.large_workload(directory, mib, settings.repeat, 0)
    small = core.small_workload(directory, count, settings.repeat, 0)
    rows = []
    for key, label, ours, floor, floor_label in (
        ("put", "put (flush)", "put flush", "np.save", "np.save"),
        ("put fsync", "put (fsync)", "put fsync", "np.save+fsync", "np.save + fsync"),
        ("get cold", "get mmap, new process", "get mmap cold", "np.load mmap cold", "np.load mmap"),
        (
            "get unverified",
            "get mmap, new process, object not yet verified here",
            "get mmap cold unverified",
            "np.load mmap cold unverified",
            "np.load mmap",
        ),
        ("get eager", "get, new process", "get eager cold", "np.load eager cold", "np.load"),
    ):  # fmt: skip
        row = Row(f"store {key}", f"store: {mib} MiB array, {label}", "s", floor_label)
        row.values = {"marimo_store": large.values[ours], "floor": large.values[floor]}
        rows.append(row)
    for key, label, unit, ours, floor in (
        ("put small", "put, per entry", "s", "store put", "pickle put"),
        ("get small", "get, per entry", "s", "store get", "pickle get"),
        ("bytes small", "disk bytes per entry", "B", "store apparent", "pickle apparent"),
    ):
        row = Row(
            f"store {key}", f"store: {count:,} small entries, {label}", unit, "a pickle file each"
        )
        row.values = {"marimo_store": small.values[ours], "floor": small.values[floor]}
        rows.append(row)
    return rows


def signing_rows(root: str, settings: Settings) -> list[Row]:
    """signing.py: what signing and verifying cost marimo_store itself."""
    key = os.path.join(root, "signing", "key.pem")
    generate_signing_key(key)
    common.progress("signing: tiny hits")
    tiny = signing.tiny_hits(
        os.path.join(root, "signing"), key, settings.repeat, settings.batch_seconds
    )
    digests = signing.digest_speeds(settings.digest_mib, settings.repeat)
    rows = []
    for mode, values in tiny.items():
        row = Row("signing", f"tiny hit, {mode}", "s")
        row.values = {"marimo_store": values}
        rows.append(row)
    for name, values in digests.items():
        row = Row("digest", f"{name} of {settings.digest_mib} MiB", "s")
        row.values = {"marimo_store": values}
        rows.append(row)
    return rows


# -- the report ----------------------------------------------------------------------------

WHY = {
    "tiny": "a hit hashes the call (the function's code digest, the globals it reads, its "
    "arguments) and looks the key up in the store's index; diskcache's memoize reads one "
    "SQLite row keyed by the arguments",
    "small hit": "as for the tiny hit: the per-call hashing and lookup dominate a small hit",
    "small miss": "a miss hashes the call as a hit does, then appends one checksummed record "
    "to the log; diskcache inserts one SQLite row",
    "small bytes": "each result is a log record holding its key (two 32-digit hashes) and, "
    "for explain(), the function's name and the hashes of its code and of each argument "
    "(about 150 bytes); joblib.Memory keeps a call in a directory of its own (two small "
    "files), whose blocks only the allocated size (du) counts",
    "small du": "each result is a record in a log segment, with no file of its own",
}
"""Why marimo_store is where it is on each workload (cited where it is not the fastest)."""


def value_text(value: float, unit: str) -> str:
    if unit == "B":
        if value >= MIB:
            return f"{value / MIB:,.1f} MiB"
        return f"{value:,.0f} B"
    return common.seconds_text(value)


def cell(row: Row, system: str) -> str:
    values = row.values.get(system)
    if values is None:
        return "-"
    if isinstance(values, str):
        return values.split(":", 1)[0]  # "fails"
    median = statistics.median(values)
    text = value_text(median, row.unit)
    ours = row.median("marimo_store")
    if system != "marimo_store" and ours:
        text += f" ({median / ours:.2f}x)"
    return f"**{text}**" if system == row.fastest(SYSTEMS[:4]) else text


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| workload | " + " | ".join(SYSTEMS) + " | floor is |",
        "|---|" + "---:|" * len(SYSTEMS) + "---|",
    ]
    for row in rows:
        cells = [cell(row, system) for system in SYSTEMS]
        lines.append(f"| {row.workload} | " + " | ".join(cells) + f" | {row.floor or '-'} |")
    return lines


def own_costs(rows: Sequence[Row]) -> list[str]:
    reference = rows[0].median("marimo_store") or 1.0
    lines = ["| marimo_store | median | ratio |", "|---|---:|---:|"]
    digest_reference = next((r.median("marimo_store") for r in rows if r.key == "digest"), 1.0)
    for row in rows:
        median = row.median("marimo_store") or 0.0
        base = reference if row.key == "signing" else digest_reference or 1.0
        lines.append(f"| {row.workload} | {value_text(median, row.unit)} | {median / base:.2f}x |")
    return lines


def not_fastest(rows: Sequence[Row]) -> list[str]:
    lines = []
    for row in rows:
        peer = row.fastest_peer()
        if peer is not None:
            ours, theirs = row.median("marimo_store"), row.median(peer)
            assert ours is not None and theirs is not None
            better = "smaller" if row.unit == "B" else "faster"
            lines.append(
                f"- **{row.workload}**: {peer} is {ours / theirs:.2f}x {better} "
                f"({value_text(theirs, row.unit)} against {value_text(ours, row.unit)}); "
                f"{WHY.get(row.key, '')}."
            )
    return lines or ["- none: marimo_store is the fastest system on every workload."]


def chart(rows: Sequence[Row], path: str) -> None:
    """Horizontal bars: each system's time (or bytes) relative to marimo_store, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row.median("marimo_store")]
    figure, axes = plt.subplots(figsize=(10, 0.55 * len(shown) + 1.5))
    height = 0.8 / len(SYSTEMS)
    for index, system in enumerate(SYSTEMS):
        positions, ratios = [], []
        for place, row in enumerate(shown):
            median, ours = row.median(system), row.median("marimo_store")
            if median is not None and ours:
                positions.append(place + (index - len(SYSTEMS) / 2) * height)
                ratios.append(median / ours)
        axes.barh(positions, ratios, height=height, label=system)
    axes.set_yticks(range(len(shown)), [row.workload.replace("`", "") for row in shown])
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("time (or bytes) relative to marimo_store; lower is better")
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def document(
    rows: Sequence[Row],
    own: Sequence[Row],
    *,
    settings: Settings,
    machine: Sequence[str],
    load: tuple[str, str],
    picture: str | None,
) -> str:
    parts = [
        "# Benchmarks",
        "",
        "marimo_store against joblib.Memory, diskcache, marimo's own cache "
        "(`mo.persistent_cache` with its default FileStore, in a notebook run as a "
        "script) and the physical floor of each workload, measured in one run by "
        "[benchmarks/run.py](../benchmarks/run.py), which wrote this page. The "
        "workloads and how each is measured are described in that script's docstring; "
        "the scripts it reuses (core.py, open.py, cache.py, signing.py) print more "
        "detail on their own. All are modules of the `benchmarks` package, run from the "
        "repository root: `make bench` or `python -m benchmarks.run` (`--quick`: under 2 "
        "minutes, prints only), and `python -m benchmarks.core --help` (or `open`, "
        "`cache`, `signing`, `refresh`) for one of them.",
        "",
        "## Machine",
        "",
        *machine,
        f"- load average (1 min) at start {load[0]}, at end {load[1]}",
        f"- `{settings.command()}`: medians over {settings.repeat} rounds; in brackets, "
        "each system's median relative to marimo_store's (lower is better); the fastest "
        "system in bold (the floor aside)",
        "",
        "## Results",
        "",
        *table(rows),
        "",
    ]
    if picture:
        parts += [f"![each system relative to marimo_store]({picture})", ""]
    parts += [
        "## Where marimo_store is not the fastest",
        "",
        *not_fastest(rows),
        "",
        "## What signing costs marimo_store",
        "",
        "Tiny hits of `persistent_cache` on stores that sign and verify (ratio to "
        "unsigned, verify off), and the digests' speed (ratio to xxh3-128); see "
        "[security.md](security.md).",
        "",
        *own_costs(own),
        "",
    ]
    return "\n".join(parts)


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: under 2 minutes")
    parser.add_argument("--repeat", type=common.positive, help="rounds (default 5; quick: 3)")
    parser.add_argument("--dir", help="parent of the scratch directory")
    parser.add_argument(
        "--output",
        help="where to write the Markdown page (default: docs/benchmarks.md for a full "
        "run; a --quick run only prints unless given)",
    )
    args = parser.parse_args(argv)
    settings = Settings(args.quick, args.repeat)
    default = None if args.quick else os.path.join(common.REPO, "docs", "benchmarks.md")
    output = args.output or default
    started, load_before = time.perf_counter(), load_average()
    with common.scratch_directory(args.dir, "run-") as root:
        machine = common.machine_info(root)
        rows, own = measure(root, settings)
    load = (load_before, load_average())
    picture = None
    if output is not None:
        picture_path = os.path.splitext(output)[0] + ".png"
        chart(rows, picture_path)
        picture = os.path.basename(picture_path)
    text = document(rows, own, settings=settings, machine=machine, load=load, picture=picture)
    print(text)
    if output is not None:
        # Measured by benchmarks/scale.py and benchmarks/remote.py, not here:
        kept = "".join(
            common.published_section(output, heading) for heading in common.PUBLISHED_ELSEWHERE
        )
        with open(output, "w", encoding="utf-8") as file:
            file.write(text + ("\n" + kept if kept else ""))
    common.progress(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
