"""Reads, maintenance and the CLI on a store, under an address-space limit.

    python -m workers.memory STORE_PATH LIMIT_BYTES

(run by tests/hostile/test_hostile_memory.py).

Sets `RLIMIT_AS` before importing anything of the store, then prints one
JSON document: what each operation returned (or which `StoreError` it
raised), the kinds of problems `verify()` found, and the peak RSS of this
program: `VmHWM` of its own address space, not `ru_maxrss`, which Linux
carries across `execve` from the forking parent (a pytest process grown to
1.3 GiB by earlier tests made this worker report 1.3 GiB).
Any other exception (`MemoryError` above all) escapes: exit code 1.
"""

from __future__ import annotations

import json
import resource
import sys
import warnings
from pathlib import Path


def main(path: str, limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from hostile._hostile import run_cli  # imported only once the limit is set

    from marimo_store import ExecutionKey, FsPersistentStore, StoreError

    warnings.simplefilter("ignore")
    result: dict[str, object] = {}
    store = FsPersistentStore(path, cleanup_on_exit=False, entry_merge_timeout_seconds=10**9)
    found = store.get(ExecutionKey("good-block", "good-module"))
    result["get"] = None if found is None else dict(found.variables)
    for name, operation in (("cleanup", store.cleanup), ("verify", store.verify)):
        try:
            report = operation()
        except StoreError as error:
            result[name] = type(error).__name__
            continue
        if name == "verify":
            result["verify"] = sorted({(p.kind, p.path) for p in report.problems})
        else:
            result[name] = "ok"
    store.close()
    codes = {}
    for command in (("info",), ("ls",), ("verify",), ("doctor",), ("cleanup", "--dry-run")):
        code, _, stderr = run_cli("--store", path, *command)
        assert "Traceback" not in stderr, stderr
        codes[" ".join(command)] = code
    result["cli"] = codes
    again = FsPersistentStore(path, cleanup_on_exit=False, entry_merge_timeout_seconds=10**9)
    found = again.get(ExecutionKey("good-block", "good-module"))
    result["get after"] = None if found is None else dict(found.variables)
    again.close()
    result["peak_rss_kib"] = _peak_rss_kib()
    print(json.dumps(result, default=list))


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])  # "VmHWM:   123456 kB"
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
