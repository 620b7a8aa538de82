"""`store.verify()`: check every byte of a store, and with `repair=True` fix it.

Reads never need this: every object is verified against its hash when it
is loaded, every record carries a checksum, and damage costs a miss. What
`verify()` adds is a full pass that finds damage *before* a read runs into
it, puts files that sync tools or people renamed back where readers look,
and leaves a store a second `verify()` finds nothing wrong with.

The pass, in order:

0. **Symlinks** where the layout names a file or directory (repair removes
   them first, so the rest of the pass sees the store without them).
1. **Objects**: every file under `objects/` whose name holds an object id
   (canonical names, conflicted copies, files in the wrong place) is hashed.
2. **Snapshots** are checked byte for byte (opening checks only their
   header, table and footer), **segments** record by record
   (`_verify_log.py`).
3. **Entries**: the merged state (every head plus the log after it); each
   entry's objects must be present and verified.
4. `format.json`, `.gitignore`, `.gitattributes`, and `tmp/`.

Repair then: puts every verified object copy at its true name (or deletes
it when the true name already holds the same bytes), moves damaged objects
to `quarantine/`, rewrites damaged generated files, writes a fresh snapshot
(a cleanup that keeps entries whose objects are missing or damaged, as
misses, until they have dangled on this machine for the grace period of
`_dangling.py`, or with `drop_dangling` drops them at once, and deletes
superseded snapshots, consumed segments and stale temp files), then
moves damaged snapshots and segments to `quarantine/`: their readable part
is in the fresh snapshot by then.

What the pass learns about each file (and the findings it files) are the
small types of `_verify_files.py`; this module holds the steps and their
order, and gets at the store only through its maintenance handle
(`_maintenance.py`).

Implements M6, M8 (docs/format.md §14).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Mapping

from marimo_store import _fs
from marimo_store._cleanup_files import stale_temp_files
from marimo_store._conflicts import sync_copy_of
from marimo_store._dangling import DANGLING_GRACE_DAYS
from marimo_store._entry import EntryMetadata, ExecutionKey, now_ms
from marimo_store._findings import VerifyProblem, VerifyReport
from marimo_store._format.layout import (
    GENERATED_NAMES,
    GITATTRIBUTES,
    GITATTRIBUTES_FILE,
    GITIGNORE,
    GITIGNORE_FILE,
    SNAPSHOT_SUFFIX,
    scan_real_directory,
)
from marimo_store._format.objects import ObjectNames
from marimo_store._snapshot import SnapshotFile
from marimo_store._verify_files import (
    Kind,
    ObjectFile,
    Problem,
    file_identity,
    hash_file,
    link_target,
)
from marimo_store._verify_log import LogPass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store._maintenance import Maintenance

Progress = Callable[[int, int], object]
"""Called as `progress(bytes_hashed, total_bytes)` while objects are hashed."""

_GENERATED_MAX_BYTES = 1024 * 1024
"""How much of `.gitignore` or `.gitattributes` is read (users may add lines)."""


def _required_lines(generated: str) -> tuple[str, ...]:
    """The lines a generated file must keep (its comments aside)."""
    return tuple(line for line in generated.splitlines() if line and not line.startswith("#"))


_REQUIRED_IGNORES = _required_lines(GITIGNORE)
_REQUIRED_ATTRIBUTES = _required_lines(GITATTRIBUTES)


class _Verifier:
    def __init__(self, store: Maintenance, repair: bool, progress: Progress | None) -> None:
        self.store = store
        self.layout = store.layout
        self.object_names = ObjectNames(store.layout.objects)
        self.repair = repair
        self.progress = progress
        self.report = VerifyReport(repaired=repair)
        self.findings: list[Problem] = []
        self.good: dict[str, str] = {}  # object id -> path of a verified canonical file
        self.objects: list[ObjectFile] = []
        self.recoverable: set[str] = set()  # ids a repair can restore from a copy
        self.by_digest: dict[str, list[str]] = {}  # content hash -> referenced ids
        self.quarantine_after: list[tuple[str, tuple[int, int, int, int], Problem]] = []
        self.quarantine_stamp = now_ms()
        self.log = LogPass(
            self.layout, self.report, self.find, self.remember, store.options.object_grace_seconds
        )

    def find(self, kind: Kind, path: str, detail: str) -> Problem:
        finding = Problem(kind, path, detail)
        self.findings.append(finding)
        return finding

    # -- 0. symlinks --------------------------------------------------------------------

    def scan_links(self) -> list[tuple[str, Problem]]:
        """Symlinks where the layout names a file or directory: `(path, finding)`.

        Git and sync tools carry symlinks, and a planted one could redirect
        a write outside the store; the store never follows one (`_fs.confine`,
        `scan_real_directory`), and a repair removes the link itself.
        """
        layout = self.layout
        directories = [
            layout.objects,
            layout.log,
            layout.snapshots,
            layout.quarantine,
            layout.locks,
            layout.local,
            layout.tmp,
        ]
        places = [os.path.join(layout.root, name) for name in GENERATED_NAMES] + directories
        directories += [
            entry.path
            for entry in scan_real_directory(layout.objects)
            if entry.is_dir(follow_symlinks=False)
        ]
        for directory in directories:
            if not os.path.islink(directory):
                places += [entry.path for entry in scan_real_directory(directory)]
        return [
            (
                path,
                self.find(Kind.SYMLINK, path, f"a symlink to {link_target(path)}; never followed"),
            )
            for path in sorted(set(places))
            if os.path.islink(path)
        ]

    @staticmethod
    def repair_links(links: list[tuple[str, Problem]]) -> None:
        for path, finding in links:
            _fs.unlink(path)
            finding.action = "removed (the link itself; its target is untouched)"

    # -- 1. objects ----------------------------------------------------------------------

    def scan_objects(self) -> None:
        for path, claimed, tool in self.object_names.claimed():
            self.objects.append(ObjectFile(path, claimed, tool))
        sizes = []
        for item in self.objects:
            try:
                sizes.append(os.stat(item.path).st_size)
            except OSError:
                sizes.append(0)
        total, done = sum(sizes), 0
        for item, size in zip(self.objects, sizes, strict=True):
            hashed = hash_file(item.path)
            done += size
            if self.progress is not None:
                self.progress(done, total)
            if hashed is None:
                continue  # vanished meanwhile
            item.digest, item.identity = hashed
            self.report.objects_checked += 1
            self.report.bytes_hashed += size
            if item.tool is None and item.holds_claimed:
                self.good[item.claimed] = item.path

    def judge_objects(self, referenced: Mapping[str, int]) -> None:
        """Name what is wrong with each object file, now that the
        referenced ids (and sizes) are known: a file holding another
        referenced object's bytes is misnamed, not damaged."""
        by_digest = self.by_digest
        for object_id in referenced:
            by_digest.setdefault(object_id[:32], []).append(object_id)
        for item in self.objects:
            if not item.digest:
                continue
            if item.tool is not None and item.holds_claimed:
                what = (
                    f"{item.tool} conflicted copy"
                    if item.tool != "a misplaced file"
                    else "a file outside its fan-out directory"
                )
                item.finding = self.find(
                    Kind.CONFLICTED_COPY, item.path, f"{what} of object {item.claimed}"
                )
                self.recoverable.add(item.claimed)
            elif not item.holds_claimed and by_digest.get(item.digest):
                item.finding = self.find(
                    Kind.MISNAMED_OBJECT,
                    item.path,
                    f"holds the bytes of object {by_digest[item.digest][0]}, not of {item.claimed}",
                )
                self.recoverable.update(by_digest[item.digest])
            elif not item.holds_claimed:
                item.finding = self.find(
                    Kind.DAMAGED_OBJECT, item.path, "its bytes do not match its name"
                )

    def search_quarantine(self, referenced: Mapping[str, int]) -> list[ObjectFile]:
        """Find needed objects that a read (or this repair) moved to
        quarantine/ although their bytes are right (a read cannot tell a
        swapped file from a damaged one); returns the files found."""
        missing = {
            object_id: size
            for object_id, size in referenced.items()
            if object_id not in self.good and object_id not in self.recoverable
        }
        sizes = set(missing.values())
        restorable: list[ObjectFile] = []
        try:
            items = list(os.scandir(self.layout.quarantine)) if missing else []
        except (FileNotFoundError, NotADirectoryError):
            return restorable
        for item in items:
            try:
                if not item.is_file(follow_symlinks=False) or item.stat().st_size not in sizes:
                    continue
            except OSError:
                continue
            hashed = hash_file(item.path)
            wanted = (
                [i for i in self.by_digest.get(hashed[0], ()) if i in missing] if hashed else []
            )
            if not hashed or not wanted:
                continue
            found = ObjectFile(item.path, wanted[0], "quarantine")
            found.digest, found.identity = hashed
            found.finding = self.find(
                Kind.QUARANTINED_OBJECT,
                item.path,
                f"holds the bytes of the needed object {wanted[0]}",
            )
            restorable.append(found)
            self.recoverable.update(wanted)
            for object_id in wanted:
                del missing[object_id]
        self.objects.extend(restorable)
        return restorable

    def repair_objects(self, objects: Collection[ObjectFile]) -> None:
        by_digest = self.by_digest
        staged: list[tuple[ObjectFile, str]] = []
        for item in objects:
            finding = item.finding
            if finding is None:
                continue
            if finding.kind == Kind.DAMAGED_OBJECT:
                finding.action = self._quarantine(item.path, item.identity)
                continue
            # A verified copy or a misnamed file: set it aside first, so that
            # two files that swapped names can both reach their true name.
            temp = self._temp_path()
            if not self._unchanged(item.path, item.identity):
                finding.action = "left alone: it changed while verify ran"
                continue
            _fs.replace(item.path, temp)
            staged.append((item, temp))
        for item, temp in staged:
            assert item.finding is not None
            targets = [item.claimed] if item.holds_claimed else by_digest[item.digest]
            target = next((t for t in targets if t not in self.good), None)
            if target is None:
                _fs.unlink(temp)
                item.finding.action = "deleted: the true name holds the same bytes"
                continue
            path = self.object_names.path_of(target)
            _fs.makedirs(os.path.dirname(path))
            _fs.replace(temp, path)
            self.good[target] = path
            item.finding.action = f"moved to {os.path.relpath(path, self.layout.root)}"

    # -- 2. snapshots and segments: `_verify_log.py` ------------------------------------

    def remember(self, path: str, finding: Problem) -> None:
        """Quarantine `path` after the fresh snapshot (if it has not changed)."""
        with contextlib.suppress(FileNotFoundError):
            self.quarantine_after.append((path, file_identity(os.stat(path)), finding))

    # -- 3. entries ----------------------------------------------------------------------

    def dangling_entries(self, live: Collection[EntryMetadata]) -> dict[ExecutionKey, str]:
        dangling: dict[ExecutionKey, str] = {}
        for metadata in live:
            self.report.entries_checked += 1
            for object_id, ref in metadata.objects().items():
                if ref.inline or ref.size == 0 or object_id in self.good:
                    continue
                if not self.repair and object_id in self.recoverable:
                    continue  # a repair puts a verified copy in place
                dangling[metadata.key] = f"object {object_id} is missing or damaged"
                break
        return dangling

    # -- 4. generated files and tmp/ -----------------------------------------------------

    def scan_generated(self) -> list[tuple[str, tuple[str, ...], Problem]]:
        """Generated files that lack required lines: (path, lines, finding)."""
        incomplete: list[tuple[str, tuple[str, ...], Problem]] = []
        if not os.path.exists(self.layout.format_file):
            return incomplete  # nothing was ever written here
        if not self.layout.check_format():
            self.find(Kind.DAMAGED_FORMAT, self.layout.format_file, "it is not a format file")
        generated = (
            (
                (
                    GITIGNORE_FILE,
                    _REQUIRED_IGNORES,
                    Kind.DAMAGED_GITIGNORE,
                    Kind.INCOMPLETE_GITIGNORE,
                ),
                (
                    GITATTRIBUTES_FILE,
                    _REQUIRED_ATTRIBUTES,
                    Kind.DAMAGED_GITATTRIBUTES,
                    Kind.INCOMPLETE_GITATTRIBUTES,
                ),
            )
            if self.layout.owns_root()
            else ()  # they would govern files that are not the store's: left alone
        )
        for name, lines, damaged, incomplete_kind in generated:
            path = os.path.join(self.layout.root, name)
            try:
                with _fs.open_read(path) as file:
                    text = file.read(_GENERATED_MAX_BYTES).decode("utf-8")
            except FileNotFoundError:
                text = ""
            except (OSError, UnicodeDecodeError):
                text = "\x00"
            present = {line.strip() for line in text.splitlines()}
            missing = tuple(line for line in lines if line not in present)
            if "\x00" in text:
                finding = self.find(damaged, path, "it holds binary data")
                incomplete.append((path, (), finding))
            elif missing:
                finding = self.find(incomplete_kind, path, f"it lacks {', '.join(missing)}")
                incomplete.append((path, missing, finding))
        for entry in os.scandir(self.layout.root):
            copy = sync_copy_of(entry.name) if entry.is_file(follow_symlinks=False) else None
            if copy is not None and copy[1] in GENERATED_NAMES:
                finding = self.find(
                    Kind.CONFLICTED_COPY, entry.path, f"{copy[0]} copy of {copy[1]}"
                )
                self.remember(entry.path, finding)
        return incomplete

    def scan_temp(self) -> None:
        for path, why in stale_temp_files(self.layout.tmp):
            self.remember(path, self.find(Kind.STALE_TEMP_FILE, path, why))

    def repair_generated(self, incomplete: list[tuple[str, tuple[str, ...], Problem]]) -> None:
        for path, missing, finding in incomplete:
            if missing:
                text = ""
                with contextlib.suppress(FileNotFoundError), _fs.open_read(path) as file:
                    text = file.read(_GENERATED_MAX_BYTES).decode("utf-8")
                addition = "".join(f"{line}\n" for line in missing)
                joined = text if not text or text.endswith("\n") else text + "\n"
                _fs.write_new_file(
                    path, (joined + addition).encode(), temp_path=self._temp_path(), durable=False
                )
                finding.action = "completed"
            else:
                finding.action = self._quarantine(path, None) + "; generated anew"
        for finding in self.findings:
            if finding.kind == Kind.DAMAGED_FORMAT:
                finding.action = "written anew"
        # Writes format.json when it is missing or damaged, and generated files
        # that are missing (the damaged ones were just moved away).
        self.layout.create(self._temp_path(), durable=True)

    # -- repairs after the fresh snapshot -------------------------------------------------

    def repair_after_snapshot(self, snapshot_id: str) -> None:
        """Remove what the fresh snapshot made redundant: copies of segments
        it holds, and (to quarantine) damaged files whose readable part it holds."""
        snapshot, _ = SnapshotFile.inspect(
            os.path.join(self.layout.snapshots, snapshot_id + SNAPSHOT_SUFFIX)
        )
        consumed: Mapping[str, tuple[int, int]] = snapshot.consumed if snapshot else {}
        if snapshot is not None:
            snapshot.close()
        for path, segment_id, end, finding in self.log.copied_segments:
            if not os.path.exists(path):
                continue
            if consumed.get(segment_id, (0, 0))[0] >= end:
                _fs.unlink(path)
                finding.action = f"deleted: snapshot {snapshot_id} holds its records"
            else:
                finding.action = "kept: it holds records the snapshot does not"
        for path, identity, finding in self.quarantine_after:
            if os.path.exists(path) and not finding.action:
                finding.action = self._quarantine(path, identity)

    def restore_late_quarantined(self, referenced: Mapping[str, int]) -> None:
        """Put back needed objects whose bytes sat in a file this repair
        quarantined only after the fresh snapshot (a snapshot or segment that
        swapped contents with an object file): without this a second
        `verify()` would find them in quarantine/."""
        if self.quarantine_after:
            self.repair_objects(self.search_quarantine(referenced))

    def describe_the_rest(self, skipped: list[str]) -> None:
        """Actions for findings the cleanup took care of (or could not)."""
        for finding in self.findings:
            if finding.action:
                continue
            if finding.path and not os.path.exists(finding.path):
                finding.action = "deleted by the cleanup (the fresh snapshot holds its records)"
            elif skipped:
                finding.action = f"not repaired: {'; '.join(skipped)}"

    # -- helpers -------------------------------------------------------------------------

    def _temp_path(self) -> str:
        return self.store.temp_path()

    @staticmethod
    def _unchanged(path: str, identity: tuple[int, int, int, int] | None) -> bool:
        try:
            return identity is None or file_identity(os.stat(path)) == identity
        except FileNotFoundError:
            return False

    def _quarantine(self, path: str, identity: tuple[int, int, int, int] | None) -> str:
        """Move a file to quarantine/ unless it changed since it was checked."""
        if not self._unchanged(path, identity):
            return "left alone: it changed while verify ran"
        _fs.makedirs(self.layout.quarantine)
        destination = self.layout.quarantine_path(path, self.quarantine_stamp)
        _fs.replace(path, destination)
        return f"moved to quarantine/{os.path.basename(destination)}"


