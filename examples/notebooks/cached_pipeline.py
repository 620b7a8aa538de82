"""marimo_store in a marimo notebook: `mo.persistent_cache` on a block and
on a function, stored in a `MarimoStore`.

Run it as a script twice (`python cached_pipeline.py`) or open it with
`marimo edit`: the second time, both caches are restored from
`__marimo__/persist` beside this file and nothing is recomputed. The same
store can be chosen for every notebook in marimo's user configuration
instead (see docs/marimo.md):

    [cache]
    store = {type = "fs_persistent"}
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    import numpy as np
    import pandas as pd

    from marimo_store.marimo import MarimoStore

    # `__marimo__/persist` beside the notebook; pass a path to share a store.
    store = MarimoStore()
    return mo, np, pd, store


@app.cell
def _(mo):
    mo.md("""
    # A cached pipeline

    `simulate` is a cached **block**: its variables are restored from the
    store when its code and inputs have not changed. `daily_summary` is a
    cached **function**: one entry per distinct argument.
    """)
    return


@app.cell
def _(mo, np, pd, store):
    with mo.persistent_cache("simulate", store=store):
        rng = np.random.default_rng(seed=42)
        steps = rng.normal(0.0, 1.0, size=(365, 2_000))
        prices = pd.DataFrame(
            100.0 * np.exp(np.cumsum(steps, axis=0) / 100.0),
            index=pd.date_range("2024-01-01", periods=365, freq="D"),
        )
    return (prices,)


@app.cell
def _(mo, pd, prices, store):
    @mo.persistent_cache(store=store)
    def daily_summary(window: int) -> pd.DataFrame:
        rolling = prices.rolling(window).mean()
        return pd.DataFrame(
            {
                "mean": rolling.mean(axis=1),
                "spread": rolling.max(axis=1) - rolling.min(axis=1),
            }
        ).dropna()

    weekly = daily_summary(7)
    monthly = daily_summary(30)
    return monthly, weekly


@app.cell
def _(mo, monthly, weekly):
    mo.vstack(
        [
            mo.md(f"{len(weekly)} weekly and {len(monthly)} monthly rows"),
            mo.ui.table(monthly.tail(10).reset_index(names="day")),
        ]
    )
    return


if __name__ == "__main__":
    app.run()
