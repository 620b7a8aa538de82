"""An adversarial file-sync tool between replica directories.

It behaves like the union of what Dropbox, OneDrive, iCloud Drive and
Syncthing do to a folder, at their worst:

- `scan(r)` notices what changed in replica r since the tool last synced
  it (new, modified and deleted files; with Syncthing, an mtime change
  alone is a modification) and queues one event per other replica;
- `deliver()` applies a queued event, chosen at random (delay and
  reordering), sometimes in two steps (first a prefix, as in-place writers
  and network file systems show, or a placeholder of the right size full of
  zeros, as a not-yet-downloaded OneDrive/iCloud file reads), with the file's
  mtime preserved, set to now (git) or set to a random older time;
- `duplicate()` delivers an already delivered event again, possibly an
  older version over a newer one;
- a write that meets a local change is a **conflict**: both versions are
  kept, one under a real conflicted-copy name of the schedule's tool;
  a deletion that meets a local change is undone and the file comes back
  everywhere (Syncthing's modify-vs-delete resurrection);
- `resurrect()` brings back a file deleted long ago (a machine that was
  offline, a restored backup);
- `locks/` never travels; `tmp/`, `quarantine/` and `local/` travel unless the
  schedule's tool honours the store's `.gitignore`.

`quiesce()` delivers everything (including what deliveries cause), and
`exchange_all()` then makes every replica hold the union of all files
(conflicting versions side by side), as a final full sync does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
from pathlib import Path

TOOLS = ("Dropbox", "Syncthing", "OneDrive", "iCloud")
SYNC_FOLDERS = {
    "Dropbox": ("Dropbox", ".dropbox"),
    "Syncthing": ("Sync", ".stfolder"),
    "OneDrive": ("Library/CloudStorage/OneDrive-Personal", None),
    "iCloud": ("Library/Mobile Documents", None),
}
"""Where each tool keeps its folder on a machine, and the marker it leaves at
that folder's root (OneDrive and iCloud are known by their place)."""


def sync_folder(tool: str, machine: Path) -> Path:
    """The folder `tool` syncs on the machine whose files are under `machine`,
    made as the tool makes it: replicas live inside one, as a user's store does."""
    place, marker = SYNC_FOLDERS[tool]
    folder = machine / place
    folder.mkdir(parents=True, exist_ok=True)
    if marker is not None:
        (folder / marker).touch()
    return folder


LOCAL_ONLY = ("locks",)
IGNORABLE = ("tmp", "quarantine", "local")


def conflict_name(tool: str, name: str, host: str, attempt: int = 0) -> str:
    """The name `tool` gives the losing version of `name` (real formats)."""
    if name.endswith((".snap", ".log", ".json")):
        stem, ext = os.path.splitext(name)
    else:
        stem, ext = name, ""
    if tool == "Dropbox":
        suffix = f" ({attempt})" if attempt else ""
        return f"{stem} ({host}'s conflicted copy 2026-11-21{suffix}){ext}"
    if tool == "Syncthing":
        return f"{stem}.sync-conflict-20261121-1015{attempt:02d}-{host.upper()[:7]:A<7}{ext}"
    if tool == "OneDrive":
        return f"{stem}-{host.upper()}{'-' + str(attempt + 1) if attempt else ''}{ext}"
    return f"{stem} {attempt + 2}{ext}"  # iCloud


class Event:
    """One change of one file in one replica, as the tool saw it."""

    __slots__ = ("content", "digest", "mtime_ns", "parent", "partial", "path", "source")

    def __init__(
        self,
        source: int,
        path: str,
        content: bytes | None,
        *,
        mtime_ns: int,
        parent: str | None,
        digest: str | None,
        partial: bool = False,
    ) -> None:
        self.source, self.path, self.content, self.mtime_ns = source, path, content, mtime_ns
        self.parent, self.digest, self.partial = parent, digest, partial

    @property
    def is_delete(self) -> bool:
        return self.content is None


