"""Dask: a `dask.distributed.LocalCluster` with two worker processes shares
one FsPersistentStore with the client. One cluster serves every test of the
module (starting one costs seconds)."""

from __future__ import annotations

import functools
import logging
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import StoreFactory
from dask.distributed import Client, LocalCluster
from workers import objects as object_workers
from workers.objects import executions, sweep_function

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dask_pipeline.py"


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _workers(client: Client) -> list[str]:
    addresses = sorted(client.scheduler_info()["workers"])
    assert len(addresses) == 2
    return addresses


def _run_on(client: Client, function: Any, points: list[int], worker: str) -> list[Any]:
    futures = client.map(function, points, workers=[worker], allow_other_workers=False, pure=False)
    return list(client.gather(futures))


def test_a_second_sweep_executes_nothing(
    client: Client, make_store: StoreFactory, tmp_path: Path
) -> None:
    # refresh_interval=0: a worker that just looked the store up must see
    # what the other worker stored a moment ago, not up to 0.2 s later.
    store = make_store(refresh_interval=0)
    log = str(tmp_path / "executions.log")
    simulate = sweep_function(store, log)
    first, second = _workers(client)
    points = list(range(12))
    even, odd = points[0::2], points[1::2]

    results = _run_on(client, simulate, even, first) + _run_on(client, simulate, odd, second)
    assert len(executions(log)) == len(points)
    worker_pids = {int(line.split()[0]) for line in executions(log)}
    assert len(worker_pids) == 2
    assert os.getpid() not in worker_pids

    # Swapped: every point is looked up on the worker that did not compute it.
    swapped = _run_on(client, simulate, even, second) + _run_on(client, simulate, odd, first)
    assert swapped == results
    assert len(executions(log)) == len(points)  # the second sweep executed nothing
    assert [simulate(p) for p in even + odd] == results  # the client hits too
    assert len(executions(log)) == len(points)
    assert simulate.cache_info().hits == len(points)
    assert simulate.cache_info().entries == len(points)


def test_a_handle_made_on_the_client_resolves_on_a_worker(
    client: Client, make_store: StoreFactory
) -> None:
    store = make_store()
    array = np.random.default_rng(5).standard_normal(2_000_000)  # 16 MB
    handle = store.ref(array)
    assert len(pickle.dumps(handle)) < 1024
    first, _ = _workers(client)
    twin = pickle.loads(pickle.dumps(handle))  # shipped as a separate object
    seen = client.submit(object_workers.resolve, handle, twin, workers=[first], pure=False).result()
    assert seen["sum"] == pytest.approx(float(array.sum()))
    assert seen["shape"] == array.shape
    assert seen["same_object"]
    assert seen["pid"] != os.getpid()


def test_workers_save_named_objects_the_client_loads(
    client: Client, make_store: StoreFactory
) -> None:
    store = make_store(refresh_interval=0)
    futures = client.map(functools.partial(object_workers.save_square, store), range(6))
    pids = set(client.gather(futures))
    assert os.getpid() not in pids
    assert store.names() == [f"square-{i}" for i in range(6)]
    assert [store.load(f"square-{i}") for i in range(6)] == [i * i for i in range(6)]


def test_the_example_pipeline_hits_everything_on_its_second_run(tmp_path: Path) -> None:
    store = tmp_path / "store"
    command = [sys.executable, str(EXAMPLE), "--store", str(store)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert second.returncode == 0, second.stderr
    pattern = r"sweep of (\d+) points .*: computed (\d+), loaded (\d+)"
    total, computed, loaded = map(int, re.search(pattern, first.stdout).groups())  # type: ignore[union-attr]
    assert (computed, loaded) == (total, 0)
    total, computed, loaded = map(int, re.search(pattern, second.stdout).groups())  # type: ignore[union-attr]
    assert (computed, loaded) == (0, total)
    assert "2 version(s) kept" in second.stdout
