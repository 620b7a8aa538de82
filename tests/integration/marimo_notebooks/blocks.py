"""A notebook caching with every persistent loader of marimo.

Each cached computation appends its name to the file `$COUNTER`, so a test
sees exactly which ones ran. With `$STORE` set, every cache is given
`MarimoStore($STORE)` explicitly (`$STORE=default`: `MarimoStore()`, where
the configuration files choose); without it, marimo chooses (its default
`FileStore`, or the store of its configuration).
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import os

    import marimo as mo
    import numpy as np
    import pandas as pd

    from marimo_store.marimo import MarimoStore

    def pick_store():
        if not os.environ.get("STORE"):
            return None
        path = os.environ["STORE"]
        return MarimoStore() if path == "default" else MarimoStore(path)

    def ran(name):
        with open(os.environ["COUNTER"], "a") as counter:
            counter.write(name + "\n")

    return mo, np, pd, pick_store, ran


@app.cell
def _(mo, np, pd, pick_store, ran):
    with mo.persistent_cache("numbers", store=pick_store()):
        ran("numbers")
        values = np.linspace(0.0, 1.0, 200_000)
        frame = pd.DataFrame({"x": values, "y": values**2})
    return (frame,)


@app.cell
def _(frame, mo, np, pick_store, ran):
    @mo.persistent_cache(store=pick_store())
    def summarize(column):
        ran("summarize")
        return {"mean": float(np.mean(frame[column])), "n": len(frame)}

    summary = summarize("y")
    return (summary,)


@app.cell
def _(mo, pick_store, ran, summary):
    with mo.persistent_cache("json_block", method="json", store=pick_store()):
        ran("json_block")
        report = {"mean": summary["mean"], "rows": summary["n"]}
    return (report,)


@app.cell
def _(mo, np, pick_store, ran):
    with mo.persistent_cache("lazy_block", method="lazy", store=pick_store()):
        ran("lazy_block")
        grid = np.arange(100_000, dtype=np.float64).reshape(100, 1000)
        label = "grid"
    return grid, label


if __name__ == "__main__":
    app.run()
