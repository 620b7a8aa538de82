"""A replica's store in a process of its own, driven over a pipe by the
sync simulator (`ProcessReplica` in `_simulation.py`).

The worker answers each command with ("ok", result) or ("error", traceback);
it exits on "exit" (closing its store; the interpreter's exit then runs the
store's exit cleanup) or when the simulator SIGKILLs it.
"""

from __future__ import annotations

import traceback
import warnings
from multiprocessing.connection import Connection
from pathlib import Path

from _simulation import Recorded, become_host, do_get, do_put, settle, store_options

from marimo_store import FsPersistentStore, StoreWarning


def serve(root: str, grace: float, drops: str, conn: Connection) -> None:
    warnings.simplefilter("ignore", StoreWarning)
    become_host(Path(root).name)  # each replica is another machine (for good: its exit cleanup too)
    store = FsPersistentStore(root, **store_options(grace, drops, exit_cleanup=True))
    while True:
        command, args = conn.recv()
        if command == "exit":
            store.close()
            conn.send(("ok", None))
            return
        try:
            if command == "put":
                result = do_put(store, *args)
            elif command == "get":
                result = do_get(store, *args)
            elif command == "settle":
                result = settle(store)
            else:
                strategy, gc = args
                store.cleanup(Recorded(strategy, drops), include_content=gc)
                result = None
            conn.send(("ok", result))
        except BaseException:
            conn.send(("error", traceback.format_exc()))
