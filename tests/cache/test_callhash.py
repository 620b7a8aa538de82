"""Execution hashing: canonical values, code digests, binding, dependencies."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tracemalloc
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ModuleLoader

from marimo_store import InvalidArgumentError, _call_key
from marimo_store._call_key import CallHasher
from marimo_store._value_hash import (
    Unhashable,
    _bytecode_digest,
    _source_digest,
    code_digest,
    value_digest,
)


def hasher(func: Any, **options: Any) -> CallHasher:
    settings: dict[str, Any] = {"name": None, "ignore": (), "version": None, "pin_modules": False}
    settings.update(options)
    return CallHasher(func, **settings)


# -- values ---------------------------------------------------------------------------


def test_distinct_values_of_distinct_types_hash_apart() -> None:
    values: list[Any] = [
        None, True, False, 0, 1, 1.0, -0.0, 0.0, 1j, "1", b"1", bytearray(b"1"),
        memoryview(b"1"), (1,), [1], {1}, frozenset({1}), {1: 1}, {"1": 1}, 2**70, -(2**70),
        "", b"", (), [], {}, ((),), [[]], ("a", "b"), ("ab",), int, str,
    ]  # fmt: skip
    digests = [value_digest(value) for value in values]
    assert len(set(digests)) == len(values)


def test_dict_and_set_order_do_not_count() -> None:
    a = {"x": 1, "y": [1, {"z": {3, 1, 2}}]}
    b = {"y": [1, {"z": {2, 3, 1}}], "x": 1}
    assert value_digest(a) == value_digest(b)
    assert value_digest(a) != value_digest({"x": 1, "y": [1, {"z": {3, 1}}]})
    # ... but sequence order does, and OrderedDict's order is its meaning.
    assert value_digest([1, 2]) != value_digest([2, 1])
    assert value_digest(OrderedDict(a=1, b=2)) != value_digest(OrderedDict(b=2, a=1))


def test_cycles_hash_without_recursing_forever() -> None:
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert value_digest(a) == value_digest(b)
    assert value_digest(a) != value_digest([1, [1]])


def test_numpy_arrays_hash_by_dtype_shape_and_bytes() -> None:
    base = np.arange(12, dtype=np.int64)
    assert value_digest(base) == value_digest(np.arange(12, dtype=np.int64))
    assert value_digest(base) != value_digest(base.astype(np.int32))
    assert value_digest(base) != value_digest(base.reshape(3, 4))
    changed = base.copy()
    changed[5] = -1
    assert value_digest(base) != value_digest(changed)
    matrix = np.arange(12.0).reshape(3, 4)
    assert value_digest(matrix.T) == value_digest(np.ascontiguousarray(matrix.T))
    dates = np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]")
    assert value_digest(dates) != value_digest(dates + 1)
    assert value_digest(np.float64(1.5)) != value_digest(1.5)
    assert value_digest(np.array(["a", 1], dtype=object)) != value_digest(
        np.array(["a", 2], dtype=object)
    )


def test_large_buffers_are_hashed_without_a_copy() -> None:
    array = np.ones(16 * 1024 * 1024, dtype=np.uint8)  # 16 MiB
    for value in (array, array.data, bytes(8 * 1024 * 1024), pd.Series(array)):
        tracemalloc.start()
        try:
            value_digest(value)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024, f"{type(value).__name__}: {peak} bytes allocated"


def test_pandas_frames_hash_by_content_not_memory_layout() -> None:
    consolidated = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6], "s": ["x", "y", "z"]})
    built = pd.DataFrame({"a": [1, 2, 3]})
    built["b"] = [4, 5, 6]  # a second block
    built["s"] = ["x", "y", "z"]
    assert value_digest(consolidated) == value_digest(built)
    assert value_digest(consolidated) != value_digest(consolidated.assign(b=[4, 5, 7]))
    assert value_digest(consolidated) != value_digest(consolidated.set_axis([1, 2, 3]))
    assert value_digest(consolidated) != value_digest(consolidated.rename(columns={"s": "t"}))
    assert value_digest(consolidated["a"]) != value_digest(consolidated["a"].rename("z"))
    categories = pd.Series(["u", "v", "u"], dtype="category")
    assert value_digest(categories) != value_digest(pd.Series(["u", "v", "v"], dtype="category"))


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float


class Plain:
    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


class Numbers(list[int]):
    """A list subclass: its items live outside `__dict__`."""


def test_dataclasses_and_plain_instances_hash_by_their_fields() -> None:
    assert value_digest(Point(1, 2)) == value_digest(Point(1, 2))
    assert value_digest(Point(1, 2)) != value_digest(Point(1, 3))
    assert value_digest(Plain(a=1, b=[2])) == value_digest(Plain(b=[2], a=1))
    assert value_digest(Plain(a=1)) != value_digest(Plain(a=2))
    assert value_digest(Numbers([1, 2])) != value_digest(Numbers([1, 3]))


def test_functions_in_values_hash_by_their_code() -> None:
    assert value_digest([lambda x: x + 1]) == value_digest([lambda x: x + 1])
    assert value_digest([lambda x: x + 1]) != value_digest([lambda x: x + 2])
    assert value_digest(Plain(f=lambda: 1)) != value_digest(Plain(f=lambda: 2))


def factorial(n: int) -> int:
    return 1 if n <= 1 else n * factorial(n - 1)


def test_recursive_functions_as_values_hash_without_recursing_forever() -> None:
    home = factorial.__module__
    digest = value_digest(factorial, home_module=home)
    assert digest == value_digest(factorial, home_module=home)
    assert value_digest([factorial, {"f": factorial}], home_module=home)


def constant(k: int) -> Any:
    return lambda: k


def test_closure_values_count_even_inside_pickled_objects() -> None:
    assert value_digest(OrderedDict(f=constant(1))) == value_digest(OrderedDict(f=constant(1)))
    assert value_digest(OrderedDict(f=constant(1))) != value_digest(OrderedDict(f=constant(2)))


def test_unpicklable_values_are_unhashable() -> None:
    import threading

    with pytest.raises(Unhashable, match="lock"):
        value_digest({"lock": threading.Lock()})


# -- code ------------------------------------------------------------------------------


def test_comments_and_formatting_do_not_change_the_code_digest(load_module: ModuleLoader) -> None:
    first = load_module("""
        def f(a, b=2):
            return a + b
    """)
    second = load_module("""
        # a comment
        def f(a,  b = 2):   # another
            return (a +
                    b)
    """)
    third = load_module("""
        def f(a, b=2):
            return a - b
    """)
    assert code_digest(first.f) == code_digest(second.f) != code_digest(third.f)
    assert _source_digest(first.f) is not None  # the syntax tree, not the bytecode


def test_decorators_are_not_the_functions_code(load_module: ModuleLoader) -> None:
    plain = load_module("""
        def f(a):
            return a
    """)
    decorated = load_module("""
        import functools

        @functools.lru_cache(maxsize=3)
        def f(a):
            return a
    """)
    assert code_digest(plain.f) == code_digest(decorated.f.__wrapped__)


def test_a_source_file_edited_after_import_is_not_trusted(load_module: ModuleLoader) -> None:
    module = load_module("""
        def f(a):
            return a + 1
    """)
    assert code_digest(module.f) == _source_digest(module.f)
    # Edit the file behind the imported module's back (a notebook without a
    # reload): the same lines, another body. Hashing that source would file
    # the old code's results under the new code's key.
    path = Path(module.__file__)
    path.write_text(path.read_text().replace("a + 1", "a + 2"))
    os.utime(path, ns=(1, 1))  # the line cache must notice, whatever the clock says
    assert _source_digest(module.f) is None  # the source does not compile to f's code
    module.f.__code__ = module.f.__code__.replace()  # a code object not digested yet
    assert code_digest(module.f) == _bytecode_digest(module.f.__code__)


def test_lambdas_and_nested_functions_hash_by_bytecode_when_needed() -> None:
    def outer(k: int) -> Any:
        def inner(x: int) -> int:
            return x + k

        return inner

    assert code_digest(outer(1)) == code_digest(outer(2))  # the same code
    assert code_digest(lambda x: x) != code_digest(lambda x: -x)


# -- calls -----------------------------------------------------------------------------


def test_arguments_bind_to_parameter_names_with_defaults() -> None:
    def f(a: int, b: int = 2, *args: int, c: int = 3, **kwargs: int) -> None:
        pass

    key = hasher(f).key
    same = {
        key((1,), {}).key,
        key((1, 2), {}).key,
        key((1,), {"b": 2}).key,
        key((), {"a": 1, "b": 2}).key,
        key((), {"b": 2, "a": 1, "c": 3}).key,
    }
    assert len(same) == 1
    others = [
        key((1, 3), {}).key,
        key((1, 2, 9), {}).key,
        key((1,), {"c": 4}).key,
        key((1,), {"d": 4}).key,
    ]
    assert len({*same, *others}) == 5
    assert key((1,), {"d": 4, "e": 5}).key == key((1,), {"e": 5, "d": 4}).key


def test_the_key_scheme_version_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new scheme makes every key differ (a clean miss), while equal calls
    keep equal keys and the components explain() compares do not change."""

    def f(a: int, b: int = 2) -> int:
        return a + b

    before = hasher(f).key((1,), {})
    monkeypatch.setattr(_call_key, "KEY_SCHEME", _call_key.KEY_SCHEME + 1)
    after = hasher(f).key((1,), {})
    assert after.key.block_id == before.key.block_id
    assert after.key.module_hash != before.key.module_hash
    assert after.components == before.components
    assert hasher(f).key((), {"a": 1, "b": 2}).key == after.key


