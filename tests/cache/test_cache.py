"""`persistent_cache`: hits, misses and why, call semantics, wrapper methods.

The cached functions live in module files written by the test (`load_module`)
and imported again after an edit, the way a notebook or script changes.
Each records its calls in `cache_probe.calls`.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import ModuleLoader, StoreFactory

from marimo_store import (
    CacheInfo,
    DefaultCleanupStrategy,
    FsPersistentStore,
    InvalidArgumentError,
    SerializationError,
    StoreWarning,
    _cache_reports,
    _call_key,
    persistent_cache,
)
from marimo_store._environment import package_version

BASE = """
import cache_probe
from marimo_store import persistent_cache

SCALE = 2

def helper(x):
    return x * SCALE

@persistent_cache(store=cache_probe.store)
def f(a, b=1):
    cache_probe.calls.append((a, b))
    return helper(a) + b
"""


def test_hit_after_the_first_call(load_module: ModuleLoader, probe: types.ModuleType) -> None:
    module = load_module(BASE)
    assert module.f(3) == 7
    assert module.f(3) == 7
    assert probe.calls == [(3, 1)]
    info = module.f.cache_info()
    assert (info.hits, info.misses, info.entries) == (1, 1, 1)
    assert 0 < info.bytes < 100  # one small pickled int, kept inline


def test_bound_arguments_share_one_entry(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    module = load_module(BASE)
    assert module.f(1, b=2) == module.f(a=1, b=2) == module.f(1, 2) == 4
    assert module.f(1) == module.f(1, b=1) == 3  # the default is the argument
    assert probe.calls == [(1, 2), (1, 1)]
    assert len(probe.store.entries()) == 2


def _miss_explained(module: types.ModuleType, probe: types.ModuleType, *reasons: str) -> None:
    """`f(3)` misses, and explain() said beforehand exactly which components changed."""
    explanation = module.f.explain(3)
    assert not explanation.hit
    assert explanation.reasons == reasons, str(explanation)
    before = len(probe.calls)
    module.f(3)
    assert len(probe.calls) == before + 1
    assert module.f.explain(3).hit


def test_miss_after_editing_the_functions_code(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    load_module(BASE).f(3)
    edited = load_module(BASE.replace("return helper(a) + b", "return helper(a) - b"))
    _miss_explained(edited, probe, "the function's code")
    assert edited.f.explain(3).nearest is not None


def test_miss_after_editing_a_called_helper(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    load_module(BASE).f(3)
    edited = load_module(BASE.replace("return x * SCALE", "return x * SCALE + 1"))
    _miss_explained(edited, probe, "the code of function 'helper'")


def test_miss_after_changing_a_global_it_reads(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    module = load_module(BASE)
    module.f(3)
    module.SCALE = 5
    _miss_explained(module, probe, "global 'SCALE'")
    module.SCALE = 2
    module.f(3)
    assert len(probe.calls) == 2  # back to a stored computation: a hit


def test_miss_after_a_global_changes_in_place_or_a_helper_is_replaced(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    """The wrapper reuses its walk of the function's dependencies between
    calls: a change that rebinds nothing must still be a miss."""
    module = load_module(
        BASE.replace("SCALE = 2", "SCALE = [2]").replace("x * SCALE", "x * SCALE[0]")
    )
    assert module.f(3) == module.f(3) == 7
    module.SCALE[0] = 5  # the same list, changed
    assert module.f(3) == 16
    helper_code = module.helper.__code__
    module.helper.__code__ = (lambda x: -x).__code__  # the same function, new code
    assert module.f(3) == -2
    module.helper.__code__ = helper_code
    assert module.f(3) == 16
    assert len(probe.calls) == 3


def test_miss_on_another_argument_names_it(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    module = load_module(BASE)
    module.f(3, b=1)
    explanation = module.f.explain(3, b=4)
    assert explanation.changed == ("arg:b",)
    assert "changed: argument 'b'" in str(explanation)


def test_miss_after_a_module_version_changes(
    load_module: ModuleLoader, probe: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("fakepkg")
    fake.__version__ = "1.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fakepkg", fake)
    module = load_module(
        BASE.replace("import cache_probe", "import cache_probe\nimport fakepkg")
        .replace("store=cache_probe.store)", "store=cache_probe.store, pin_modules=True)")
        .replace("return helper(a) + b", "return helper(a) + b + len(fakepkg.__name__)")
    )
    module.f(3)
    fake.__version__ = "2.0"  # type: ignore[attr-defined]
    package_version.cache_clear()
    try:
        _miss_explained(module, probe, "module 'fakepkg' version (1.0 -> 2.0)")
    finally:
        package_version.cache_clear()


def test_hit_after_only_reformatting_or_adding_comments(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    load_module(BASE).f(3)
    reformatted = load_module(
        BASE.replace("def f(a, b=1):", "# the cached function\ndef f(a,  b = 1):  # comment")
        .replace("return helper(a) + b", "return (helper(a)\n            + b)  # sum")
        .replace("SCALE = 2", "SCALE = (2)  # the scale")
    )
    assert reformatted.f.explain(3).hit
    assert reformatted.f(3) == 7
    assert len(probe.calls) == 1


def test_explain_without_any_stored_entry(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    explanation = load_module(BASE).f.explain(3)
    assert not explanation.hit and explanation.nearest is None and explanation.changed == ()
    assert "nothing of this function is stored yet" in str(explanation)
    assert set(explanation.components) == {
        "code", "function:helper", "global:SCALE", "arg:a", "arg:b"
    }  # fmt: skip
    assert probe.calls == []  # explain runs nothing


def test_explain_shows_the_key_scheme_and_a_miss_a_new_scheme_causes(
    load_module: ModuleLoader, probe: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_module(BASE)
    module.f(3)
    explained = module.f.explain(3)
    assert explained.hit and explained.key_scheme == _call_key.KEY_SCHEME
    assert f"  key: scheme={explained.key_scheme} block_id=" in str(explained)
    (stored,) = probe.store.entries()
    assert stored.user_metadata["persistent_cache"]["scheme"] == _call_key.KEY_SCHEME
    # A release that computes keys another way: every component is the same,
    # yet the key is not; the explanation says it is the scheme.
    newer = _call_key.KEY_SCHEME + 1
    monkeypatch.setattr(_call_key, "KEY_SCHEME", newer)
    monkeypatch.setattr(_cache_reports, "KEY_SCHEME", newer)
    _miss_explained(load_module(BASE), probe, f"the key scheme ({newer - 1} -> {newer})")
    assert load_module(BASE).f.explain(3).key_scheme == newer
    assert probe.store.entries()[-1].user_metadata["persistent_cache"]["scheme"] == newer


def test_explain_names_the_scheme_of_an_entry_that_did_not_record_one(
    load_module: ModuleLoader, probe: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls stored before entries recorded their key scheme: when no
    component differs, only the scheme can."""

    def unrecorded(function: str, call: Any) -> dict[str, Any]:
        return {"function": function, "components": call.components}

    with monkeypatch.context() as patch:
        patch.setattr("marimo_store.cache.call_record", unrecorded)
        load_module(BASE).f(3)
    monkeypatch.setattr(_call_key, "KEY_SCHEME", _call_key.KEY_SCHEME + 1)
    monkeypatch.setattr(_cache_reports, "KEY_SCHEME", _call_key.KEY_SCHEME)
    explanation = load_module(BASE).f.explain(3)
    assert explanation.changed == ("scheme",)
    assert explanation.reasons == (f"the key scheme (not recorded -> {_call_key.KEY_SCHEME})",)
    # Another edit as well: that edit is the reason, the scheme is not claimed.
    edited = load_module(BASE.replace("SCALE = 2", "SCALE = 3")).f.explain(3)
    assert edited.reasons == ("global 'SCALE'",)


