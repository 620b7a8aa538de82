"""Code that tests run in other processes, one module per subject:

- `concurrency`: writers and readers of one store at once (test_concurrency,
  test_pickling);
- `flight`: the processes racing for one computation (test_single_flight);
- `hostile`: everything a user and maintenance do, on a hostile folder
  (hostile/test_hostile_paths);
- `memory`: reads, maintenance and the CLI under an address-space limit
  (hostile/test_hostile_memory);
- `objects`: pool and Dask workers saving named objects and calling cached
  functions (test_workers, test_dask, test_handles);
- `stress`: stress, chaos and crash workers (test_stress, test_fuzz, and the
  helpers `_checks.py` and `_crashpoints.py`);
- `trust`: a second "machine" planting entries in a shared store
  (test_trust).

Every module is imported by its full name (`from workers import stress`),
from the tests folder that pytest puts first on `sys.path`. That name is
how a function reaches another process: multiprocessing's "spawn" start
method (and Dask) pickle it by name and the child imports it again, with
the parent's `sys.path`. A module that is also a script is run the same
way, as `python -m workers.<module>` (see `script`), with the tests folder
on `PYTHONPATH`, so that it is imported under the same name as in the tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The folder that holds this package: what a child needs on its path."""


def script(module: str, *args: str) -> list[str]:
    """The command that runs `workers.<module>` as a script with `args`."""
    return [sys.executable, "-m", f"{__name__}.{module}", *args]


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the tests folder
    first on `PYTHONPATH`, so that a `script` finds this package."""
    result = dict(os.environ if base is None else base)
    result["PYTHONPATH"] = os.pathsep.join(
        [TESTS, *([result["PYTHONPATH"]] if result.get("PYTHONPATH") else [])]
    )
    return result
