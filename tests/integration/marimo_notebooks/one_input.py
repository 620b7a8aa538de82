"""A lazy cached block over `$INPUT`, in a store that keeps one entry per
block (`$STORE`, `$COUNTER` as in blocks.py)."""

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import os

    import marimo as mo
    import numpy as np

    from marimo_store.marimo import MarimoStore

    store = MarimoStore(os.environ["STORE"], cleanup_strategy={"max_entries_per_block": 1})
    level = float(os.environ["INPUT"])

    def ran(name):
        with open(os.environ["COUNTER"], "a") as counter:
            counter.write(name + "\n")

    return level, mo, np, ran, store


@app.cell
def _(level, mo, np, ran, store):
    with mo.persistent_cache("one_input", method="lazy", store=store):
        ran(f"one_input {level}")
        filled = np.full(200_000, level)
        table = np.arange(50_000) * level
    return filled, table


if __name__ == "__main__":
    app.run()