class Replicator:
    """The sync tool; see the module docstring. `stats` counts what it did."""

    def __init__(
        self, roots: list[Path], rng: random.Random, tool: str, *, sync_local_dirs: bool
    ) -> None:
        self.roots = roots
        self.rng = rng
        self.tool = tool
        self.sync_local_dirs = sync_local_dirs
        self.hosts = [f"replica{i}" for i in range(len(roots))]
        self.synced: list[dict[str, str]] = [{} for _ in roots]  # what the tool last saw
        self.pending: list[tuple[int, Event]] = []
        self.history: list[tuple[int, Event]] = []
        self.graveyard: list[Event] = []
        self.contents: dict[str, bytes] = {}
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "events",
                "delivered",
                "partial",
                "duplicates",
                "stale",
                "conflicts",
                "resurrected",
                "deletes",
                "mtime lost",
            ),
            0,
        )

    # -- looking at a replica ----------------------------------------------------------

    def _files(self, replica: int) -> dict[str, tuple[bytes, int]]:
        root = self.roots[replica]
        found: dict[str, tuple[bytes, int]] = {}
        skip = LOCAL_ONLY + (() if self.sync_local_dirs else IGNORABLE)
        for directory, subdirectories, names in os.walk(root):
            relative = os.path.relpath(directory, root)
            if relative == ".":
                subdirectories[:] = [d for d in subdirectories if d not in skip]
            for name in names:
                path = os.path.join(directory, name)
                try:
                    with open(path, "rb") as file:
                        data = file.read()
                        mtime = os.fstat(file.fileno()).st_mtime_ns
                except OSError:
                    continue
                found[os.path.normpath(os.path.join(relative, name))] = (data, mtime)
        return found

    def _digest(self, data: bytes, mtime_ns: int) -> str:
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if self.tool == "Syncthing":  # an mtime change is a change
            digest += f"@{mtime_ns}"
        self.contents[digest] = data
        return digest

    def _current(self, replica: int, path: str) -> str | None:
        try:
            with open(self.roots[replica] / path, "rb") as file:
                data = file.read()
                mtime = os.fstat(file.fileno()).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        return self._digest(data, mtime)

    def scan(self, replica: int) -> int:
        """Queue the changes of `replica` for every other replica; how many."""
        files = self._files(replica)
        synced = self.synced[replica]
        events = []
        for path, (data, mtime) in sorted(files.items()):
            digest = self._digest(data, mtime)
            if synced.get(path) != digest:
                events.append(
                    Event(
                        replica, path, data, mtime_ns=mtime, parent=synced.get(path), digest=digest
                    )
                )
                synced[path] = digest
        for path in sorted(set(synced) - set(files)):
            event = Event(replica, path, None, mtime_ns=0, parent=synced.pop(path), digest=None)
            events.append(event)
            self.graveyard.append(event)
        for event in events:
            partial = not event.is_delete and self.rng.random() < 0.15
            for other in range(len(self.roots)):
                if other != replica:
                    self.pending.append((other, self._maybe_partial(event, partial)))
        self.stats["events"] += len(events)
        return len(events)

    def _maybe_partial(self, event: Event, partial: bool) -> Event:
        if not partial or not event.content:
            return event
        return self._copy(event, partial=True)

    @staticmethod
    def _copy(event: Event, *, partial: bool) -> Event:
        return Event(
            event.source,
            event.path,
            event.content,
            mtime_ns=event.mtime_ns,
            parent=event.parent,
            digest=event.digest,
            partial=partial,
        )

    # -- changing a replica ------------------------------------------------------------

    def deliver(self, index: int | None = None) -> bool:
        """Apply one queued event (a random one by default)."""
        if not self.pending:
            return False
        chosen = self.rng.randrange(len(self.pending)) if index is None else index
        destination, event = self.pending.pop(chosen)
        self._apply(destination, event)
        self.history.append((destination, event))
        self.stats["delivered"] += 1
        return True

    def deliver_logs(self) -> int:
        """Deliver every queued change under `log/` now, before any object
        (rsync's order: `log/` sorts before `objects/`); how many."""
        first = [i for i, (_, event) in enumerate(self.pending) if event.path.startswith("log")]
        for index in reversed(first):
            self.deliver(index)
        return len(first)

    def duplicate(self) -> bool:
        """Deliver an old event again: a duplicate, or a stale version."""
        if not self.history:
            return False
        destination, event = self.rng.choice(self.history)
        self.stats["duplicates"] += 1
        if not event.is_delete and self.synced[destination].get(event.path) != event.digest:
            self.stats["stale"] += 1
        self._apply(destination, event)
        return True

    def resurrect(self) -> bool:
        """A file deleted some time ago comes back in some replica."""
        candidates = [e for e in self.graveyard if e.parent in self.contents]
        if not candidates:
            return False
        event = self.rng.choice(candidates)
        destination = self.rng.randrange(len(self.roots))
        path = self.roots[destination] / event.path
        if path.exists():
            return False
        assert event.parent is not None
        self._write(destination, event.path, self.contents[event.parent], event.mtime_ns)
        self.stats["resurrected"] += 1  # not marked synced: the next scan spreads it
        return True

    def _apply(self, destination: int, event: Event) -> None:
        current = self._current(destination, event.path)
        synced = self.synced[destination].get(event.path)
        changed_here = current != synced  # a local change the tool has not scanned yet
        if event.is_delete:
            if current is None:
                self.synced[destination].pop(event.path, None)
            elif changed_here:
                self.stats["resurrected"] += 1  # modify-vs-delete: the file stays and
                self.synced[destination].pop(event.path, None)  # comes back everywhere
            else:
                (self.roots[destination] / event.path).unlink(missing_ok=True)
                self.synced[destination].pop(event.path, None)
                self.stats["deletes"] += 1
            return
        assert event.content is not None and event.digest is not None
        if current == event.digest:
            self.synced[destination][event.path] = event.digest
            return
        spurious = current is not None and self.rng.random() < 0.02
        if current is not None and (changed_here or spurious):
            self._conflict(destination, event)
            return
        if event.partial:  # a prefix (or a placeholder of zeros) now, the rest later
            cut = self.rng.randrange(0, len(event.content))
            first = event.content[:cut] if self.rng.random() < 0.6 else bytes(len(event.content))
            self._write(destination, event.path, first, event.mtime_ns)
            self.synced[destination][event.path] = self._current(destination, event.path) or ""
            self.pending.append((destination, self._copy(event, partial=False)))
            self.stats["partial"] += 1
            return
        self._write(destination, event.path, event.content, event.mtime_ns)
        self.synced[destination][event.path] = self._current(destination, event.path) or ""

    def _conflict(self, destination: int, event: Event) -> None:
        """Keep both versions; one of them under a conflicted-copy name."""
        assert event.content is not None
        self.stats["conflicts"] += 1
        directory, name = os.path.split(event.path)
        attempt = 0
        while True:
            copy = os.path.join(
                directory, conflict_name(self.tool, name, self.hosts[event.source], attempt)
            )
            if not (self.roots[destination] / copy).exists():
                break
            attempt += 1
        original = self.roots[destination] / event.path
        if self.rng.random() < 0.5:  # the incoming version wins the name
            with contextlib.suppress(FileNotFoundError):
                os.replace(original, self.roots[destination] / copy)
            self._write(destination, event.path, event.content, event.mtime_ns)
            self.synced[destination][event.path] = self._current(destination, event.path) or ""
        else:
            self._write(destination, copy, event.content, event.mtime_ns)
        # The copy is new to the tool: the next scan spreads it to every replica.

    def _write(self, destination: int, path: str, data: bytes, mtime_ns: int) -> None:
        target = self.roots[destination] / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as file:
            file.write(data)
        mode = self.rng.random()
        # The replica's own background cleanup may delete the file at once
        # (object GC of a dropped entry's object): a real tool then finds it gone.
        with contextlib.suppress(FileNotFoundError):
            if mode < 0.4:
                os.utime(target, ns=(mtime_ns, mtime_ns))  # preserved
            elif mode < 0.6:  # an old time: mtime says nothing about when a file arrived
                old = mtime_ns - self.rng.randrange(1, 10 * 86_400) * 10**9
                os.utime(target, ns=(old, old))
        if mode >= 0.4:  # an old time, or now, as git checkouts and `rsync -r` do
            self.stats["mtime lost"] += 1

    # -- settling ----------------------------------------------------------------------

    def quiesce(self, rounds: int = 20) -> None:
        """Scan and deliver until nothing is left to do (what deliveries
        cause, such as conflict copies and resurrections, included)."""
        for _ in range(rounds):
            for replica in range(len(self.roots)):
                self.scan(replica)
            if not self.pending:
                return
            while self.pending:
                self.deliver()
        raise AssertionError(f"the replicas did not settle in {rounds} rounds")

    def exchange_all(self) -> None:
        """A final full exchange: every replica gets every file of every
        other; where versions of one path differ, all are kept, the one
        with the largest digest under the name and the others as copies."""
        everything = [self._files(replica) for replica in range(len(self.roots))]
        versions: dict[str, dict[bytes, int]] = {}
        for replica, files in enumerate(everything):
            for path, (data, _) in files.items():
                versions.setdefault(path, {}).setdefault(data, replica)
        taken = set(versions)
        now = time.time_ns()
        for path, by_data in sorted(versions.items()):
            ordered = sorted(by_data, key=lambda d: hashlib.blake2b(d).digest(), reverse=True)
            placed = [(path, ordered[0])]
            directory, name = os.path.split(path)
            attempt = 0
            for data in ordered[1:]:
                while True:
                    copy = conflict_name(self.tool, name, self.hosts[by_data[data]], attempt)
                    copy = os.path.join(directory, copy)
                    attempt += 1
                    if copy not in taken:
                        break
                taken.add(copy)
                placed.append((copy, data))
            for replica in range(len(self.roots)):
                for target, data in placed:
                    current = self.roots[replica] / target
                    if not current.exists() or current.read_bytes() != data:
                        self._write(replica, target, data, now)
        for replica in range(len(self.roots)):
            self.synced[replica] = {
                path: self._digest(data, mtime)
                for path, (data, mtime) in self._files(replica).items()
            }