def test_binding_errors_are_the_calls_type_errors() -> None:
    def f(a: int, /, b: int, *, c: int) -> None:
        pass

    key = hasher(f).key
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3"):
        key((1, 2, 3), {"c": 1})
    with pytest.raises(TypeError, match="missing required argument 'b'"):
        key((1,), {"c": 1})
    with pytest.raises(TypeError, match="missing keyword argument 'c'"):
        key((1, 2), {})
    with pytest.raises(TypeError, match="multiple values for 'b'"):
        key((1, 2), {"b": 2, "c": 1})
    with pytest.raises(TypeError, match="unexpected keyword argument 'a'"):
        key((0,), {"a": 1, "b": 2, "c": 1})


def test_an_unhashable_argument_is_named_with_a_remedy() -> None:
    import threading

    def f(data: Any, lock: Any) -> None:
        pass

    with pytest.raises(InvalidArgumentError) as caught:
        hasher(f).key((1, threading.Lock()), {})
    message = str(caught.value)
    assert "argument 'lock'" in message
    assert "_thread.lock" in message
    assert "ignore=('lock',)" in message
    # ... and ignoring it works.
    assert hasher(f, ignore=("lock",)).key((1, threading.Lock()), {}).key


def test_dependencies_count_transitively(load_module: ModuleLoader) -> None:
    source = """
        import math
        import os.path

        FACTOR = {factor}

        def leaf(x):
            return x * FACTOR

        def middle(x):
            return leaf(x) + {offset}

        class Shape:
            def area(self):
                return {area}

        def f(x):
            return middle(x) + math.floor(x) + Shape().area() + len(os.path.sep)
    """
    base = load_module(source.format(factor=2, offset=1, area=3))
    components = hasher(base.f).key((1,), {}).components
    assert set(components) == {
        "code", "function:middle", "function:leaf", "global:FACTOR", "class:Shape", "arg:x"
    }  # fmt: skip
    key = hasher(base.f).key((1,), {}).key
    for change in ({"factor": 3}, {"offset": 2}, {"area": 4}):
        settings = {"factor": 2, "offset": 1, "area": 3, **change}
        edited = load_module(source.format(**settings))
        assert hasher(edited.f).key((1,), {}).key != key, change
    same = load_module(source.format(factor=2, offset=1, area=3))
    assert hasher(same.f).key((1,), {}).key == key


