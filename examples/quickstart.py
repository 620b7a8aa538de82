"""marimo_store quickstart: cache an expensive computation on disk.

Run it twice (`make demo`, or `python examples/quickstart.py`): the first run
computes (a few seconds of numpy work) and stores the result; every later
run, in this process or any other, restores it from the store instead.
Within one run, a second Python process also loads the result, to show that
the cache outlives the process that filled it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from marimo_store import Entry, ExecutionKey, FsPersistentStore

STORE_DIR = Path(__file__).resolve().parent / "__marimo__" / "persist"
WALKERS, STEPS, SEED = 20_000, 10_000, 7


def simulate(walkers: int, steps: int, seed: int) -> dict[str, np.ndarray]:
    """Random walks: the expensive computation worth caching."""
    rng = np.random.default_rng(seed)
    position = np.zeros(walkers)
    furthest = np.zeros(walkers)
    for _ in range(steps):
        position += rng.standard_normal(walkers)
        np.maximum(furthest, np.abs(position), out=furthest)
    return {"final": position, "furthest": furthest}


def key_for(walkers: int, steps: int, seed: int) -> ExecutionKey:
    """The execution key: which computation (block) and which inputs (module hash)."""
    return ExecutionKey("quickstart.simulate", f"walkers={walkers},steps={steps},seed={seed}")


def compute_or_restore(store: FsPersistentStore) -> dict[str, np.ndarray]:
    key = key_for(WALKERS, STEPS, SEED)
    started = time.perf_counter()
    entry = store.get(key)
    if entry is not None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        stored_at = time.strftime("%H:%M:%S", time.localtime(entry.metadata.created_at / 1000))
        print(f"cache hit: restored the result stored at {stored_at} in {elapsed_ms:.1f} ms")
        return dict(entry.variables)
    print(f"cache miss: computing {WALKERS} random walks of {STEPS} steps ...")
    result = simulate(WALKERS, STEPS, SEED)
    computed = time.perf_counter() - started
    metadata = store.put(Entry.of(key, result))
    print(
        f"computed in {computed:.2f} s and stored "
        f"{metadata.content_size / 1e6:.2f} MB in {STORE_DIR}"
    )
    return result


def main() -> None:
    with FsPersistentStore(STORE_DIR) as store:
        result = compute_or_restore(store)
    print(f"mean distance of the furthest excursion: {result['furthest'].mean():.2f}")
    if "--child" not in sys.argv:
        print("\nanother Python process asks for the same computation:")
        subprocess.run([sys.executable, __file__, "--child"], check=True)


if __name__ == "__main__":
    main()
