"""How marimo_store's costs grow with the number of entries, against diskcache.

For each N in --counts (10k and 100k; 1M added by --full) one writer
process calls a `persistent_cache`-decorated function N times with
distinct arguments (tiny results, `cleanup_on_exit=False`), and another
does the same through diskcache's `memoize`. Then FRESH processes
(`sys.executable -c ...`, the OS page cache warm) measure, with medians
over --repeat runs (one run for the slow ones at 1M):

- cold first get, log not yet compacted: constructor + the first call of
  the decorated function (a hit) in a new process, every entry still in
  the writer's log segment;
- the same after a snapshot (`cleanup()` keeping every entry: an empty log);
- reader memory after the first get: RSS after it minus RSS before the
  store was opened (the module and the libraries already imported);
- writer RSS at the end of the N calls;
- `cleanup()` (its wall and CPU time, the peak RSS of its process) of the
  uncompacted store (keeping every entry), and of the compacted store
  after 1,000 new puts (what a cleanup costs when little changed); CPU
  time is what to compare between runs on a busy machine;
- disk per entry: bytes of the store's files / N, log only and after the
  snapshot;
- first hit of a key from the snapshot: the median over 200 calls with
  distinct random arguments after the first get (each decodes its entry).

Every marimo_store run works on a fresh copy of the built store: a get
appends an access record and a cleanup rewrites the store.

    .venv/bin/python -m benchmarks.scale [--counts 10000,100000] [--full] [--repeat 3]
        [--json results.json] [--publish]

`--publish` writes the table and a chart (docs/benchmarks-scale.png, if
matplotlib is installed) into the "## Scale" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import _common as common
from benchmarks.open import child_environment, run

SECTION = common.SCALE_SECTION
NEW_PUTS = 1000
DISTINCT_HITS = 200

# Shared by the writer and the readers: the decorated function is this
# module's `square`, so every process computes the same keys.
PRELUDE = """\
import json, random, statistics, sys, time
from benchmarks.scale import DISTINCT_HITS, rss, square
path, mode, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "marimo":
    from marimo_store import DefaultCleanupStrategy, FsPersistentStore, persistent_cache
else:
    from diskcache import Cache
"""

WRITER = (
    PRELUDE
    + """\
if mode == "marimo":
    store = FsPersistentStore(path, cleanup_on_exit=False)
    cached = persistent_cache(store=store)(square)
else:
    cached = Cache(path).memoize()(square)
start = time.perf_counter()
for i in range(lo, hi):
    cached(i)
print(json.dumps({"seconds": time.perf_counter() - start, "rss": rss()}))
"""
)

READER = (
    PRELUDE
    + """\
rng = random.Random(lo)
before = rss()
start = time.perf_counter()
if mode == "marimo":
    cached = persistent_cache(store=FsPersistentStore(path, cleanup_on_exit=False))(square)
else:
    cached = Cache(path).memoize()(square)
cached(rng.randrange(hi))
first = time.perf_counter() - start
memory = rss() - before
samples = []
for i in rng.sample(range(hi), min(hi, DISTINCT_HITS)):
    start = time.perf_counter()
    cached(i)
    samples.append(time.perf_counter() - start)
if getattr(cached, "_misses", 0):  # marimo_store's wrapper counts them
    raise SystemExit("a miss: the readers must only hit")
print(json.dumps({"first": first, "memory": memory, "hit": statistics.median(samples)}))
"""
)

CLEANER = (
    PRELUDE
    + """\
