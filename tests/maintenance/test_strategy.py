"""`DefaultCleanupStrategy` and `parse_size`: which entries a cleanup drops, and why.

The strategy is a pure function of entry metadata and the time, so most
tests hand it metadata built directly, with explicit `created_at` and
`last_access` values and a fixed `now_ms`. The last test runs it through a
real store to check that recency comes from access records, not file times.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest
from conftest import StoreFactory

from marimo_store import (
    ConfigError,
    DefaultCleanupStrategy,
    Entry,
    EntryMetadata,
    Environment,
    ExecutionKey,
    ObjectRef,
    parse_size,
)

NOW = 1_800_000_000_000  # a fixed "now" (ms since the epoch, in 2027)
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MB = 10**6
ENV = Environment("3.12.0", "linux-x86_64")


# -- helpers ---------------------------------------------------------------------------


def object_id(text: str) -> str:
    """A plausible 32-hex object id derived from `text`."""
    return hashlib.md5(text.encode()).hexdigest()


def meta(
    block: str,
    module: str,
    created_at: int,
    *,
    last_access: int | None = None,
    size: int = 1000,
    objects: tuple[str, ...] | None = None,
    call: bool = False,
) -> EntryMetadata:
    """Metadata of one stored entry, with one object per name in `objects`
    (by default one object of its own), each of `size` bytes. `call`: as
    `persistent_cache` records a function call."""
    names = objects if objects is not None else (f"{block}/{module}/{created_at}",)
    refs = {f"v{i}": ObjectRef(object_id(name), size, "pickle") for i, name in enumerate(names)}
    return EntryMetadata(
        ExecutionKey(block, module, created_at),
        {"variables": refs},
        ENV,
        {"persistent_cache": {"function": f"m.{block}", "components": {}}} if call else {},
        last_access=last_access,
    )


def run(
    strategy: DefaultCleanupStrategy, entries: Collection[EntryMetadata], now: int = NOW
) -> dict[ExecutionKey, str]:
    decisions = strategy(entries, now)
    assert isinstance(decisions, Mapping)
    result = dict(decisions)
    known = {entry.key for entry in entries}
    assert set(result) <= known, "a strategy drops only keys it was given"
    for reason in result.values():
        assert isinstance(reason, str)
        assert reason.strip()
    return result


def only_count(
    max_entries_per_block: int | None, max_entries_per_module: int | None
) -> DefaultCleanupStrategy:
    return DefaultCleanupStrategy(
        max_entries_per_block=max_entries_per_block,
        max_entries_per_module=max_entries_per_module,
    )


def no_count_rules(**options: object) -> DefaultCleanupStrategy:
    return DefaultCleanupStrategy(
        max_entries_per_block=None, max_entries_per_module=None, **options
    )


# -- count rules -----------------------------------------------------------------------


def test_defaults() -> None:
    """Size-based by default (diskcache's 1 GB); every count limit is opt-in."""
    strategy = DefaultCleanupStrategy()
    assert strategy.max_entries_per_block is None
    assert strategy.max_entries_per_module is None
    assert strategy.max_entry_age_days is None
    assert strategy.max_total_content_size == "1GB"
    assert strategy.max_calls_per_function is None
    assert run(strategy, []) == {}


def test_default_keeps_a_whole_sweep_that_fits_the_size_limit() -> None:
    t = NOW - DAY
    calls = [meta("f", f"args{i}", t + i, call=True, size=100) for i in range(20_000)]
    runs = [meta("cell", f"m{i}", t + i, size=100) for i in range(50)]
    assert run(DefaultCleanupStrategy(), [*calls, *runs]) == {}
    big = [meta("f", f"big{i}", t - 10 + i, call=True, size=400_000_000) for i in range(3)]
    dropped = run(DefaultCleanupStrategy(), [*calls, *big])
    assert set(dropped) == {big[0].key}  # above 1 GB: the least recently used goes


def test_calls_of_a_function_are_kept_by_recency_of_use_not_per_block() -> None:
    """Different arguments of one function are all valid at once: the block
    rule does not apply to them, the per-function LRU limit does."""
    t = NOW - DAY
    calls = [meta("f", f"args{i}", t + i, call=True) for i in range(10)]
    cells = [meta("cell", f"m{i}", t + i) for i in range(10)]
    default = DefaultCleanupStrategy(max_entries_per_block=3, max_entries_per_module=2)
    assert set(run(default, [*calls, *cells])) == {cell.key for cell in cells[:7]}

    # The oldest call was read a minute ago: least recently used go first.
    read_lately = [calls[0].replace(last_access=NOW - MINUTE), *calls[1:]]
    limited = DefaultCleanupStrategy(max_calls_per_function=4)
    dropped = run(limited, read_lately)
    assert set(dropped) == {call.key for call in calls[1:7]}
    assert all("most recently used calls of its function" in r for r in dropped.values())
    # ... per function (block), and never for entries that are not calls.
    other = [meta("g", f"args{i}", t + i, call=True) for i in range(4)]
    assert set(run(limited, [*read_lately, *other, *cells[:3]])) == set(dropped)
    # Re-runs of one call still count against max_entries_per_module.
    reruns = [meta("f", "same-args", t + i, call=True) for i in range(3)]
    assert set(run(default, reruns)) == {reruns[0].key}
    assert set(run(DefaultCleanupStrategy(max_calls_per_function=None), calls)) == set()


def test_keeps_the_newest_n_entries_of_each_block() -> None:
    t = NOW - DAY
    block_a = [meta("a", f"m{i}", t + i) for i in range(6)]  # one run per module
    block_b = [meta("b", f"m{i}", t + 100 + i) for i in range(2)]
    entries = [*block_a, *block_b]
    dropped = run(only_count(3, None), entries)
    assert set(dropped) == {entry.key for entry in block_a[:3]}
    # "Newest" is by created_at, not by the order the entries are given in.
    assert set(run(only_count(3, None), list(reversed(entries)))) == set(dropped)
    # Recency of use does not matter to this rule: a recently read old entry goes.
    read_lately = [meta("a", "m0", t, last_access=NOW - MINUTE), *block_a[1:]]
    assert block_a[0].key in run(only_count(3, None), read_lately)


def test_keeps_the_newest_m_runs_of_each_computation() -> None:
    t = NOW - DAY
    runs_x = [meta("a", "x", t + i) for i in range(4)]
    runs_y = [meta("a", "y", t + 10 + i) for i in range(2)]
    runs_other_block = [meta("b", "x", t + i) for i in range(3)]  # same module, other block
    entries = [*runs_x, *runs_y, *runs_other_block]
    dropped = run(only_count(None, 2), entries)
    assert set(dropped) == {runs_x[0].key, runs_x[1].key, runs_other_block[0].key}


def test_module_rule_runs_before_block_rule() -> None:
    """Runs the per-computation rule drops must not take up per-block slots."""
    t = NOW - DAY
    m1 = [meta("b", "m1", t + 10), meta("b", "m1", t + 9), meta("b", "m1", t + 8)]
    m2 = [meta("b", "m2", t + 2), meta("b", "m2", t + 1)]
    dropped = run(only_count(3, 2), [*m1, *m2])
    # Module rule: m1@8 goes (3 runs, keep 2). Block rule on what is left
    # (m1@10, m1@9, m2@2, m2@1): keep the newest 3, so m2@1 goes. Applying
    # the block rule first would wrongly drop both runs of m2.
    assert set(dropped) == {m1[2].key, m2[1].key}
    assert "computation" in dropped[m1[2].key]
    assert "block" in dropped[m2[1].key]
    assert dropped[m1[2].key] != dropped[m2[1].key]


def test_count_rules_with_equal_created_at_are_deterministic() -> None:
    t = NOW - DAY
    entries = [meta("b", f"m{i}", t) for i in range(5)]
    first = run(only_count(3, None), entries)
    assert len(first) == 2
    assert run(only_count(3, None), list(reversed(entries))) == first


# -- age rule --------------------------------------------------------------------------


def test_age_rule_goes_by_last_use() -> None:
    strategy = no_count_rules(max_entry_age_days=2)
    old_unused = meta("a", "old-unused", NOW - 5 * DAY)
    old_read_lately = meta("b", "old-read", NOW - 5 * DAY, last_access=NOW - HOUR)
    old_read_long_ago = meta("c", "old-read-long-ago", NOW - 5 * DAY, last_access=NOW - 3 * DAY)
    new = meta("d", "new", NOW - HOUR)
    just_inside = meta("e", "inside", NOW - 2 * DAY + MINUTE)
    just_outside = meta("f", "outside", NOW - 2 * DAY - MINUTE)
    # A last_access older than created_at (clock skew) must not make it look old.
    skewed = meta("g", "skewed", NOW - HOUR, last_access=NOW - 10 * DAY)
    entries = [old_unused, old_read_lately, old_read_long_ago, new, just_inside, just_outside]
    entries.append(skewed)
    dropped = run(strategy, entries)
    assert set(dropped) == {old_unused.key, old_read_long_ago.key, just_outside.key}
    # A day later, the entries last used an hour before NOW are still young enough.
    later = run(strategy, entries, NOW + DAY)
    assert set(later) == {e.key for e in entries} - {old_read_lately.key, new.key, skewed.key}


def test_age_rule_accepts_fractional_days() -> None:
    strategy = no_count_rules(max_entry_age_days=0.5)
    fresh = meta("a", "m", NOW - 11 * HOUR)
    stale = meta("b", "m", NOW - 13 * HOUR)
    assert set(run(strategy, [fresh, stale])) == {stale.key}


# -- size rule -------------------------------------------------------------------------


def test_size_rule_evicts_least_recently_used_first() -> None:
    # One entry per block, so the "newest of its block" rule does not interfere.
    a = meta("a", "m", NOW - 3 * HOUR, last_access=NOW - MINUTE, size=10 * MB)
    b = meta("b", "m", NOW - 2 * HOUR, size=10 * MB)  # never read: last used 2 h ago
    c = meta("c", "m", NOW - 1 * HOUR, size=10 * MB)
    d = meta("d", "m", NOW - 4 * HOUR, last_access=NOW - 90 * MINUTE, size=10 * MB)
    entries = [a, b, c, d]
    # 40 MB in total; 25 MB fits two: the two least recently used go (b, then d).
    assert set(run(no_count_rules(max_total_content_size=25 * MB), entries)) == {b.key, d.key}
    # 30 MB fits three: only b.
    assert set(run(no_count_rules(max_total_content_size=30 * MB), entries)) == {b.key}
    # Exactly the total: nothing.
    assert run(no_count_rules(max_total_content_size=40 * MB), entries) == {}
    # 0 bytes: everything.
    assert set(run(no_count_rules(max_total_content_size=0), entries)) == {e.key for e in entries}


def test_size_rule_evicts_newest_of_block_only_after_all_others() -> None:
    x_old = meta("x", "m1", NOW - 5 * HOUR, last_access=NOW - MINUTE, size=10 * MB)
    x_new = meta("x", "m2", NOW - 4 * HOUR, size=10 * MB)  # least recently used of all
    y = meta("y", "m", NOW - 6 * HOUR, last_access=NOW - 3 * HOUR, size=10 * MB)
    z = meta("z", "m", NOW - 7 * HOUR, last_access=NOW - 2 * MINUTE, size=10 * MB)
    entries = [x_old, x_new, y, z]
    # Fits one of four: x_old (not the newest of its block) goes first even
    # though it is the most recently used; then the newest-of-block entries
    # by recency: x_new (4 h), y (3 h).
    dropped = run(no_count_rules(max_total_content_size=15 * MB), entries)
    assert set(dropped) == {x_old.key, x_new.key, y.key}
    # Fits three: only x_old goes, although pure LRU would pick x_new.
    dropped = run(no_count_rules(max_total_content_size=30 * MB), entries)
    assert set(dropped) == {x_old.key}


def test_size_rule_counts_shared_objects_once() -> None:
    shared = ("the-same-10-MB-value",)
    first = meta("a", "m", NOW - 2 * HOUR, size=10 * MB, objects=shared)
    second = meta("b", "m", NOW - HOUR, size=10 * MB, objects=shared)
    assert first.variables["v0"].id == second.variables["v0"].id
    # 20 MB if counted per entry, 10 MB on disk: fits 15 MB.
    assert run(no_count_rules(max_total_content_size=15 * MB), [first, second]) == {}
    # Below 10 MB, evicting one entry frees nothing: both must go.
    dropped = run(no_count_rules(max_total_content_size=5 * MB), [first, second])
    assert set(dropped) == {first.key, second.key}


def test_size_rule_partly_shared_objects() -> None:
    # a and b share a 10 MB object and each has 1 MB of its own; c has 10 MB.
    a = meta("a", "m", NOW - 3 * HOUR, size=MB, objects=("a-own",))
    a = EntryMetadata(
        a.key,
        {"variables": {**a.variables, "big": ObjectRef(object_id("shared"), 10 * MB, "pickle")}},
        ENV,
    )
    b = meta("b", "m", NOW - 2 * HOUR, last_access=NOW - MINUTE, size=MB, objects=("b-own",))
    b = EntryMetadata(
        b.key,
        {"variables": {**b.variables, "big": ObjectRef(object_id("shared"), 10 * MB, "pickle")}},
        ENV,
        last_access=NOW - MINUTE,
    )
    c = meta("c", "m", NOW - HOUR, size=10 * MB)
    # Distinct objects: 1 + 1 + 10 + 10 = 22 MB. Budget 21 MB: evicting a
    # (the least recently used) frees only its own 1 MB: 21 MB, fits.
    dropped = run(no_count_rules(max_total_content_size=21 * MB), [a, b, c])
    assert set(dropped) == {a.key}
    # Budget 12 MB: a (-> 21), then c (least recently used left, -> 11).
    dropped = run(no_count_rules(max_total_content_size=12 * MB), [a, b, c])
    assert set(dropped) == {a.key, c.key}


def test_size_rule_applies_after_count_rules() -> None:
    """Entries the count rules drop no longer count towards the size budget."""
    t = NOW - DAY
    runs = [meta("a", "m", t + i, size=10 * MB) for i in range(3)]  # keep 2 per module
    other = meta("b", "m", t, size=10 * MB)
    strategy = DefaultCleanupStrategy(max_total_content_size=30 * MB)
    dropped = run(strategy, [*runs, other])
    assert set(dropped) == {runs[0].key}  # 30 MB left: fits


def test_size_rule_accepts_strings() -> None:
    a = meta("a", "m", NOW - 2 * HOUR, size=600 * 1024)
    b = meta("b", "m", NOW - HOUR, size=600 * 1024)
    assert set(run(no_count_rules(max_total_content_size="1MiB"), [a, b])) == {a.key}
    assert run(no_count_rules(max_total_content_size="2 MB"), [a, b]) == {}
    assert set(run(no_count_rules(max_total_content_size="1kB"), [a, b])) == {a.key, b.key}


# -- all rules together / none ---------------------------------------------------------


def crowded_entries() -> list[EntryMetadata]:
    """Entries that break every rule of the strategy in `test_reasons_differ_per_rule`."""
    return [
        # computation (p, m): 3 runs
        meta("p", "m", NOW - 3 * HOUR, size=MB),
        meta("p", "m", NOW - 2 * HOUR, size=MB),
        meta("p", "m", NOW - 1 * HOUR, size=MB),
        # block q: 4 computations, one run each
        *[meta("q", f"m{i}", NOW - 10 * HOUR + i, size=MB) for i in range(4)],
        # unused for 10 days
        meta("r", "m", NOW - 10 * DAY, size=MB),
        # big and not used for 20 hours
        meta("s", "m", NOW - 20 * HOUR, size=50 * MB),
        meta("t", "m", NOW - 30 * MINUTE, size=MB),
    ]


def test_reasons_differ_per_rule() -> None:
    entries = crowded_entries()
    strategy = DefaultCleanupStrategy(
        max_entries_per_block=3,
        max_entries_per_module=2,
        max_entry_age_days=7,
        max_total_content_size=20 * MB,
    )
    dropped = run(strategy, entries)
    p_oldest = ExecutionKey("p", "m", NOW - 3 * HOUR)
    q_oldest = ExecutionKey("q", "m0", NOW - 10 * HOUR)
    r = ExecutionKey("r", "m", NOW - 10 * DAY)
    # Size: 56 MB are left after the other rules, 20 MB allowed. Entries that
    # are not the newest of their block go first (q/m1, q/m2, p at -2 h: 3 MB),
    # then the least recently used newest-of-block entry, s (50 MB).
    by_size = {
        ExecutionKey("q", "m1", NOW - 10 * HOUR + 1),
        ExecutionKey("q", "m2", NOW - 10 * HOUR + 2),
        ExecutionKey("p", "m", NOW - 2 * HOUR),
        ExecutionKey("s", "m", NOW - 20 * HOUR),
    }
    assert set(dropped) == {p_oldest, q_oldest, r, *by_size}
    assert len({dropped[key] for key in by_size}) == 1
    reasons = [dropped[p_oldest], dropped[q_oldest], dropped[r], dropped[next(iter(by_size))]]
    assert len(set(reasons)) == 4, reasons


def test_every_rule_can_be_switched_off() -> None:
    entries = crowded_entries()
    nothing = DefaultCleanupStrategy(
        max_entries_per_block=None,
        max_entries_per_module=None,
        max_entry_age_days=None,
        max_total_content_size=None,
    )
    assert run(nothing, entries) == {}
    # One rule at a time: each drops only what that rule covers.
    p_oldest = ExecutionKey("p", "m", NOW - 3 * HOUR)
    q_oldest = ExecutionKey("q", "m0", NOW - 10 * HOUR)
    assert set(run(only_count(None, 2), entries)) == {p_oldest}
    assert set(run(only_count(3, None), entries)) == {q_oldest}
    assert set(run(no_count_rules(max_entry_age_days=7), entries)) == {
        ExecutionKey("r", "m", NOW - 10 * DAY)
    }
    # 59 MB in all; 58 MB allowed: the least recently used entry that is not
    # the newest of its block goes (q/m0, created 10 h ago).
    assert set(run(no_count_rules(max_total_content_size=58 * MB), entries)) == {q_oldest}


def test_strategy_is_a_value() -> None:
    a = DefaultCleanupStrategy(max_total_content_size="10GB")
    b = DefaultCleanupStrategy(max_total_content_size="10GB")
    assert a == b
    assert hash(a) == hash(b)
    assert a != DefaultCleanupStrategy()


# -- parse_size ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10GB", 10 * 10**9),
        ("10gb", 10 * 10**9),
        ("10 GB", 10 * 10**9),
        ("1.5 GiB", int(1.5 * 1024**3)),
        ("512MiB", 512 * 1024**2),
        ("512 MiB", 512 * 1024**2),
        ("1.5g", int(1.5 * 10**9)),
        ("500MB", 500 * 10**6),
        ("2kB", 2000),
        ("2KiB", 2048),
        ("3TB", 3 * 10**12),
        ("512", 512),
        ("512B", 512),
        (512, 512),
        ("0", 0),
        (0, 0),
        (None, None),
    ],
)
def test_parse_size(value: int | str | None, expected: int | None) -> None:
    assert parse_size(value, name="size") == expected


