"""A function's `def` found without `inspect` is the one inspect finds.

Code digests hash the syntax tree of the block `inspect.getsourcelines`
returns; `_code_identity._definition_in_lines` finds that block from the
code's positions and indentation instead (no `inspect`, no `tokenize`). It
must give the same tree, or None and let inspect decide: a different tree
would change the keys of every cache already written.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import json
import linecache
import os
import pkgutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import conftest
import pytest
from conftest import ModuleLoader
from workers import stress

from marimo_store import _code_identity
from marimo_store._code_identity import (
    _definition_in_lines,
    _file_lines,
    _inspected_definition,
    _source_definition,
)
from marimo_store._value_hash import _bytecode_digest, _source_digest, code_digest

_CO_OPTIMIZED = 0x1  # a function's code, not a class body's

PACKAGES = ["email", "asyncio", "json", "marimo_store"]
"""Packages whose every module is read (but `__main__` and Windows')."""
MODULES = [argparse, ast, dataclasses, conftest, stress]


def _modules() -> list[types.ModuleType]:
    names = [
        info.name
        for package in PACKAGES
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + ".")
        if "__main__" not in info.name and "windows" not in info.name
    ]
    return [*MODULES, *map(importlib.import_module, [*PACKAGES, *names])]


def found(func: types.FunctionType) -> bool:
    """Whether the line scan found `func`'s `def`; if so, it must be inspect's."""
    fast = _definition_in_lines(func)
    if fast is None:
        return False
    slow = _inspected_definition(func)
    assert slow is not None, func.__qualname__
    assert ast.dump(fast) == ast.dump(slow), func.__qualname__
    return True


def _functions(module: types.ModuleType) -> Iterator[types.FunctionType]:
    """The module's functions and methods, and every `def` nested in them."""
    pending: list[Any] = [module]
    seen: set[int] = set()
    while pending:
        owner = pending.pop()
        for value in list(vars(owner).values()):
            if isinstance(value, type) and value.__module__ == module.__name__:
                if id(value) not in seen:
                    seen.add(id(value))
                    pending.append(value)
                continue
            for func in _code_identity._functions_of(value):
                if isinstance(func, types.FunctionType) and func.__module__ == module.__name__:
                    yield from _with_nested(func)


def _with_nested(func: types.FunctionType) -> Iterator[types.FunctionType]:
    """`func`, and a function for each `def` nested in it (in classes too)."""
    yield func
    pending = [func.__code__]
    while pending:
        for const in pending.pop().co_consts:
            if isinstance(const, types.CodeType):
                pending.append(const)
                if const.co_flags & _CO_OPTIMIZED and not const.co_name.startswith("<"):
                    cells = tuple(types.CellType() for _ in const.co_freevars)
                    yield types.FunctionType(const, func.__globals__, const.co_name, None, cells)


def test_every_def_of_real_modules_is_inspects_or_left_to_inspect() -> None:
    functions = [func for module in _modules() for func in _functions(module)]
    missed = [func for func in functions if not found(func)]
    # Left to inspect: wrappers that carry `__wrapped__` (inspect reads the
    # wrapped function) and functions renamed after their `def` (inspect
    # finds no `def` of that name either). Any other is a scan that failed.
    lost = [
        func.__qualname__
        for func in missed
        if not hasattr(func, "__wrapped__") and _inspected_definition(func) is not None
    ]
    assert len(functions) > 1500
    assert len(missed) <= len(functions) // 100, [func.__qualname__ for func in missed]
    assert lost == []


def test_source_files_read_as_linecache_reads_them() -> None:
    files = {func.__code__.co_filename for module in _modules() for func in _functions(module)}
    for filename in files:
        linecache.checkcache(filename)
        lines = _file_lines(filename)
        assert lines == linecache.getlines(filename), filename


