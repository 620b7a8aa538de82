"""marimo_store's own `persistent_cache` on functions defined in notebook cells.

No marimo configuration is needed: the decorator stores into
`__marimo__/persist` beside this notebook (or what `.marimo.toml` says).
Run it twice (`python decorated_functions.py`, `marimo export html
decorated_functions.py`, or `marimo edit`): the second time every call is
a hit. Edit `fit_line` (even only its body) and only its entries miss; add
a comment and nothing misses.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    import numpy as np

    from marimo_store import persistent_cache

    return mo, np, persistent_cache


@app.cell
def _(np, persistent_cache):
    @persistent_cache
    def noisy_samples(n: int, seed: int) -> np.ndarray:
        """An 'expensive' data source: one entry per (n, seed)."""
        rng = np.random.default_rng(seed)
        x = np.linspace(0.0, 10.0, n)
        return np.column_stack([x, 3.0 * x + 1.0 + rng.normal(0.0, 2.0, n)])

    @persistent_cache
    def fit_line(samples: np.ndarray) -> dict[str, float]:
        """Keyed by the array's bytes (hashed with xxh3, no copy)."""
        slope, intercept = np.polyfit(samples[:, 0], samples[:, 1], deg=1)
        return {"slope": float(slope), "intercept": float(intercept)}

    return fit_line, noisy_samples


@app.cell
def _(fit_line, mo, noisy_samples):
    fits = {seed: fit_line(noisy_samples(200_000, seed)) for seed in range(3)}
    mo.md(
        "\n".join(
            f"- seed {seed}: slope {fit['slope']:.3f}, intercept {fit['intercept']:.3f}"
            for seed, fit in fits.items()
        )
        + f"\n\nCache: {noisy_samples.cache_info()}"
    )
    return (fits,)


if __name__ == "__main__":
    app.run()
