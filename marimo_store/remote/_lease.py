"""The maintenance lease of a remote: one machine at a time deletes.

An object store has no lock, so one machine at a time collects garbage or
repairs by holding a lease: the object `locks/lease`, taken with
`put_once` (a second taker finds it there and does nothing), naming its
holder and when it lapses, so a crashed holder blocks nobody for longer
than its lease. The invariant: a machine deletes nothing on a remote
unless it holds the lease (`_gc.py`, `_verify.py`), and it releases only
a lease that is still its own (it may have lapsed and been taken by
another machine meanwhile).
"""

from __future__ import annotations

import os
import time

from marimo_store._format.framing import pack, unpack_any
from marimo_store._format.keys import LEASE_KEY
from marimo_store._log import new_writer_id
from marimo_store._media import MediumMissing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from marimo_store._media import Medium


def new_holder() -> str:
    """A holder name of this process, unique to one taking of the lease."""
    return f"{new_writer_id()}-{os.urandom(4).hex()}"


def read_lease(medium: Medium) -> dict[str, Any] | None:
    """The lease as its holder wrote it; None when there is none, `{}` when
    it does not decode."""
    try:
        held = unpack_any(memoryview(medium.read(LEASE_KEY)))
    except MediumMissing:
        return None
    return held if isinstance(held, dict) else {}


def lapsed(held: dict[str, Any]) -> bool:
    """Whether a lease read with `read_lease` no longer holds (or never decoded)."""
    until = held.get("until")
    return not (isinstance(until, int | float) and until > time.time())


def take_lease(medium: Medium, holder: str, lease_seconds: float) -> bool:
    """Take the lease for `holder` (replacing a lapsed one); False when
    another machine holds it."""
    lease = pack({"holder": holder, "until": time.time() + lease_seconds})
    if medium.put_once(LEASE_KEY, (lease,)):
        return True
    held = read_lease(medium)
    if held is not None and not lapsed(held):
        return False
    medium.delete(LEASE_KEY)  # lapsed (its holder crashed), unreadable, or released meanwhile
    return medium.put_once(LEASE_KEY, (lease,))


def release_lease(medium: Medium, holder: str) -> None:
    """Delete the lease if it is still `holder`'s."""
    held = read_lease(medium)
    if held is not None and held.get("holder") == holder:
        medium.delete(LEASE_KEY)