@pytest.mark.parametrize(
    "value", ["ten", "-5", "10XB", "", "GB", "10 G B", "1e9", -5, -1, True, 1.5, [10]]
)
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(ConfigError, match="my_size"):
        parse_size(value, name="my_size")  # type: ignore[arg-type]


# -- constructor validation ------------------------------------------------------------


@pytest.mark.parametrize("name", ["max_entries_per_block", "max_entries_per_module"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True, False, "3"])
def test_bad_counts_are_refused(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=name):
        DefaultCleanupStrategy(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, 0.0, -0.5, True, "7"])
def test_bad_ages_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="max_entry_age_days"):
        DefaultCleanupStrategy(max_entry_age_days=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["ten", "-5", "10XB", -1, True])
def test_bad_total_sizes_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="max_total_content_size"):
        DefaultCleanupStrategy(max_total_content_size=value)  # type: ignore[arg-type]


def test_good_values_are_accepted() -> None:
    strategy = DefaultCleanupStrategy(
        max_entries_per_block=1,
        max_entries_per_module=1,
        max_entry_age_days=0.25,
        max_total_content_size="1.5 GiB",
    )
    assert strategy.max_entries_per_block == 1
    assert strategy.max_entry_age_days == 0.25
    DefaultCleanupStrategy(max_entry_age_days=30)
    DefaultCleanupStrategy(max_total_content_size=0)


