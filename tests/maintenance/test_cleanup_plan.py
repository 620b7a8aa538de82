"""Cleanup as a plan: `plan_cleanup` decides and changes nothing on disk;
`plan.execute()` does what `cleanup()` does; a plan gone stale keeps what
was put after it; `marimo-store cleanup --dry-run` (and `clear --dry-run`)
shows the plan, as text and as data, and the cleanup then does just that."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from _layout import log_dir, object_ids, object_path, objects_dir
from conftest import StoreFactory

from marimo_store import CleanupReport, DefaultCleanupStrategy, Entry, ExecutionKey
from marimo_store._cleanup import drop_everything
from marimo_store._entry import now_ms
from tests._scripts import run_command

KEEP_ONE = DefaultCleanupStrategy(max_entries_per_block=1)


def tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under `root`: relative path -> (sha256, size, mtime_ns);
    not the empty lock files, made where a lock is first taken (a dry run
    takes the `modification` lock too)."""
    found: dict[str, tuple[str, int, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.parent.name != "locks":
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, stat.st_size, stat.st_mtime_ns)
    return found


def put_runs(make_store: StoreFactory, root: Path, base: int) -> list[ExecutionKey]:
    """Three runs of one computation from `base` (ms) on, each with a file of
    its own: the same keys and bytes in every store this is called for."""
    store = make_store(root)
    keys = [
        store.put(Entry.of(ExecutionKey("b", "m", base + i), {"v": bytes([i]) * 5000})).key
        for i in range(3)
    ]
    store.close()
    return keys


def outcome(report: CleanupReport) -> tuple[object, ...]:
    return (
        sorted((str(d.key), d.reason, d.content_size) for d in report.dropped),
        report.entries_kept,
        report.snapshots_deleted,
        report.segments_deleted,
        report.objects_deleted,
        report.bytes_freed,
        report.skipped,
    )


def test_a_plan_not_executed_changes_nothing_on_disk(
    make_store: StoreFactory, store_path: Path
) -> None:
    keys = put_runs(make_store, store_path, now_ms() - 60_000)
    before = tree(store_path)
    plan = make_store().plan_cleanup(KEEP_ONE)
    assert tree(store_path) == before
    assert {d.key for d in plan.dropped} == set(keys[:2])
    assert plan.report.dry_run and plan.report.entries_kept == 1
    # Each dropped run has a file of its own: GC would collect exactly those.
    assert sum(plan.collected.values()) == sum(d.content_size for d in plan.dropped)
    assert len(plan.collected) == 2
    assert plan.segments and plan.snapshots == []
    assert any(line.startswith("drop ") for line in plan.describe())
    assert outcome(make_store().cleanup(KEEP_ONE, dry_run=True)) == outcome(plan.report)


def test_a_plan_executed_does_what_cleanup_does(make_store: StoreFactory, tmp_path: Path) -> None:
    planned, direct = tmp_path / "planned", tmp_path / "direct"
    base = now_ms() - 60_000
    put_runs(make_store, planned, base)
    put_runs(make_store, direct, base)
    plan = make_store(planned).plan_cleanup(KEEP_ONE)
    executed = plan.execute()
    cleaned = make_store(direct).cleanup(KEEP_ONE)
    assert not executed.dry_run and executed.snapshot is not None
    assert outcome(executed) == outcome(cleaned)
    assert outcome(executed)[0] == sorted(
        (str(d.key), d.reason, d.content_size) for d in plan.dropped
    )
    assert executed.bytes_freed == sum(plan.collected.values())
    survivors = [[m.key for m in make_store(root).entries()] for root in (planned, direct)]
    assert survivors[0] == survivors[1] and len(survivors[0]) == 1
    assert sorted(tree(objects_dir(planned))) == sorted(tree(objects_dir(direct)))


def test_a_stale_plan_keeps_what_was_put_after_it(
    make_store: StoreFactory, store_path: Path
) -> None:
    data = os.urandom(5000)
    store = make_store(refresh_interval=0)
    old = store.put(Entry.of(ExecutionKey("old", "m"), {"v": data})).key
    plan = store.plan_cleanup(drop_everything)
    assert [d.key for d in plan.dropped] == [old]
    (object_id,) = plan.collected
    # Meanwhile another writer reuses the planned object by deduplication,
    # and puts an entry of its own.
    writer = make_store(refresh_interval=0)
    same = writer.put(Entry.of(ExecutionKey("same", "m"), {"v": data})).key
    new = writer.put(Entry.of(ExecutionKey("new", "m"), {"v": os.urandom(5000)})).key
    report = plan.execute()
    assert [d.key for d in report.dropped] == [old]
    assert report.entries_kept == 2
    fresh = make_store()
    assert fresh.get(old) is None
    reused = fresh.get(same)
    assert reused is not None and reused.variables["v"] == data
    assert fresh.get(new) is not None
    assert object_path(store_path, object_id).exists()


def cli(home: Path, root: Path, *args: str) -> Any:
    """`marimo-store --store ROOT ARGS --json`, which must succeed: its document."""
    done = run_command(home, "--store", str(root), *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_dry_run_command_shows_the_plan_the_cleanup_then_carries_out(
    make_store: StoreFactory, store_path: Path, home: Path
) -> None:
    keys = put_runs(make_store, store_path, now_ms() - 60_000)
    before, objects = tree(store_path), object_ids(store_path)
    limit = ("--max-entries-per-block", "1")
    shown = cli(home, store_path, "cleanup", "--dry-run", *limit)
    assert tree(store_path) == before
    plan = shown["plan"]
    assert plan["steps"] == make_store().plan_cleanup(KEEP_ONE).describe()
    assert plan["include_content"] is True
    dropped = {(d["module_hash"], d["reason"], d["size"]) for d in shown["dropped"]}
    assert {d[0] for d in dropped} == {key.module_hash for key in keys[:2]}
    # The two dropped runs' files, by their real sizes on disk.
    collected = {c["id"]: c["size"] for c in plan["collected"]}
    assert len(collected) == 2 and set(collected) < objects
    assert collected == {i: object_path(store_path, i).stat().st_size for i in collected}
    assert plan["bytes_collected"] == sum(collected.values())
    assert plan["snapshots_replaced"] == []
    log = {path.name: path.stat().st_size for path in log_dir(store_path).glob("*.log")}
    assert {s["name"]: s["bytes"] for s in plan["segments"]} == log
    text = run_command(home, "--store", str(store_path), "cleanup", "--dry-run", *limit).stdout
    assert f"would collect 2 objects ({plan['bytes_collected']} bytes)" in text
    assert f"holding {sum(log.values())} bytes of {len(log)} log segments" in text
    assert "would drop 2 entries" in text
    assert tree(store_path) == before

    done = cli(home, store_path, "cleanup", *limit)
    assert done["plan"] is None and not done["dry_run"]
    assert {(d["module_hash"], d["reason"], d["size"]) for d in done["dropped"]} == dropped
    assert (done["objects_deleted"], done["bytes_freed"]) == (2, plan["bytes_collected"])
    assert object_ids(store_path) == objects - set(collected)


def test_the_clear_dry_run_plans_to_collect_every_object(
    make_store: StoreFactory, store_path: Path, home: Path
) -> None:
    put_runs(make_store, store_path, now_ms() - 60_000)
    before, objects = tree(store_path), object_ids(store_path)
    shown = cli(home, store_path, "clear", "--dry-run")
    assert tree(store_path) == before
    assert {c["id"] for c in shown["plan"]["collected"]} == objects
    planned = make_store().plan_cleanup(drop_everything)
    assert shown["plan"]["steps"] == planned.describe()
    assert len(planned.dropped) == 3
    done = cli(home, store_path, "clear", "--yes")
    assert done["objects_deleted"] == len(objects) and object_ids(store_path) == set()
