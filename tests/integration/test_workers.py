"""A store shipped to worker processes: multiprocessing (spawn and fork) and
ProcessPoolExecutor. Results one process stores are hits for all others;
executions are counted by a side effect each one leaves, never by timing."""

from __future__ import annotations

import functools
import importlib
import multiprocessing
import os
import pickle
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import StoreFactory
from workers import objects as object_workers
from workers.objects import executions, sweep_function

from marimo_store import App, CachedFunction

SPAWN = multiprocessing.get_context("spawn")
FORK = multiprocessing.get_context("fork")
POINTS = list(range(8))


def _pids(log: str) -> set[int]:
    return {int(line.split()[0]) for line in executions(log)}


def test_a_sweep_on_workers_is_all_hits_everywhere_after(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store()
    log = str(tmp_path / "executions.log")
    simulate = sweep_function(store, log)
    expected = [{"point": p, "value": sum(i * p for i in range(10_000))} for p in POINTS]

    with SPAWN.Pool(2) as pool:
        assert pool.map(simulate, POINTS, chunksize=1) == expected
        # The store itself travels too: named objects saved by the workers.
        worker_pids = set(pool.map(functools.partial(object_workers.save_square, store), POINTS))
    assert len(executions(log)) == len(POINTS)
    assert _pids(log) <= worker_pids
    assert os.getpid() not in worker_pids

    with FORK.Pool(2) as pool:  # other processes: every point is a hit
        assert pool.map(simulate, POINTS, chunksize=1) == expected
    with ProcessPoolExecutor(2, mp_context=SPAWN) as executor:
        assert list(executor.map(simulate, POINTS)) == expected
    assert [simulate(p) for p in POINTS] == expected  # and here too
    assert len(executions(log)) == len(POINTS)
    assert simulate.cache_info().hits == len(POINTS)
    assert simulate.cache_info().misses == 0
    assert simulate.cache_info().entries == len(POINTS)  # a recompute would add runs

    assert store.names() == [f"square-{p}" for p in sorted(POINTS, key=str)]
    for point in POINTS:
        assert store.load(f"square-{point}") == point * point
        assert store.info(f"square-{point}").user_metadata["pid"] in worker_pids


def test_a_cached_function_of_an_importable_module_pickles_by_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "executions.log"
    (tmp_path / "pipeline_stage.py").write_text(
        textwrap.dedent(
            f"""
            from workers import objects as object_workers
            from marimo_store import FsPersistentStore, persistent_cache

            STORE = FsPersistentStore({str(tmp_path / "store")!r})

            @persistent_cache(store=STORE)
            def cube(point):
                object_workers.record_execution({str(log)!r}, point)
                return point ** 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("pipeline_stage")
    try:
        _map_by_reference(module, str(log))
    finally:
        module.STORE.close()
        del sys.modules["pipeline_stage"]


def _map_by_reference(module: Any, log: str) -> None:
    data = pickle.dumps(module.cube)
    assert b"pipeline_stage" in data and len(data) < 100  # a name, not the function
    assert pickle.loads(data) is module.cube

    with ProcessPoolExecutor(2, mp_context=SPAWN) as executor:
        assert list(executor.map(module.cube, POINTS)) == [p**3 for p in POINTS]
    assert len(executions(log)) == len(POINTS)
    with FORK.Pool(2) as pool:
        assert pool.map(module.cube, POINTS) == [p**3 for p in POINTS]
    assert [module.cube(p) for p in POINTS] == [p**3 for p in POINTS]
    assert len(executions(log)) == len(POINTS)


def test_a_cached_function_pickled_by_value_keeps_its_keys(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store(refresh_interval=0)  # the copy's store instance reads at once
    log = str(tmp_path / "executions.log")
    simulate = sweep_function(store, log)
    copy: Callable[[int], Any] = pickle.loads(pickle.dumps(simulate))
    assert isinstance(copy, CachedFunction)
    assert copy is not simulate
    assert copy.explain(3).key == simulate.explain(3).key
    assert simulate(3)["point"] == 3
    assert copy(3)["point"] == 3  # a hit on what the original stored
    assert len(executions(log)) == 1


def test_a_cached_function_of_an_app_pickles_with_the_app_store(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store(refresh_interval=0)
    log = str(tmp_path / "executions.log")

    with App(store) as app:  # pickled inside the block: the App's state must not travel

        @app.persistent_cache
        def double(point: int) -> int:
            object_workers.record_execution(log, point)
            return 2 * point

        copy = pickle.loads(pickle.dumps(double))
    assert double(21) == 42
    assert copy(21) == 42
    assert len(executions(log)) == 1
    assert copy._resolve("") == store  # type: ignore[attr-defined]


def test_unpickled_copies_of_a_store_are_one_instance_per_process(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store()
    first = pickle.loads(pickle.dumps(store))
    second = pickle.loads(pickle.dumps(store))
    assert first is second  # one log segment per worker, not one per task
    assert first is not store and first == store
    other = pickle.loads(pickle.dumps(make_store(inline_threshold=64)))
    assert other is not first
    assert other.config["inline_threshold"] == 64
    unhashable = make_store(tmp_path / "strategy", cleanup_strategy=_UnhashableStrategy())
    one, two = (pickle.loads(pickle.dumps(unhashable)) for _ in range(2))
    assert one is not two  # nothing to key the sharing on: separate, still correct
    for copy in (first, other, one, two):
        copy.close()


class _UnhashableStrategy(dict[str, str]):
    """A (trivial) cleanup strategy that cannot be hashed."""

    def __call__(self, entries: Any, now_ms: int) -> dict[Any, str]:
        return {}