@pytest.mark.parametrize(
    "data",
    [
        b"a = 1\r\nb = 2\rc = 3\n",
        b"x = '\x0c'\n\ny = 2",
        b"",
        b"\n\n\n",
        b"s = '\xc2\x85\xe2\x80\xa8'\n",
        b'"""Decoding, not a declaration of an encoding."""\n',
    ],
)
def test_newlines_and_a_missing_last_one_read_as_linecache_reads_them(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "lines.py"
    path.write_bytes(data)
    assert _file_lines(str(path)) == linecache.getlines(str(path))


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbfx = 1\n",
        b"# -*- coding: latin-1 -*-\nx = '\xe9'\n",
        b"#!/usr/bin/env python\n# vim: set fileencoding=latin-1 :\nx = '\xe9'\n",
        b"x = '\xe9'\n",
    ],
)
def test_files_that_may_declare_another_encoding_or_are_not_utf8_are_left_to_linecache(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "encoded.py"
    path.write_bytes(data)
    assert _file_lines(str(path)) is None


CASES = '''
def decorate(*args, **kwargs):
    return identity


def identity(func):
    return func


@decorate(
    "a",
    b=1,
)
@identity
def decorated(x):
    return x


def outer(k):
    def nested(x):
        return x + k

    class Inner:
        def method(self):
            return k

    return nested, Inner


class Plain:
    def method(self, x):
        return x * 2

    @staticmethod
    def static(x):
        return x

    @decorate(
        1,
    )
    def docstring_method(self):
        """Only a docstring."""


async def coroutine(x):
    async with x:
        return await x


def trailing_comments(x):
    return x
    # a comment after the body
# a comment at the margin


def dead_code(x):
    return x
    print("never")
    y = x + 1


def docstring_only():
    """A docstring
that reaches the margin
"""


def docstring_only_indented():
    """A docstring
    over two lines."""


def ends_in_a_call(x):
    return max(
        x,
        0,
    )


def string_at_margin(x):
    text = """
at the margin
"""
    return text + x


def dead_string_at_margin(x):
    return x
    """
at the margin
"""


def continued(x):
    return x + \\
1


def one_liner(x): return x


class Tabbed:
\tdef method(self):
\t\treturn 1


square = lambda x: x * x
'''


def test_each_kind_of_def_is_found_as_inspect_finds_it(load_module: ModuleLoader) -> None:
    module = load_module(CASES)
    nested, inner = module.outer(1)
    for func in [
        module.decorated, nested, inner.method, module.Plain.method, module.Plain.static,
        module.Plain.docstring_method, module.coroutine, module.trailing_comments,
        module.dead_code, module.docstring_only_indented, module.ends_in_a_call,
        module.string_at_margin, module.continued, module.one_liner, module.Tabbed.method,
    ]:  # fmt: skip
        assert found(func), func.__qualname__
        assert (_source_definition(func) is None) == (func.__closure__ is not None)
    # A string that reaches the margin where the positions do not (a
    # docstring alone, dead code): the block stops inside it and does not
    # parse, so inspect decides, and still finds the source.
    for func in [module.docstring_only, module.dead_string_at_margin]:
        assert not found(func), func.__qualname__
        assert _source_digest(func) is not None
    assert _source_definition(module.square) is None  # a lambda: the bytecode
    assert code_digest(module.square) == _bytecode_digest(module.square.__code__)


def test_the_block_is_not_read_past_its_first_statement(load_module: ModuleLoader) -> None:
    module = load_module("""
        def f(x):

            return x
    """)
    # Edited behind the module's back: another `def` where f's was, and
    # within f's old lines a new f that compiles to the running code.
    # Inspect's block is `g` alone: no f there, so the bytecode is hashed.
    path = Path(module.__file__)
    path.write_text("\ndef g(x): pass\ndef f(x): return x\n")  # f was on line 2
    os.utime(path, ns=(1, 1))
    assert _definition_in_lines(module.f) is None
    assert _source_digest(module.f) is None


def test_a_def_run_by_exec_is_found_through_its_linecache_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = "@staticmethod\ndef f(x):\n    return x + 1\n"
    filename = "<marimo_store-test-cell>"
    monkeypatch.setitem(
        linecache.cache, filename, (len(source), None, source.splitlines(True), filename)
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)
    assert found(namespace["f"].__func__)
    assert code_digest(namespace["f"].__func__) == _source_digest(namespace["f"].__func__)

    unseen: dict[str, Any] = {}
    exec(compile(source, "<marimo_store-test-no-source>", "exec"), unseen)
    assert _definition_in_lines(unseen["f"].__func__) is None
    assert code_digest(unseen["f"].__func__) == _bytecode_digest(unseen["f"].__func__.__code__)


def test_a_wrapper_is_left_to_inspect_which_reads_the_wrapped_function() -> None:
    def wrapped(x: int) -> int:
        return x

    def wrapper(x: int) -> int:
        return wrapped(x)

    wrapper.__wrapped__ = wrapped  # type: ignore[attr-defined]
    assert _definition_in_lines(wrapper) is None
    assert found(wrapped)


FIRST_CALL = """
import ast, json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import first_call
assert first_call.f(3) == 9
loaded = set(sys.modules) - before
from marimo_store._code_identity import _definition_in_lines, _inspected_definition
func = first_call.f.__wrapped__
fast = _definition_in_lines(func)
same = fast is not None and ast.dump(fast) == ast.dump(_inspected_definition(func))
print(json.dumps({"loaded": sorted(loaded), "computed": first_call.computed, "same": same}))
"""


def test_the_first_get_in_a_fresh_process_imports_neither_inspect_tokenize_nor_pickle(
    tmp_path: Path,
) -> None:
    (tmp_path / "first_call.py").write_text(
        "from marimo_store import FsPersistentStore, persistent_cache\n\n"
        f"store = FsPersistentStore({str(tmp_path / 'store')!r})\n"
        "computed = 0\n\n\n"
        "@persistent_cache(store=store)\n"
        "def f(x):\n"
        "    global computed\n"
        "    computed += 1\n"
        "    return x * x\n"
    )
    command = [sys.executable, "-c", FIRST_CALL, str(tmp_path)]
    runs = [
        json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        for _ in range(2)
    ]
    assert [run["computed"] for run in runs] == [1, 0]  # a put (it imports logging), a get
    assert "marimo_store.cache" in runs[1]["loaded"]
    assert not {"inspect", "tokenize", "linecache", "pickle"} & set(runs[1]["loaded"])
    assert runs[1]["same"]