class _DropDangling:
    """The cleanup strategy of a repair: drop exactly the dangling entries."""

    def __init__(self, dangling: Mapping[ExecutionKey, str]) -> None:
        self.dangling = dict(dangling)

    def __call__(
        self, entries: Collection[EntryMetadata], now_ms: int
    ) -> Mapping[ExecutionKey, str]:
        return {e.key: self.dangling[e.key] for e in entries if e.key in self.dangling}


def verify_store(
    store: Maintenance, *, repair: bool, drop_dangling: bool, progress: Progress | None
) -> VerifyReport:
    """The whole pass (see the module docstring); `store.verify()` delegates here,
    through the store's maintenance handle."""
    verifier = _Verifier(store, repair, progress)
    report = verifier.report
    if not store.layout.require_store_directory(allow_other_files=store.options.allow_other_files):
        return report
    links = verifier.scan_links()
    if repair:
        verifier.repair_links(links)
    verifier.scan_objects()
    verifier.log.scan_snapshots()
    verifier.log.scan_segments()
    state, _, _ = store.merged_state()
    live = state.live()
    referenced = {
        object_id: ref.size
        for stored in live
        for object_id, ref in stored.metadata.objects().items()
        if not ref.inline and ref.size
    }
    verifier.judge_objects(referenced)
    verifier.search_quarantine(referenced)
    incomplete = verifier.scan_generated()
    verifier.scan_temp()
    if repair:
        verifier.repair_objects(verifier.objects)
    dangling = verifier.dangling_entries([stored.metadata for stored in live])
    findings = {
        key: verifier.find(Kind.DANGLING_ENTRY, "", f"entry {key}: {reason}")
        for key, reason in dangling.items()
    }
    if repair:
        verifier.repair_generated(incomplete)
        # Late is not lost: without drop_dangling, the cleanup drops only the
        # entries that have dangled on this machine for the grace period.
        cleanup = store.cleanup(_DropDangling(dangling if drop_dangling else {}))
        dropped = {d.key for d in cleanup.dropped}
        for key, finding in findings.items():
            finding.action = (
                "dropped (a tombstone in the fresh snapshot)"
                if key in dropped
                else f"kept: a miss until its objects arrive (dropped after it has dangled "
                f"{DANGLING_GRACE_DAYS} days on this machine, or with drop_dangling)"
            )
        report.skipped.extend(cleanup.skipped)
        report.snapshot = cleanup.snapshot
        if cleanup.snapshot is not None:
            verifier.repair_after_snapshot(cleanup.snapshot)
            verifier.restore_late_quarantined(referenced)
        verifier.describe_the_rest(cleanup.skipped)
    report.problems = [
        VerifyProblem(f.kind.value, f.path, f.detail, f.action) for f in verifier.findings
    ]
    return report
