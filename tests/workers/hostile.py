"""Everything a user and maintenance do to a store, in a process of its own
(run by tests/hostile/ with a timeout: a hang fails the test instead of
stopping the suite).

    python -m workers.hostile STORE_PATH

Prints one line per operation, `name: ok`, `name: miss`, or
`name: <StoreError subclass>`; any other exception escapes (a traceback,
exit code 1). The last line is `done`.
"""

from __future__ import annotations

import sys
import warnings

from marimo_store import Entry, ExecutionKey, FsPersistentStore, StoreError, persistent_cache

KEY = ExecutionKey("block", "module", 1_700_000_000_000)


def square(x: int) -> int:
    return x * x


def main(path: str) -> None:
    warnings.simplefilter("ignore")
    try:
        store = FsPersistentStore(path, cleanup_on_exit=False, entry_merge_timeout_seconds=10**9)
    except StoreError as error:
        print(f"open: {type(error).__name__}")
        print("done")
        return
    print("open: ok")
    operations = {
        "get": lambda: store.get(KEY),
        "put": lambda: store.put(Entry.of(KEY.at(KEY.created_at + 1), {"v": 2})),
        "cached": lambda: persistent_cache(store=store)(square)(5),
        "cleanup": lambda: store.cleanup(include_content=True),
        "verify": store.verify,
        "doctor": store.doctor,
        "repair": lambda: store.verify(repair=True),
        "close": store.close,
    }
    for name, operation in operations.items():
        try:
            result = operation()
        except StoreError as error:
            print(f"{name}: {type(error).__name__}")
            continue
        print(f"{name}: {'miss' if result is None and name == 'get' else 'ok'}")
    print("done")


if __name__ == "__main__":
    main(sys.argv[1])
