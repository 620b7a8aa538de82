"""A second "machine" writing into a shared store folder, for tests/store/test_trust.py.

    python -m workers.trust STORE KEY MARKER BLOCK:FORMAT [BLOCK:FORMAT ...]

puts, with the signing key file KEY (`-` for none: unsigned entries), one
entry per argument under `ExecutionKey(BLOCK, "planted")`: with FORMAT
`pickle`, a `Tripwire` that creates the file MARKER when it is unpickled
(what a planted pickle could do to any reader); with `json`, plain data.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

from marimo_store import Entry, ExecutionKey, FsPersistentStore

PLANTED = "planted"
JSON_VALUE = {"from": "elsewhere", "n": [1, 2, 3]}


class Tripwire:
    """Unpickling it creates `marker`: proof that a reader ran its code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def plant(store_path: str, key_file: str | None, marker: str, specs: list[str]) -> None:
    """Put the entries described above (see the module docstring)."""
    with FsPersistentStore(store_path, signing_key=key_file, cleanup_on_exit=False) as store:
        for spec in specs:
            block, value_format = spec.split(":")
            key = ExecutionKey(block, PLANTED)
            if value_format == "json":
                store.put(Entry.of(key, {"value": JSON_VALUE}, format="json"))
            else:
                store.put(Entry.of(key, {"value": Tripwire(marker)}, format="pickle"))


if __name__ == "__main__":
    # By name, so that Tripwire pickles as `workers.trust.Tripwire`:
    from workers import trust  # noqa: PLW0406

    store_arg, key_arg, marker_arg, *spec_args = sys.argv[1:]
    trust.plant(store_arg, None if key_arg == "-" else key_arg, marker_arg, spec_args)