store = FsPersistentStore(path, cleanup_on_exit=False)
keep_all = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
start, cpu = time.perf_counter(), time.process_time()
report = store.cleanup(keep_all)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
if report.dropped or report.entries_kept != hi:
    raise SystemExit(f"cleanup kept {report.entries_kept} of {hi}: {report}")
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "cpu": cpu, "rss": peak}))
"""
)


def square(i: int) -> int:
    """The cached function: a tiny distinct result per argument."""
    return i * i


def rss() -> int:
    """This process's resident set size in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Runner:
    """Runs the snippets in fresh processes, each on a fresh copy of a store."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.env = child_environment(root)
        self.work = os.path.join(root, "work")

    def snippet(self, code: str, path: str, mode: str, lo: int, hi: int) -> dict[str, Any]:
        _, out = run(code, [path, mode, str(lo), str(hi)], common.REPO, self.env)
        result: dict[str, Any] = json.loads(out)
        return result

    def copy(self, pristine: str) -> str:
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(pristine, self.work)
        return self.work

    def on_copies(
        self, pristine: str, rounds: int, measure: Callable[[str], dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return [measure(self.copy(pristine)) for _ in range(rounds)]


def median(results: Sequence[dict[str, Any]], field: str) -> float:
    return float(statistics.median(result[field] for result in results))


def measure(n: int, repeat: int, runner: Runner) -> dict[str, float]:
    """Every figure of the table for N entries."""
    slow = 1 if n >= 1_000_000 else repeat
    log_store = os.path.join(runner.root, f"marimo-{n}")
    snap_store = os.path.join(runner.root, f"marimo-{n}-snapshot")
    dc_store = os.path.join(runner.root, f"diskcache-{n}")
    figures: dict[str, float] = {}
    common.progress(f"N={n}: writers")
    written = runner.snippet(WRITER, log_store, "marimo", 0, n)
    figures["writer_rss"] = written["rss"]
    figures["put"] = written["seconds"] / n
    dc_written = runner.snippet(WRITER, dc_store, "diskcache", 0, n)
    figures["dc_writer_rss"] = dc_written["rss"]
    figures["disk_log"] = common.disk_usage(log_store)[0] / n
    figures["dc_disk"] = common.disk_usage(dc_store)[0] / n

    common.progress(f"N={n}: cold reads of the log")
    reads = runner.on_copies(
        log_store, slow, lambda path: runner.snippet(READER, path, "marimo", 0, n)
    )
    figures["first_log"], figures["memory_log"] = median(reads, "first"), median(reads, "memory")

    common.progress(f"N={n}: cleanup of the log")
    cleanups = runner.on_copies(
        log_store, slow, lambda path: runner.snippet(CLEANER, path, "marimo", 0, n)
    )
    figures["cleanup"], figures["cleanup_rss"] = median(cleanups, "seconds"), cleanups[-1]["rss"]
    figures["cleanup_cpu"] = median(cleanups, "cpu")
    shutil.rmtree(snap_store, ignore_errors=True)
    shutil.copytree(runner.work, snap_store)
    figures["disk_snapshot"] = common.disk_usage(snap_store)[0] / n

    common.progress(f"N={n}: cold reads of the snapshot")
    reads = runner.on_copies(
        snap_store, repeat, lambda path: runner.snippet(READER, path, "marimo", 0, n)
    )
    figures["first_snapshot"] = median(reads, "first")
    figures["memory_snapshot"] = median(reads, "memory")
    figures["hit_snapshot"] = median(reads, "hit")

    common.progress(f"N={n}: cleanup after {NEW_PUTS} new puts")

    def small_cleanup(path: str) -> dict[str, Any]:
        runner.snippet(WRITER, path, "marimo", n, n + NEW_PUTS)
        return runner.snippet(CLEANER, path, "marimo", 0, n + NEW_PUTS)

    small = runner.on_copies(snap_store, slow, small_cleanup)
    figures["cleanup_small"], figures["cleanup_small_cpu"] = (
        median(small, "seconds"),
        median(small, "cpu"),
    )

    common.progress(f"N={n}: diskcache reads")
    reads = [runner.snippet(READER, dc_store, "diskcache", 0, n) for _ in range(repeat)]
    figures["dc_first"], figures["dc_memory"] = median(reads, "first"), median(reads, "memory")
    figures["dc_hit"] = median(reads, "hit")
    for path in (log_store, snap_store, dc_store, runner.work):
        shutil.rmtree(path, ignore_errors=True)
    return figures


def mib_text(count: float) -> str:
    return f"{count / 2**20:+,.1f} MiB" if count < 2**30 else f"{count / 2**30:+.2f} GiB"


# (label, marimo_store field, diskcache field, format)
ROWS: list[tuple[str, str, str | None, Callable[[float], str]]] = [
    (
        "cold process, first get, log not yet compacted",
        "first_log",
        "dc_first",
        common.seconds_text,
    ),
    ("cold process, first get, after a snapshot", "first_snapshot", None, common.seconds_text),
    ("reader memory after first get (log)", "memory_log", "dc_memory", mib_text),
    ("reader memory after first get (snapshot)", "memory_snapshot", None, mib_text),
    ("writer RSS", "writer_rss", "dc_writer_rss", lambda b: mib_text(b).lstrip("+")),
    ("miss + put through the decorator, per entry", "put", None, common.seconds_text),
    ("`cleanup()` of the log", "cleanup", None, common.seconds_text),
    ("`cleanup()` of the log, CPU time", "cleanup_cpu", None, common.seconds_text),
    ("`cleanup()` peak RSS", "cleanup_rss", None, lambda b: mib_text(b).lstrip("+")),
    (f"`cleanup()` after {NEW_PUTS:,} new puts", "cleanup_small", None, common.seconds_text),
    (
        f"`cleanup()` after {NEW_PUTS:,} new puts, CPU time",
        "cleanup_small_cpu",
        None,
        common.seconds_text,
    ),
    ("disk per entry (log)", "disk_log", "dc_disk", common.bytes_text),
    ("disk per entry (snapshot)", "disk_snapshot", None, common.bytes_text),
    ("first hit of a key from the snapshot", "hit_snapshot", "dc_hit", common.seconds_text),
]


def count_text(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def table(results: dict[int, dict[str, float]]) -> list[str]:
    counts = sorted(results)
    names = [count_text(n) for n in counts]
    lines = [
        f"| N entries | {' | '.join(names)} | diskcache ({' / '.join(names)}) |",
        "|---|" + "---:|" * (len(counts) + 1),
    ]
    for label, ours, theirs, text in ROWS:
        cells = [text(results[n][ours]) for n in counts]
        other = " / ".join(text(results[n][theirs]) for n in counts) if theirs else ""
        lines.append(f"| {label} | {' | '.join(cells)} | {other} |")
    return lines


def chart(results: dict[int, dict[str, float]], path: str) -> bool:
    """Cost against N, log-log; False when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted(results)
    figure, (times, sizes) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, field in [
        ("first get, log", "first_log"),
        ("first get, snapshot", "first_snapshot"),
        ("cleanup(), CPU", "cleanup_cpu"),
        (f"cleanup() after {NEW_PUTS:,} puts, CPU", "cleanup_small_cpu"),
        ("diskcache first get", "dc_first"),
    ]:
        times.plot(counts, [results[n][field] for n in counts], marker="o", label=label)
    for label, field in [
        ("reader memory, log", "memory_log"),
        ("reader memory, snapshot", "memory_snapshot"),
        ("writer RSS", "writer_rss"),
        ("diskcache reader memory", "dc_memory"),
        ("diskcache writer RSS", "dc_writer_rss"),
    ]:
        sizes.plot(
            counts, [max(results[n][field], 1) / 2**20 for n in counts], marker="o", label=label
        )
    for axes, unit in ((times, "seconds"), (sizes, "MiB")):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("entries (N)")
        axes.set_ylabel(unit)
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def section(results: dict[int, dict[str, float]], machine: list[str], command: str) -> str:
    picture = os.path.join(common.REPO, "docs", "benchmarks-scale.png")
    drawn = chart(results, picture)
    lines = [
        SECTION,
        "",
        "How the costs grow with the number of entries (tiny distinct results through "
        "`persistent_cache`, a writer with `cleanup_on_exit=False`, then fresh processes; "
        "cleanups keep every entry), against diskcache's `memoize`; measured by "
        f"[benchmarks/scale.py](../benchmarks/scale.py) (`{command}`), which describes "
        "each row. Medians; a single run for the slow rows at 1M.",
        "",
        *machine,
        "",
        *table(results),
        "",
        "![cost against N](benchmarks-scale.png)"
        if drawn
        else "(No chart: matplotlib was not installed when this was measured.)",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--counts", default="10000,100000", help="comma-separated N")
    parser.add_argument("--full", action="store_true", help="add N = 1,000,000")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--publish", action="store_true", help="write docs/benchmarks.md")
    common.scratch_arguments(parser, repeat=3)
    args = parser.parse_args(argv)
    counts = [common.positive(text) for text in args.counts.split(",")]
    if args.full:
        counts.append(1_000_000)
    results: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    with common.scratch_directory(args.dir, "scale-") as root:
        machine = common.machine_info(root)
        runner = Runner(root)
        for n in sorted(set(counts)):
            results[n] = measure(n, args.repeat, runner)
    command = "python -m benchmarks.scale " + " ".join(sys.argv[1:] if argv is None else argv)
    print("\n".join(table(results)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({str(n): figures for n, figures in results.items()}, file, indent=1)
    if args.publish:
        text = section(results, machine, command.strip())
        common.publish_section(text, os.path.join(common.REPO, "docs", "benchmarks.md"), SECTION)
    common.progress(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
