"""Two blocks computing the same 20 MB array (`$STORE`, `$COUNTER` as in
blocks.py); a last cell checks what they restore."""

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import os

    import marimo as mo
    import numpy as np

    from marimo_store.marimo import MarimoStore

    store = MarimoStore(os.environ["STORE"])

    def ran(name):
        with open(os.environ["COUNTER"], "a") as counter:
            counter.write(name + "\n")

    return mo, np, ran, store


@app.cell
def _(mo, np, ran, store):
    with mo.persistent_cache("first", store=store):
        ran("first")
        first_array = np.arange(2_500_000, dtype=np.float64)  # 20 MB
    return (first_array,)


@app.cell
def _(mo, np, ran, store):
    with mo.persistent_cache("second", store=store):
        ran("second")
        second_array = np.arange(2_500_000, dtype=np.float64) + 0.0
    return (second_array,)


@app.cell
def _(first_array, np, ran, second_array):
    ran(f"equal={np.array_equal(first_array, second_array)}")
    return


if __name__ == "__main__":
    app.run()
