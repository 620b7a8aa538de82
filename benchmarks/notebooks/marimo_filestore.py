"""marimo's own cache (`mo.persistent_cache` with its default FileStore),
measured by benchmarks/run.py on the same workloads as the other systems.

A marimo notebook run as a script (`python marimo_filestore.py`), so that
marimo caches as it does for its users: the store is `__marimo__/cache`
beside this file. Parameters come from `$BENCH_*` variables and the results
go to the JSON file `$BENCH_OUT`; the workload functions are those of
benchmarks/cache.py, core.py, _common.py and run.py (`$PYTHONPATH` holds the
repository, whose `benchmarks` package they are).
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import json
    import os
    import time

    import marimo as mo
    import numpy as np

    from benchmarks import _common as common
    from benchmarks import cache as cache_bench
    from benchmarks import core, run

    repeat = int(os.environ["BENCH_REPEAT"])
    batch_seconds = float(os.environ["BENCH_BATCH_SECONDS"])
    small = int(os.environ["BENCH_SMALL"])
    argument_sizes = [int(size) for size in os.environ["BENCH_ARG_SIZES"].split(",")]
    result_mib = int(os.environ["BENCH_RESULT_MIB"])
    cache_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__marimo__", "cache")
    results = {}
    return (
        argument_sizes, batch_seconds, cache_bench, cache_dir, common, core, json, mo, np, os,
        repeat, result_mib, results, run, small, time,
    )  # fmt: skip


@app.cell
def _(batch_seconds, cache_bench, common, mo, repeat, results):
    add = mo.persistent_cache(cache_bench.add)
    results["tiny hit"] = common.seconds_per_call(
        {"add": lambda: add(1, 2)}, repeat, batch_seconds
    )["add"]
    return


@app.cell
def _(cache_dir, common, core, mo, os, repeat, results, small, time):
    value = mo.persistent_cache(core.small_value)
    for _rep in range(repeat):  # new arguments each round: misses, then hits
        _calls = range(_rep * small, (_rep + 1) * small)
        _start = time.perf_counter()
        for _i in _calls:
            value(_i)
        results.setdefault("small miss", []).append((time.perf_counter() - _start) / small)
        _start = time.perf_counter()
        for _i in _calls:
            value(_i)
        results.setdefault("small hit", []).append((time.perf_counter() - _start) / small)
    _usage = common.disk_usage(os.path.join(cache_dir, "small_value"))
    results["small bytes"] = [_usage[0] / (small * repeat)]
    results["small du"] = [_usage[1] / (small * repeat)]
    return


@app.cell
def _(argument_sizes, cache_bench, mo, np, repeat, results, time):
    first = mo.persistent_cache(cache_bench.first)
    for _size in argument_sizes:
        _array = np.random.default_rng(0).random(_size * 1024 * 1024 // 8)
        first(_array)  # the miss
        _times = []
        for _ in range(repeat):
            _start = time.perf_counter()
            assert first(_array) == _array[0]
            _times.append(time.perf_counter() - _start)
        results[f"argument {_size}"] = _times
    return


@app.cell
def _(mo, repeat, result_mib, results, run, time):
    produce = mo.persistent_cache(run.produce)
    for _rep in range(repeat):
        run.prepare_result(_rep, result_mib)
        _start = time.perf_counter()
        produce(_rep, result_mib)
        results.setdefault("result miss", []).append(time.perf_counter() - _start)
        _start = time.perf_counter()
        run.touch_result(produce(_rep, result_mib), _rep)
        results.setdefault("result hit", []).append(time.perf_counter() - _start)
    run.prepare_result(-1, 0)  # free the memory
    return


@app.cell
def _(cache_bench, cache_dir, common, json, mo, os, results):
    constant = mo.persistent_cache(cache_bench.constant)
    for _i in range(cache_bench.EQUAL_RESULT_CALLS):
        constant(_i)
    results["equal bytes"] = [common.disk_usage(os.path.join(cache_dir, "constant"))[0]]
    with open(os.environ["BENCH_OUT"], "w") as _out:
        json.dump(results, _out)
    return


if __name__ == "__main__":
    app.run()