# -- through a real store --------------------------------------------------------------


def test_lru_comes_from_access_records_not_file_times(
    make_store: StoreFactory, store_path: Path
) -> None:
    """Put three entries (explicitly created in the past) in three blocks, read
    the oldest, then give every file in the store the same times: a size
    budget that fits two drops the least recently *used* one, which is the
    middle one by creation."""
    # No trigger may start a background cleanup on these old entries.
    options = {"entry_merge_timeout_seconds": 10**9}
    writer = make_store(**options)
    now = time.time_ns() // 1_000_000
    keys = {
        name: ExecutionKey(f"block-{name}", f"module-{name}", now - hours * HOUR)
        for name, hours in (("oldest", 3), ("middle", 2), ("newest", 1))
    }
    sizes = set()
    for name, key in keys.items():
        metadata = writer.put(Entry.of(key, {"v": name * 2000}))  # an object file each
        sizes.add(metadata.content_size)
    (size,) = sizes  # names of equal length: equal sizes
    writer.close()

    # The read comes from another store instance (its own writer), now.
    reader = make_store(**options)
    hit = reader.get(keys["oldest"])
    assert hit is not None
    assert hit.variables["v"] == "oldest" * 2000
    reader.close()

    # File times say nothing any more.
    stamp = 1_600_000_000
    for directory, _dirs, files in os.walk(store_path):
        for name in files:
            os.utime(os.path.join(directory, name), (stamp, stamp))

    cleaner = make_store(**options)
    listed = {metadata.key: metadata for metadata in cleaner.entries()}
    assert set(listed) == set(keys.values())
    assert listed[keys["oldest"]].last_access is not None
    assert listed[keys["oldest"]].last_access >= now
    assert listed[keys["middle"]].last_access is None
    assert listed[keys["newest"]].last_access is None

    strategy = no_count_rules(max_total_content_size=2 * size + size // 2)
    preview = cleaner.cleanup(strategy, dry_run=True)
    report = cleaner.cleanup(strategy)
    assert [d.key for d in preview.dropped] == [keys["middle"]]
    assert [d.key for d in report.dropped] == [keys["middle"]]
    assert report.entries_kept == 2

    fresh = make_store(**options)
    assert {m.key for m in fresh.entries()} == {keys["oldest"], keys["newest"]}
    assert fresh.get(keys["middle"], exact_match_created_at=True) is None
