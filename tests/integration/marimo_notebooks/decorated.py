"""marimo_store's `persistent_cache` on functions defined in cells.

Each decorated function appends its name to `$COUNTER` when it really
runs. The store is `$STORE` through an `App`, or without `$STORE` the
default one beside the notebook (`__marimo__/persist`).
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import os

    import numpy as np

    import marimo_store

    def ran(name):
        with open(os.environ["COUNTER"], "a") as counter:
            counter.write(name + "\n")

    cache = (
        marimo_store.App(marimo_store.FsPersistentStore(os.environ["STORE"])).persistent_cache
        if os.environ.get("STORE")
        else marimo_store.persistent_cache
    )
    return cache, np, ran


@app.cell
def _(cache, np, ran):
    scale = 3.0

    @cache
    def helper(n):
        return np.arange(n, dtype=np.float64)

    @cache
    def scaled_sum(n):
        ran("scaled_sum")
        return float(helper(n).sum() * scale)

    @cache
    async def later(n):
        ran("later")
        return n + 1

    return later, scaled_sum


@app.cell
async def _(later, scaled_sum):
    total = scaled_sum(1_000)
    bumped = await later(41)
    assert total == 3.0 * 999 * 1000 / 2, total
    assert bumped == 42
    return


if __name__ == "__main__":
    app.run()
