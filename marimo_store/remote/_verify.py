"""`RemoteStore.verify()`: check every byte of a remote, and with `repair` fix it.

Reads never need this: a remote read checks every object against its name
and applies only whole sealed segments, so damage costs a miss. What
`verify()` adds is a pass that finds damage before a read runs into it and
leaves a remote a second `verify()` finds nothing wrong with. The pass, in
the order that keeps it true while other machines put:

1. **Segments** are listed first and each is decoded whole, up to its close
   record (one not closed at its end is torn, one that is but does not
   decode is damaged); the entries of those that decode make the index.
2. **Objects** are listed after the segments, so every object an entry
   listed in step 1 needs was put before its listing; each is re-hashed
   against its name in ranged reads of `HASH_CHUNK` bytes, `READ_AHEAD` in
   flight (never a whole large object in memory). An object another machine deletes meanwhile
   (a cleanup) is skipped.
3. **Entries**: every live entry's objects must be there and whole (an
   object missing from the listing is asked for once more).
4. **Other keys**: a lapsed lease left by a crashed cleanup (read first,
   before a repair takes the lease), and any key that is not a name the
   store writes (left alone: a prefix may be shared).

Repair, only while holding the remote's lease (`_lease.py`; when another
machine holds it nothing is changed and `skipped` says so): a damaged
object is deleted only if a second read shows the same damage, so a later
put stores it again (a put finds an object by its name and size); a
segment that does not decode is moved aside, put once under `quarantine/`
then deleted, never dropped; entries whose objects are missing or damaged
are tombstoned, so they stay misses until put again. The invariant: repair
deletes only what it read twice as damaged, or what it first copied under
`quarantine/`, and never while another machine holds the lease; so a get
after it is a miss or the right value, never a wrong one.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from marimo_store._entry import now_ms
from marimo_store._errors import InvalidArgumentError
from marimo_store._findings import VerifyProblem, VerifyReport
from marimo_store._format.keys import (
    LEASE_KEY,
    QUARANTINE_PREFIX,
    SEGMENTS_PREFIX,
    is_segment_key,
    object_id_of_key,
    object_key,
)
from marimo_store._format.segments import CLOSE_FRAME
from marimo_store._hashing import CONTENT_HASH_BYTES, content_hasher
from marimo_store._media import MediumMissing, check_key
from marimo_store._verify_files import Kind, Problem
from marimo_store.remote._catalog import RemoteCatalog
from marimo_store.remote._lease import lapsed, new_holder, read_lease, release_lease, take_lease
from marimo_store.remote._segment_cache import SegmentCache
from marimo_store.remote._segments import open_sealed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store._entry import ExecutionKey
    from marimo_store._media import Medium
    from marimo_store._verify import Progress
    from marimo_store.remote.store import RemoteStore

HASH_CHUNK = 8 * 1024 * 1024
"""Bytes of one ranged read while an object is re-hashed."""

READ_AHEAD = 4
"""Ranged reads of one object in flight while it is hashed: at most
`READ_AHEAD * HASH_CHUNK` bytes of it are in memory at once."""

_CONTENT_HEX = 2 * CONTENT_HASH_BYTES
"""Hex digits of an object id that are its content hash (the rest qualifies it)."""


def _is_segment(key: str) -> bool:
    """Whether a listed key names a segment a writer puts (a hostile name,
    which no medium call accepts, is an unknown key)."""
    try:
        check_key(key)
    except InvalidArgumentError:
        return False
    return is_segment_key(key)


def _hash(medium: Medium, key: str, size: int) -> str:
    """The xxh3-128 hex of an object's first `size` bytes, read in ranges of
    `HASH_CHUNK`, `READ_AHEAD` at once (`MediumMissing` when it is gone)."""
    hasher = content_hasher()
    if size <= HASH_CHUNK:
        hasher.update(medium.read_range(key, 0, size))
        return hasher.hexdigest()

    def read(start: int) -> bytes:
        return medium.read_range(key, start, min(start + HASH_CHUNK, size))

    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        pending: deque[Future[bytes]] = deque()
        for start in range(0, size, HASH_CHUNK):
            pending.append(pool.submit(read, start))
            if len(pending) == READ_AHEAD:
                hasher.update(pending.popleft().result())
        while pending:
            hasher.update(pending.popleft().result())
    return hasher.hexdigest()


class _RemoteVerifier:
    def __init__(self, store: RemoteStore, repair: bool, progress: Progress | None) -> None:
        self.store = store
        self.medium = store.medium
        self.repair = repair
        self.progress = progress
        self.report = VerifyReport(repaired=repair)
        self.findings: list[Problem] = []
        self.catalog = RemoteCatalog(self.medium, SegmentCache(None), 0.0)
        self.good: set[str] = set()
        self.damaged: set[str] = set()
        self.holding = False

    def find(self, kind: Kind, path: str, detail: str) -> Problem:
        finding = Problem(kind, path, detail)
        self.findings.append(finding)
        return finding

    # -- 1. segments --------------------------------------------------------------------

    def check_segments(self) -> None:
        for info in list(self.medium.list(SEGMENTS_PREFIX)):
            if not _is_segment(info.key):
                continue  # reported with the other keys
            try:
                data = self.medium.read(info.key)
            except MediumMissing:
                continue  # merged by a cleanup meanwhile
            self.report.segments_checked += 1
            records = open_sealed(data)
            if records is not None:
                self.catalog.apply(info.key, records)
                continue
            torn = not data.endswith(CLOSE_FRAME)
            finding = self.find(
                Kind.TORN_SEGMENT if torn else Kind.DAMAGED_SEGMENT,
                info.key,
                f"{len(data)} bytes, " + ("not closed at its end" if torn else "do not decode"),
            )
            if self.holding:
                finding.action = self.move_aside(info.key, data)

    def move_aside(self, key: str, data: bytes) -> str:
        """Put a segment that does not decode under `quarantine/`, then delete it."""
        try:
            again = self.medium.read(key)
        except MediumMissing:
            return "gone on a second read"
        if again != data:
            return "changed on a second read: left alone"
        target = QUARANTINE_PREFIX + key
        if not self.medium.put_once(target, (data,)):
            target = f"{target}.{now_ms()}"  # an earlier repair moved a namesake
            if not self.medium.put_once(target, (data,)):
                return "left alone: its quarantine name is taken"
        self.medium.delete(key)
        return f"moved to {target}"

    # -- 2. objects and other keys --------------------------------------------------------

    def check_keys(self) -> None:
        listing = list(self.medium.list(""))
        objects = [info for info in listing if object_id_of_key(info.key) is not None]
        total = sum(info.size for info in objects)
        for info in objects:
            self.check_object(info.key, info.size)
            if self.progress is not None:
                self.progress(self.report.bytes_hashed, total)
        for info in listing:
            key = info.key
            if not (
                key == LEASE_KEY
                or object_id_of_key(key) is not None
                or _is_segment(key)
                or key.startswith(QUARANTINE_PREFIX)
            ):
                finding = self.find(Kind.UNKNOWN_KEY, key, "not a name the store writes")
                if self.repair:
                    finding.action = "left alone (the prefix may hold other data)"

    def check_object(self, key: str, size: int) -> None:
        object_id = object_id_of_key(key)
        assert object_id is not None
        try:
            digest = _hash(self.medium, key, size)
        except MediumMissing:
            return  # collected by a cleanup meanwhile
        self.report.objects_checked += 1
        self.report.bytes_hashed += size
        if digest == object_id[:_CONTENT_HEX]:
            self.good.add(object_id)
            return
        self.damaged.add(object_id)
        finding = self.find(
            Kind.DAMAGED_OBJECT, key, f"{size} bytes hash to {digest}, not to its name"
        )
        if self.holding:
            finding.action = self.delete_damaged(key, object_id)

    def delete_damaged(self, key: str, object_id: str) -> str:
        """Delete a damaged object if a second read shows it damaged still."""
        info = self.medium.head(key)
        if info is None:
            return "gone on a second read"
        if _hash(self.medium, key, info.size) == object_id[:_CONTENT_HEX]:
            self.damaged.discard(object_id)
            self.good.add(object_id)
            return "whole on a second read (put again meanwhile): left"
        self.medium.delete(key)
        return "deleted (damaged on a second read too): a later put stores it again"

    def check_lease(self) -> Problem | None:
        """A lapsed lease (its holder crashed), read before a repair takes its own."""
        held = read_lease(self.medium)
        if held is None or not lapsed(held):
            return None
        return self.find(
            Kind.LEFTOVER_LEASE, LEASE_KEY, f"held by {held.get('holder', '?')}, lapsed"
        )

    # -- 3. entries -----------------------------------------------------------------------

    def check_entries(self) -> None:
        dangling: dict[ExecutionKey, list[Problem]] = {}
        for stored in list(self.catalog.index):
            self.report.entries_checked += 1
            for object_id, ref in stored.metadata.objects().items():
                if ref.inline or ref.size == 0:
                    continue
                state = self.object_state(object_id)
                if state is None:
                    continue
                run = stored.metadata.key
                dangling.setdefault(run, []).append(
                    self.find(Kind.DANGLING_ENTRY, "", f"{run}: object {object_id} is {state}")
                )
        if self.holding and dangling:
            self.store.delete_entries(dangling)
            for findings in dangling.values():
                for finding in findings:
                    finding.action = "tombstoned: a miss until it is put again"

    def object_state(self, object_id: str) -> str | None:
        """None when the object is whole, else what is wrong with it."""
        if object_id in self.good:
            return None
        if object_id not in self.damaged:
            key = object_key(object_id)
            info = self.medium.head(key)
            if info is None:
                return "missing"
            self.check_object(key, info.size)  # put again since the listing
            if object_id in self.good:
                return None
        return "damaged"

    # -- the pass -------------------------------------------------------------------------

    def run(self, lease_seconds: float) -> VerifyReport:
        holder = new_holder()
        leftover = self.check_lease()
        if self.repair:
            self.holding = take_lease(self.medium, holder, lease_seconds)
            if not self.holding:
                self.report.skipped.append(
                    f"another machine holds the remote's lease ({LEASE_KEY}): nothing repaired"
                )
            if leftover is not None:
                leftover.action = (
                    "replaced by this repair's lease, then released"
                    if self.holding
                    else "left: another machine took the lease meanwhile"
                )
        try:
            self.check_segments()
            self.check_keys()
            self.check_entries()
        finally:
            if self.holding:
                release_lease(self.medium, holder)
        self.report.problems = [
            VerifyProblem(finding.kind.value, finding.path, finding.detail, finding.action)
            for finding in self.findings
        ]
        return self.report


def verify_remote(
    store: RemoteStore, *, repair: bool, progress: Progress | None, lease_seconds: float
) -> VerifyReport:
    """Check (and with `repair`, fix) a remote; see the module docstring."""
    return _RemoteVerifier(store, repair, progress).run(lease_seconds)