def test_closure_cells_count() -> None:
    def make(k: int) -> Any:
        def f(x: int) -> int:
            return x + k

        return f

    assert hasher(make(1)).key((1,), {}).key != hasher(make(2)).key((1,), {}).key
    assert "cell:k" in hasher(make(1)).key((1,), {}).components


def test_pin_modules_adds_package_versions(load_module: ModuleLoader) -> None:
    module = load_module("""
        import numpy as np
        import json

        def f(x):
            return np.sum(x) + len(json.dumps(x))
    """)
    assert not any(c.startswith("module:") for c in hasher(module.f).key((1,), {}).components)
    pinned = hasher(module.f, pin_modules=True).key((1,), {}).components
    assert pinned["module:numpy"] == np.__version__
    assert "module:json" not in pinned  # the standard library has no version of its own
    named = hasher(module.f, pin_modules=("pandas",)).key((1,), {}).components
    assert named["module:pandas"] == pd.__version__


KEY_SCRIPT = """
import importlib.util, json, sys, types
import numpy as np, pandas as pd
sys.modules["cache_probe"] = types.ModuleType("cache_probe")
spec = importlib.util.spec_from_file_location("stable_module", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["stable_module"] = module
spec.loader.exec_module(module)
from marimo_store._call_key import CallHasher
hasher = CallHasher(module.f, name=None, ignore=(), version="v1", pin_modules=False)
print(json.dumps(hasher.key(*module.arguments()).components))
"""

