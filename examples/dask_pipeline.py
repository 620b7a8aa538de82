"""A parameter sweep on a Dask cluster whose results persist between runs.

    .venv/bin/python examples/dask_pipeline.py   # fits every point of the grid
    .venv/bin/python examples/dask_pipeline.py   # fits nothing: every point is a hit

For each (degree, alpha) pair of a grid, fit a ridge regression on
polynomial features and measure its validation error, on two local Dask
worker processes. The training data goes to the workers as an
`ObjectHandle` (a few hundred bytes per task instead of the data), and
`persistent_cache` stores every fitted point in an `FsPersistentStore` that
the client and the workers share; the best model is saved as the named
object "best-ridge", one version per run.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from dask.distributed import Client, LocalCluster

from marimo_store import FsPersistentStore, ObjectHandle, persistent_cache

STORE_DIR = Path(__file__).resolve().parent / "__marimo__" / "persist"
DEGREES = range(1, 9)
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def make_data(samples: int = 400_000, seed: int = 0) -> dict[str, np.ndarray]:
    """A noisy signal to fit, split into training and validation halves."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, samples)
    y = np.sin(3 * x) + 0.3 * x**2 + rng.normal(0, 0.1, samples)
    half = samples // 2
    return {"x_train": x[:half], "y_train": y[:half], "x_valid": x[half:], "y_valid": y[half:]}


def features(x: np.ndarray, degree: int) -> np.ndarray:
    return np.vander(x, degree + 1, increasing=True)


def fit_ridge(data: ObjectHandle, degree: int, alpha: float) -> dict[str, Any]:
    """Fit one point of the grid (runs on a worker; the data loads there, once)."""
    arrays = data.get()
    x = features(arrays["x_train"], degree)
    coefficients = np.linalg.solve(
        x.T @ x + alpha * len(x) * np.eye(degree + 1), x.T @ arrays["y_train"]
    )
    residual = features(arrays["x_valid"], degree) @ coefficients - arrays["y_valid"]
    return {
        "degree": degree,
        "alpha": alpha,
        "coefficients": coefficients,
        "rmse": float(np.sqrt(np.mean(residual**2))),
    }


def run(store_dir: Path, workers: int) -> int:
    """Run the sweep once; return how many points were computed (not loaded)."""
    # Every point of the grid is one call of fit_ridge: cleanup (which runs
    # when the workers exit) keeps its 1000 most recently used calls.
    store = FsPersistentStore(store_dir)
    fit = persistent_cache(store=store)(fit_ridge)
    data = store.ref(make_data())
    grid = list(itertools.product(DEGREES, ALPHAS))
    started_ms = time.time_ns() // 1_000_000
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter()
        futures = client.map(fit, [data] * len(grid), *zip(*grid, strict=True), pure=False)
        results = client.gather(futures)
        elapsed = time.perf_counter() - started
    store.refresh()  # see the entries the workers just stored
    block_id = fit.explain(data, *grid[0]).key.block_id
    computed = sum(
        1 for m in store.entries() if m.key.block_id == block_id and m.created_at >= started_ms
    )
    print(
        f"sweep of {len(grid)} points on {workers} Dask workers in {elapsed:.1f} s: "
        f"computed {computed}, loaded {len(grid) - computed} from {store_dir}"
    )
    best = min(results, key=lambda result: result["rmse"])
    store.save("best-ridge", best, metadata={"points": len(grid)})
    print(
        f"best: degree={best['degree']} alpha={best['alpha']:g} "
        f"validation RMSE={best['rmse']:.4f} (saved as 'best-ridge', "
        f"{len(store.info('best-ridge').versions)} version(s) kept)"
    )
    store.close()
    return computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=STORE_DIR, help="the store directory")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    arguments = parser.parse_args()
    run(arguments.store, arguments.workers)


if __name__ == "__main__":
    main()