def test_ignore_leaves_arguments_out_of_the_key(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    module = load_module("""
        import threading
        import cache_probe
        from marimo_store import persistent_cache

        @persistent_cache(store=cache_probe.store, ignore=("progress", "lock"))
        def f(x, progress=None, lock=None):
            cache_probe.calls.append(x)
            return x + 1
    """)
    assert module.f(1, progress="10%", lock=module.threading.Lock()) == 2
    assert module.f(1, progress="90%") == 2
    assert probe.calls == [1]
    assert set(module.f.explain(1).components) == {"code", "arg:x"}


def test_async_functions(load_module: ModuleLoader, probe: types.ModuleType) -> None:
    module = load_module("""
        import asyncio
        import cache_probe
        from marimo_store import persistent_cache

        @persistent_cache(store=cache_probe.store)
        async def fetch(x):
            cache_probe.calls.append(x)
            await asyncio.sleep(0)
            return {"x": x}
    """)

    async def main() -> list[Any]:
        return [await module.fetch(1), await module.fetch(1), await module.fetch(2)]

    assert asyncio.run(main()) == [{"x": 1}, {"x": 1}, {"x": 2}]
    assert probe.calls == [1, 2]
    assert module.fetch.cache_info().hits == 1


def test_methods_key_on_the_instance_and_the_other_methods(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    source = """
        import cache_probe
        from marimo_store import persistent_cache

        class Model:
            def __init__(self, k):
                self.k = k

            def weight(self):
                return {weight}

            @persistent_cache(store=cache_probe.store)
            def predict(self, x):
                cache_probe.calls.append((self.k, x))
                return self.k * x * self.weight()
    """
    module = load_module(source.format(weight=1))
    model = module.Model(3)
    assert model.predict(2) == model.predict(2) == 6
    assert module.Model(4).predict(2) == 8
    assert probe.calls == [(3, 2), (4, 2)]
    assert model.predict.explain(2).hit
    assert model.predict.cache_info().entries == 2
    edited = load_module(source.format(weight=10))
    assert edited.Model(3).predict(2) == 60  # another method changed: a miss
    assert edited.Model(3).predict.explain(2).hit


def test_functions_passed_as_arguments_count_with_what_they_read(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    module = load_module("""
        import cache_probe
        from marimo_store import persistent_cache

        SCALE = 2

        def scale(x):
            return x * SCALE

        def make_adder(k):
            def add(x):
                return x + k
            return add

        @persistent_cache(store=cache_probe.store)
        def apply(fn, x):
            cache_probe.calls.append(x)
            return fn(x)
    """)
    assert module.apply(module.make_adder(1), 5) == 6
    assert module.apply(module.make_adder(2), 5) == 7  # another closure: another key
    assert module.apply(module.make_adder(2), 5) == 7
    assert module.apply(module.scale, 3) == 6
    module.SCALE = 3  # read by the function passed in, not by `apply`
    assert module.apply(module.scale, 3) == 9
    assert len(probe.calls) == 4
    assert module.apply.explain(module.scale, 3).hit


def test_a_method_misses_when_a_global_read_by_another_method_changes(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    module = load_module("""
        import cache_probe
        from marimo_store import persistent_cache

        RATE = 0.5

        class Account:
            def __init__(self, balance):
                self.balance = balance

            def rate(self):
                return RATE

            @persistent_cache(store=cache_probe.store)
            def interest(self):
                cache_probe.calls.append(self.balance)
                return self.balance * self.rate()
    """)
    assert module.Account(100).interest() == 50
    module.RATE = 0.25
    assert module.Account(100).interest() == 25
    assert module.Account(100).interest() == 25
    assert probe.calls == [100, 100]


def test_a_raising_function_stores_nothing(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    module = load_module("""
        import cache_probe
        from marimo_store import persistent_cache

        @persistent_cache(store=cache_probe.store)
        def f(x):
            cache_probe.calls.append(x)
            if len(cache_probe.calls) == 1:
                raise RuntimeError("first call fails")
            return x
    """)
    with pytest.raises(RuntimeError, match="first call fails"):
        module.f(1)
    assert probe.store.entries() == []
    assert module.f(1) == 1
    assert module.f(1) == 1
    assert probe.calls == [1, 1]


def test_an_unstorable_result_is_returned_with_one_warning(
    load_module: ModuleLoader, probe: types.ModuleType
) -> None:
    module = load_module("""
        import threading
        import cache_probe
        from marimo_store import persistent_cache

        @persistent_cache(store=cache_probe.store)
        def make_lock(x):
            cache_probe.calls.append(x)
            return threading.Lock()

        @persistent_cache(store=cache_probe.store, on_error="raise")
        def make_lock_strictly(x):
            return threading.Lock()
    """)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lock = module.make_lock(1)
    assert isinstance(lock, type(module.threading.Lock()))
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert len(messages) == 1
    assert "make_lock was not stored" in messages[0] and "lock" in messages[0]
    assert probe.store.entries() == []
    with pytest.raises(SerializationError, match="cannot pickle"):
        module.make_lock_strictly(1)


def test_json_format_and_large_results(make_store: StoreFactory) -> None:
    store = make_store()

    @persistent_cache(store=store, format="json")
    def table(n: int) -> dict[str, list[int]]:
        return {"n": list(range(n))}

    @persistent_cache(store=store)
    def big(n: int) -> np.ndarray[Any, Any]:
        return np.arange(n, dtype=np.float64)

    assert table(3) == table(3) == {"n": [0, 1, 2]}
    assert {ref.format for m in store.entries() for ref in m.variables.values()} == {"json"}
    first = big(1_000_000)
    again = big(1_000_000)
    assert np.array_equal(first, again)
    assert first.flags.writeable and again.flags.writeable  # the hit as the miss: copy-on-write
    assert big.cache_info().bytes >= first.nbytes


def test_cache_clear_tombstones_this_blocks_entries(
    load_module: ModuleLoader, probe: types.ModuleType, make_store: StoreFactory
) -> None:
    module = load_module(BASE)
    module.f(1)
    module.f(2)
    other = load_module(BASE.replace("return helper(a) + b", "return helper(a) * b"))
    other.f(1)
    assert module.f.cache_clear() == 2
    assert module.f.cache_info() == CacheInfo(
        hits=0, misses=0, maxsize=None, currsize=0, entries=0, bytes=0, store=probe.store.path
    )
    assert other.f.cache_info().entries == 1  # another block
    module.f(1)
    assert len(probe.calls) == 4
    # Another process (here: instance) sees the deletions too.
    reader = make_store(refresh_interval=0)
    assert len(reader.entries()) == 2


def test_cleanup_keeps_every_argument_of_a_sweep(
    load_module: ModuleLoader, probe: types.ModuleType, make_store: StoreFactory
) -> None:
    """The default strategy keeps 3 entries per *block*; the calls of one
    function (one block) are kept by `max_calls_per_function` instead."""
    module = load_module(BASE)
    for a in range(20):
        module.f(a)
    report = probe.store.cleanup()
    assert report.dropped == []
    fresh = load_module(BASE)
    probe.calls.clear()
    assert [fresh.f(a) for a in range(20)] == [2 * a + 1 for a in range(20)]
    assert probe.calls == []


def test_named_blocks_and_versions(make_store: StoreFactory) -> None:
    store = make_store()
    calls: list[int] = []

    def compute(x: int) -> int:
        calls.append(x)
        return x

    first = persistent_cache(store=store, name="model", version=1, ignore="calls")(compute)
    second = persistent_cache(store=store, name="model", version=2, ignore="calls")(compute)
    first(1)
    second(1)
    first(1)
    assert calls == [1, 1]
    assert {m.key.block_id for m in store.entries()} == {"model"}
    assert first.explain(1).hit and not second.explain(2).hit
    assert second.explain(1).hit
    assert first.explain(1).components["version"] != second.explain(1).components["version"]


def test_bad_options_and_targets_are_refused(store: FsPersistentStore) -> None:
    def f(x: int) -> int:
        return x

    def numbers(n: int) -> Any:
        yield from range(n)

    for options, message in (
        ({"format": "yaml"}, "format must be"),
        ({"on_error": "ignore"}, "on_error must be"),
        ({"single_flight": -1}, "single_flight must be"),
        ({"name": ""}, "name must be"),
        ({"ignore": [1]}, "ignore must name"),
        ({"store": "some/path"}, "store must be"),
        ({"version": types.SimpleNamespace(lock=__import__("threading").Lock())}, "version="),
    ):
        with pytest.raises(InvalidArgumentError, match=message):
            persistent_cache(**{"store": store, **options})(f)  # type: ignore[call-overload]
    with pytest.raises(InvalidArgumentError, match="generator"):
        persistent_cache(store=store)(numbers)
    with pytest.raises(InvalidArgumentError, match="decorates functions"):
        persistent_cache(store=store)(len)  # type: ignore[arg-type]


def test_ignore_names_are_checked_at_decoration(make_store: StoreFactory) -> None:
    store = make_store()

    def train(data: list[int], epochs: int, progress: object = None) -> int:
        return len(data) * epochs

    with pytest.raises(InvalidArgumentError) as raised:
        persistent_cache(store=store, ignore=("epohcs",))(train)
    message = str(raised.value)
    assert "'epohcs'" in message and "its parameters: data, epochs, progress" in message
    cached = persistent_cache(store=store, ignore=("progress",))(train)
    assert cached([1, 2], 3, progress=print) == cached([1, 2], 3, progress=None) == 6
    assert cached.cache_info().hits == 1  # progress is not part of the key

    def anything(**options: object) -> int:  # any keyword may be an argument
        return len(options)

    persistent_cache(store=store, ignore=("verbose",))(anything)


def test_cache_info_has_functools_fields(make_store: StoreFactory) -> None:
    store = make_store(cleanup_strategy=DefaultCleanupStrategy(max_calls_per_function=5))

    @persistent_cache(store=store)
    def double(x: int) -> int:
        return 2 * x

    for x in (1, 2, 2):
        double(x)
    info = double.cache_info()
    assert (info.hits, info.misses, info.maxsize, info.currsize) == (1, 2, 5, 2)
    unbounded = persistent_cache(store=make_store())(double.__wrapped__)
    assert unbounded.cache_info().maxsize is None


def test_expire_computes_old_results_again_and_cleanup_drops_them(
    make_store: StoreFactory,
) -> None:
    store = make_store()

    @persistent_cache(store=store, expire=0.3)
    def stamp(x: int) -> float:
        return time.monotonic()

    first = stamp(1)
    assert stamp(1) == first  # a hit while fresh
    time.sleep(0.4)
    second = stamp(1)
    assert second != first  # expired: computed again
    assert stamp(1) == second
    info = stamp.cache_info()
    assert (info.hits, info.misses) == (2, 2)
    time.sleep(0.4)
    report = store.cleanup()
    assert {d.reason for d in report.dropped} == {"expired (its function's expire=)"}
    assert len(report.dropped) == 2
    with pytest.raises(InvalidArgumentError, match="expire must be"):
        persistent_cache(store=store, expire=0)