STABLE_MODULE = """
import dataclasses
import numpy as np
import pandas as pd

WORDS = {"alpha", "beta", "gamma", "delta"}

@dataclasses.dataclass
class Config:
    tags: frozenset
    weights: dict

def helper(x):
    return sorted(WORDS)[x % 4]

def f(config, frame, array, *names, **options):
    return helper(len(names))

def arguments():
    config = Config(frozenset({"x", "y", "zeta"}), {"b": 2.5, "a": [1, None]})
    frame = pd.DataFrame({"n": [1, 2], "s": ["p", "q"]})
    return (config, frame, np.arange(6).reshape(2, 3), "u", "v"), {"k": {"s", "t"}}
"""


def test_keys_are_identical_in_a_fresh_process(tmp_path: Path) -> None:
    path = tmp_path / "stable_module.py"
    path.write_text(STABLE_MODULE)
    runs = []
    for seed in ("1", "2"):  # str and set hashing differ between these seeds
        environment = {**os.environ, "PYTHONHASHSEED": seed}
        output = subprocess.run(
            [sys.executable, "-c", KEY_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            check=True,
            env=environment,
            timeout=120,
        ).stdout
        runs.append(json.loads(output))
    assert runs[0] == runs[1]
    assert {"code", "function:helper", "global:WORDS", "arg:config", "arg:names"} <= set(runs[0])


# -- the dependency walk is reused, never stale -----------------------------------------

REUSED = """
import functools

SCALE = 2
ROWS = [1, 2]
NAMES = ("a", ("b", 3))

def leaf(x):
    return x * SCALE + sum(ROWS)

@functools.lru_cache
def decorated(x):
    return x

class Shape:
    def area(self):
        return 1

def f(x, y=1):
    return leaf(x) + decorated(y) + len(NAMES) + Shape().area()
"""


def test_one_hasher_sees_every_change_between_calls(load_module: ModuleLoader) -> None:
    """One hasher (as a cached function keeps) reuses its walk of the
    dependencies between calls; each change below must still change the
    key, and undoing it must give the first key back."""
    module = load_module(REUSED)
    one = hasher(module.f)

    def key() -> str:
        reused = one.key((3,), {})
        fresh = hasher(module.f).key((3,), {})  # walks anew
        assert (reused.key, reused.components) == (fresh.key, fresh.components)
        return reused.key.module_hash

    first = key()
    assert key() == first  # the reused walk gives the same key
    changes: list[tuple[str, Any, Any]] = [
        ("SCALE", 2, 3),  # an immutable global, rebound
        ("NAMES", module.NAMES, ("a", ("b", 4))),  # a nested tuple, rebound
        ("leaf", module.leaf, lambda x: x),  # a helper, rebound
        ("Shape", module.Shape, type("Shape", (), {"area": lambda self: 2})),
    ]
    for name, before, after in changes:
        setattr(module, name, after)
        assert key() != first, name
        setattr(module, name, before)
        assert key() == first, name
    module.ROWS.append(3)  # a mutable global, changed in place
    assert key() != first
    module.ROWS.pop()
    assert key() == first
    code = module.leaf.__code__
    module.leaf.__code__ = (lambda x: x * 2).__code__  # a helper's code replaced in place
    assert key() != first
    module.leaf.__code__ = code
    assert key() == first
    module.Shape.area = lambda self: 3  # a class changed in place
    assert key() != first


def test_a_global_shadowing_a_builtin_later_changes_the_key(load_module: ModuleLoader) -> None:
    module = load_module(REUSED)
    one = hasher(module.f)
    first = one.key((3,), {}).key
    module.sum = 0  # `sum` was the builtin when the walk read it
    assert one.key((3,), {}).key != first
    del module.sum
    assert one.key((3,), {}).key == first


def test_a_decorated_helper_rewrapped_changes_the_key(load_module: ModuleLoader) -> None:
    module = load_module(REUSED)
    one = hasher(module.f)
    first = one.key((3,), {}).key
    module.decorated.__wrapped__ = module.leaf  # the wrapper object stays, its function changes
    assert one.key((3,), {}).key != first


def test_closure_cells_and_defaults_are_read_again(load_module: ModuleLoader) -> None:
    def make(k: int) -> tuple[Any, Any]:
        def f(x: int, y: int = 1) -> int:
            return x + k + y

        def set_k(value: int) -> None:
            nonlocal k
            k = value

        return f, set_k

    f, set_k = make(1)
    one = hasher(f)
    first = one.key((1,), {}).key
    set_k(2)
    assert one.key((1,), {}).key != first
    set_k(1)
    assert one.key((1,), {}).key == first
    f.__defaults__ = (2,)
    assert one.key((1,), {}).key == one.key((1, 2), {}).key != first
    f.__defaults__ = (1,)
    assert one.key((1,), {}).key == first


def test_remembered_keys_tell_equal_arguments_of_other_types_apart() -> None:
    """The key of the last call with scalar arguments is remembered; 1, 1.0
    and True are equal to Python (and 0.0 to -0.0) but not to the key."""

    def f(x: Any, *rest: Any, **options: Any) -> Any:
        return x

    one = hasher(f)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}), ((1.0,), {}), ((True,), {}), ((0.0,), {}), ((-0.0,), {}), ((0,), {}),
        ((False,), {}), (("1",), {}), ((b"1",), {}), ((None,), {}), ((1, 2), {}),
        ((1,), {"a": 2}), ((1,), {"a": 2.0}), ((1,), {"b": 2}), ((1,), {"a": 2, "b": 3}),
    ]  # fmt: skip
    keys = []
    for args, kwargs in calls:
        first = one.key(args, kwargs).key
        again = one.key(args, kwargs).key  # the last call's key, remembered
        assert first == again == hasher(f).key(args, kwargs).key, (args, kwargs)
        keys.append(first)
    assert len(set(keys)) == len(calls)
    assert one.key((1,), {"b": 3, "a": 2}).key == one.key((1,), {"a": 2, "b": 3}).key


def test_a_remembered_key_is_never_compared_with_an_array() -> None:
    """After a call with scalars, a call with an array (whose `==` gives an
    array, and whose truth raises) is hashed, not compared."""

    def f(x: Any) -> Any:
        return x

    one = hasher(f)
    scalar = one.key((1,), {}).key
    array = one.key((np.array([1, 2]),), {}).key
    assert array != scalar
    assert one.key((np.array([1, 2]),), {}).key == array


def test_a_function_reading_one_global_sees_it_rebound_and_deleted(
    load_module: ModuleLoader,
) -> None:
    module = load_module("""
        LIMIT = 1

        def f(x):
            return x + LIMIT
    """)
    one = hasher(module.f)
    first = one.key((1,), {}).key
    module.LIMIT = 2
    assert one.key((1,), {}).key != first
    module.LIMIT = 1
    assert one.key((1,), {}).key == first
    del module.LIMIT
    deleted = one.key((1,), {})
    assert deleted.key != first
    assert "global:LIMIT" not in deleted.components
    module.LIMIT = 1
    assert one.key((1,), {}).key == first
