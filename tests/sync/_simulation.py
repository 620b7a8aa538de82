"""One seeded schedule of the sync simulator, and the checks after every step.

N replica directories, each with its own store (in this process, or in a
worker process of its own), and the adversarial sync tool of
`_replicator.py` between them. Each step is one random action: a put, a
get, a cleanup (sometimes with object GC), a reopen (a clean exit or, for
worker processes, a SIGKILL), or one of the tool's moves. After every step:

- every value read is checked against the ledger (never a value that was
  not put under that key, never a torn or mixed one);
- a fresh store opens on a replica, lists its entries and reads one.

At the end: quiescence (the tool delivers everything), one full exchange
(every replica holds every file), a cleanup on each replica; then every
replica must hold the same live entries, and every one of them must load
with a right value. And **no completed put is lost**: every put that
returned (the ledger) loads, with a right value, on every replica, unless
a cleanup strategy dropped its key (every decision of every strategy, in
every process, is recorded with its rule in `drops.log`), or, with
`object_grace_seconds=0`, object GC deleted an object of an entry it could
not see yet, or a read quarantined a copy still arriving (the documented
cost of no grace; counted apart).

Each replica lies inside its machine's folder of the schedule's tool, with
the tool's marker (`.dropbox`, `.stfolder`) or place (`CloudStorage`,
`Mobile Documents`), as a real synced store does: object GC must know the
store is shared before any other machine's log has arrived.

Schedules also deliver every queued log change before any object
(`deliver-logs`: rsync's order), and make object files unreadable
(`EACCES` on stat and open) for a few steps.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import signal
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from _replicator import TOOLS, Replicator, sync_folder
from _values import BLOCKS, MODULES, Ledger, value_of

import marimo_store._dangling as dangling_module
import marimo_store._fs as fs
import marimo_store._hashed_objects as verified_module
import marimo_store._log as log_module
import marimo_store._writer as writer_module
from marimo_store import (
    DefaultCleanupStrategy,
    Entry,
    EntryMetadata,
    ExecutionKey,
    ExecutionKeyClash,
    FsPersistentStore,
    StoreWarning,
)

EXPLICIT_TIMES = (1_000, 2_000, 3_000)
"""`created_at` values several replicas put under, so that keys clash."""

ACTIONS = {
    "put": 24,
    "get": 20,
    "cleanup": 5,
    "gc": 2,
    "reopen": 3,
    "scan": 14,
    "deliver": 26,
    "deliver-logs": 3,
    "unreadable": 2,
    "duplicate": 3,
    "resurrect": 2,
}
UNREADABLE_STEPS = (1, 8)
"""How many steps an object file stays unreadable."""


class DropModule:
    """A cleanup strategy that drops every run of one module."""

    def __init__(self, module: str) -> None:
        self.module = module

    def __call__(self, entries: Collection[EntryMetadata], now_ms: int) -> dict[ExecutionKey, str]:
        return {e.key: "dropped" for e in entries if e.key.module_hash == self.module}


class Recorded:
    """A strategy that appends each of its decisions (key and rule) to a
    file shared by every process of the schedule: which puts a cleanup
    dropped on purpose, and why."""

    def __init__(self, name: str, drops: str) -> None:
        self.name = name
        self.drops = drops

    def __call__(self, entries: Collection[EntryMetadata], now_ms: int) -> dict[ExecutionKey, str]:
        decisions = dict(_strategy(self.name)(entries, now_ms))
        if decisions:
            lines = "".join(
                f"{k.block_id} {k.module_hash} {k.created_at} {self.name}: {why}\n"
                for k, why in decisions.items()
            )
            with open(self.drops, "a") as file:
                file.write(lines)
        return decisions


def read_drops(drops: Path) -> dict[tuple[str, str, int], str]:
    """Every key a strategy dropped, with the rule (the first one recorded)."""
    found: dict[tuple[str, str, int], str] = {}
    if drops.exists():
        for line in drops.read_text().splitlines():
            block, module, created_at, rule = line.split(" ", 3)
            found.setdefault((block, module, int(created_at)), rule)
    return found


def _strategy(name: str) -> Any:
    if name == "keep-all":
        return DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
    if name.startswith("drop-"):
        return DropModule(name.removeprefix("drop-"))
    return DefaultCleanupStrategy()


def store_options(grace: float, drops: str, *, exit_cleanup: bool) -> dict[str, Any]:
    return {
        "cleanup_strategy": Recorded("default", drops),
        "refresh_interval": 0,
        # No background cleanup for an old log: cleanups are the schedule's
        # steps (and exits'), so a seed mostly replays the same schedule. One
        # trigger stays (too many segments); `settle` waits for it at the end.
        "entry_merge_timeout_seconds": 10**9,
        "cleanup_on_exit": exit_cleanup,
        "object_grace_seconds": grace,
        "lock_timeout": 5,
    }


_HOST_NAME_USERS = (log_module, dangling_module, verified_module)
"""The modules that ask `host_name()` which machine this is."""


def become_host(name: str) -> Any:
    """Make this process machine `name` for the store (writer ids, which
    writers are this machine's, this machine's ledgers in `local/`); returns
    what to pass back to undo it. Each replica is another machine: with one
    host name for all, every replica would think the others' writers its own."""
    previous = log_module.host_name
    for module in _HOST_NAME_USERS:
        module.host_name = lambda: name
    return previous


@contextmanager
def as_host(name: str) -> Iterator[None]:
    """`become_host(name)` for the duration of the block."""
    previous = become_host(name)
    try:
        yield
    finally:
        for module in _HOST_NAME_USERS:
            module.host_name = previous


def do_put(
    store: FsPersistentStore, block: str, module: str, created_at: int | None, variant: int
) -> int | None:
    """Put one value; its `created_at`, or None for a key clash."""
    key = ExecutionKey(block, module, created_at)
    try:
        return store.put(Entry.of(key, value_of(block, module, variant))).created_at
    except ExecutionKeyClash:
        return None


def settle(store: FsPersistentStore) -> None:
    """Wait for a background cleanup a put may have started (more than 64
    segments pile up: every fresh reader leaves one), so that the final
    exchange sees replicas nobody changes any more."""
    writing = store._write_side.built  # None: it wrote nothing, so started no cleanup
    if writing is not None:
        background = writing.background
        background.join(120)
        assert not background.is_alive(), "a background cleanup does not finish"


def do_get(
    store: FsPersistentStore, block: str, module: str, created_at: int | None
) -> tuple[int, Any] | None:
    entry = store.get(ExecutionKey(block, module, created_at), created_at is not None)
    if entry is None:
        return None
    assert entry.metadata is not None
    return entry.metadata.created_at, dict(entry.variables)


class Replica(Protocol):
    root: Path

    def put(self, block: str, module: str, created_at: int | None, variant: int) -> int | None: ...
    def get(self, block: str, module: str, created_at: int | None) -> tuple[int, Any] | None: ...
    def cleanup(self, strategy: str, gc: bool) -> None: ...
    def reopen(self, rng: random.Random) -> None: ...
    def settle(self) -> None: ...
    def close(self) -> None: ...


class InProcessReplica:
    """A replica whose store lives in this process."""

    def __init__(self, root: Path, grace: float, drops: str) -> None:
        self.root = root
        self.grace = grace
        self.drops = drops
        with as_host(root.name):
            self.store = FsPersistentStore(root, **store_options(grace, drops, exit_cleanup=False))

    def put(self, block: str, module: str, created_at: int | None, variant: int) -> int | None:
        with as_host(self.root.name):
            return do_put(self.store, block, module, created_at, variant)

    def get(self, block: str, module: str, created_at: int | None) -> tuple[int, Any] | None:
        with as_host(self.root.name):
            return do_get(self.store, block, module, created_at)

    def cleanup(self, strategy: str, gc: bool) -> None:
        with as_host(self.root.name):
            self.store.cleanup(Recorded(strategy, self.drops), include_content=gc)

    def reopen(self, rng: random.Random) -> None:
        with as_host(self.root.name):
            if rng.random() < 0.5:
                self.store.close()  # else abandoned, as by a process that never closed it
            options = store_options(self.grace, self.drops, exit_cleanup=False)
            self.store = FsPersistentStore(self.root, **options)

    def settle(self) -> None:
        with as_host(self.root.name):
            settle(self.store)

    def close(self) -> None:
        with as_host(self.root.name):
            self.store.close()


class ProcessReplica:
    """A replica whose store lives in a worker process (`_worker.py`);
    reopening exits the worker cleanly (with its exit cleanup) or SIGKILLs it."""

    CONTEXT = multiprocessing.get_context("forkserver")

    def __init__(self, root: Path, grace: float, drops: str) -> None:
        self.root = root
        self.grace = grace
        self.drops = drops
        self._start()

    def _start(self) -> None:
        import _worker

        self.conn, child = self.CONTEXT.Pipe()
        self.process = self.CONTEXT.Process(
            target=_worker.serve,
            args=(str(self.root), self.grace, self.drops, child),
            daemon=True,
        )
        self.process.start()
        child.close()

    def _call(self, command: str, *args: Any) -> Any:
        self.conn.send((command, args))
        assert self.conn.poll(120), f"the worker of {self.root.name} did not answer {command}"
        status, result = self.conn.recv()
        assert status == "ok", f"the worker of {self.root.name} failed: {result}"
        return result

    def put(self, block: str, module: str, created_at: int | None, variant: int) -> int | None:
        stored: int | None = self._call("put", block, module, created_at, variant)
        return stored

    def get(self, block: str, module: str, created_at: int | None) -> tuple[int, Any] | None:
        found: tuple[int, Any] | None = self._call("get", block, module, created_at)
        return found

    def cleanup(self, strategy: str, gc: bool) -> None:
        self._call("cleanup", strategy, gc)

    def settle(self) -> None:
        self._call("settle")

    def reopen(self, rng: random.Random) -> None:
        if rng.random() < 0.5:
            os.kill(self.process.pid, signal.SIGKILL)  # mid-nothing, but never closed
        else:
            self._call("exit")
        self.process.join(60)
        assert self.process.exitcode is not None
        self.conn.close()
        self._start()

    def close(self) -> None:
        self._call("exit")
        self.process.join(60)
        self.conn.close()


@contextmanager
def seeded_writer_ids(rng: random.Random) -> Iterator[None]:
    """Writer ids from the schedule's generator: a schedule replays the same
    file names (as far as the clock allows) when run again with its seed."""
    original = writer_module.new_writer_id
    writer_module.new_writer_id = lambda: (
        f"{log_module.host_name()}-{os.getpid()}-{rng.getrandbits(48):012x}"
    )
    try:
        yield
    finally:
        writer_module.new_writer_id = original


class Schedule:
    """One schedule; `run()` raises AssertionError (with the step log) on a violation."""

    def __init__(
        self,
        seed: int,
        workdir: Path,
        *,
        replicas: int = 3,
        steps: tuple[int, int] = (20, 60),
        make_replica: Any = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.tool = self.rng.choice(TOOLS)
        self.sync_local_dirs = self.rng.random() < 0.3
        self.grace = self.rng.choice((0.0, 3600.0))
        # Each replica is a machine's copy of a folder its sync tool manages.
        self.roots = [
            sync_folder(self.tool, workdir / f"machine{i}") / f"replica{i}" for i in range(replicas)
        ]
        self.steps = self.rng.randrange(*steps)
        self.make_replica = make_replica or InProcessReplica
        workdir.mkdir(parents=True, exist_ok=True)
        self.drops = workdir / "drops.log"
        self.unreadable: dict[str, int] = {}  # object file -> the step it reads again
        self.step = 0
        self.ledger = Ledger()
        self.replicator = Replicator(
            self.roots, self.rng, self.tool, sync_local_dirs=self.sync_local_dirs
        )
        self.log: list[str] = []
        self.stats: dict[str, int] = {"reads": 0, "hits": 0, "clashes": 0, "opens": 0}

    def run(self) -> dict[str, int]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StoreWarning)  # damage is expected here
                with seeded_writer_ids(self.rng), self._unreadable_files():
                    self._run()
        except AssertionError as error:
            raise AssertionError(
                f"schedule seed={self.seed} tool={self.tool} grace={self.grace} "
                f"sync_local_dirs={self.sync_local_dirs}: {error}\n" + "\n".join(self.log[-40:])
            ) from error
        return {**self.stats, **self.replicator.stats}

    @contextmanager
    def _unreadable_files(self) -> Iterator[None]:
        """Object files in `self.unreadable` fail `stat` and `open` with EACCES
        (in this process: replicas with their store here, and fresh opens)."""
        real = {name: getattr(fs, name) for name in ("stat", "open_read")}

        def failing(name: str) -> Any:
            def call(path: str) -> Any:
                if self.unreadable.get(path, -1) > self.step:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
                return real[name](path)

            return call

        for name in real:
            setattr(fs, name, failing(name))
        try:
            yield
        finally:
            for name, function in real.items():
                setattr(fs, name, function)

    def _make_unreadable(self, index: int) -> None:
        objects = [p for p in (self.roots[index] / "objects").rglob("*") if p.is_file()]
        if objects:
            path = self.rng.choice(sorted(objects))
            self.unreadable[str(path)] = self.step + self.rng.randrange(*UNREADABLE_STEPS)
            self.stats["unreadable"] = self.stats.get("unreadable", 0) + 1

    def _run(self) -> None:
        drops = str(self.drops)
        replicas: list[Replica] = [
            self.make_replica(root, self.grace, drops) for root in self.roots
        ]
        try:
            actions, weights = zip(*ACTIONS.items(), strict=True)
            for step in range(self.steps):
                self.step = step
                action = self.rng.choices(actions, weights)[0]
                target = self.rng.randrange(len(replicas))
                self.log.append(f"{step}: {action} at replica {target}")
                self._act(action, replicas[target], target)
                self._check_opens(self.rng.randrange(len(replicas)))
            self.unreadable.clear()  # every file reads again
            for replica in replicas:
                replica.settle()
            self.replicator.quiesce()
            self.replicator.exchange_all()
            for replica in replicas:
                replica.cleanup("default", gc=False)
        finally:
            for replica in replicas:
                replica.close()
        self._check_converged()

    def _act(self, action: str, replica: Replica, index: int) -> None:
        rng = self.rng
        if action == "put":
            self._put(replica)
        elif action == "get":
            known = sorted(self.ledger.variants)
            if known and rng.random() < 0.75:  # mostly keys someone put
                block, module, _ = rng.choice(known)
            else:
                block, module = rng.choice(BLOCKS), rng.choice(MODULES)
            self._read(replica, block, module)
        elif action in ("cleanup", "gc"):
            strategy = rng.choice(("default", "keep-all", f"drop-{rng.choice(MODULES)}"))
            replica.cleanup(strategy, gc=action == "gc")
            self.stats[action] = self.stats.get(action, 0) + 1
            self.log[-1] += f" {strategy}"
        elif action == "reopen":
            replica.reopen(rng)
        else:
            self._act_on_files(action, index)

    def _act_on_files(self, action: str, index: int) -> None:
        """What the sync tool (or a failing disk) does to the replicas' files."""
        replicator = self.replicator
        if action == "scan":
            replicator.scan(index)
        elif action == "deliver":
            for _ in range(self.rng.randrange(1, 6)):
                replicator.deliver()
        elif action == "deliver-logs":
            self.stats["log first"] = self.stats.get("log first", 0) + replicator.deliver_logs()
        elif action == "unreadable":
            self._make_unreadable(index)
        elif action == "duplicate":
            replicator.duplicate()
        elif action == "resurrect":
            replicator.resurrect()

    def _put(self, replica: Replica) -> None:
        rng = self.rng
        block, module = rng.choice(BLOCKS), rng.choice(MODULES)
        created_at = rng.choice((None, None, *EXPLICIT_TIMES))
        variant = rng.choice((0, 0, 1))
        stored = replica.put(block, module, created_at, variant)
        self.log[-1] += f" {block}/{module}@{created_at} v{variant} -> {stored}"
        if stored is None:
            self.stats["clashes"] += 1
        else:
            self.ledger.record(block, module, stored, variant)

    def _read(self, replica: Replica, block: str, module: str) -> None:
        exact = self.rng.random() < 0.3
        created_at = self.rng.choice(EXPLICIT_TIMES) if exact else None
        found = replica.get(block, module, created_at)
        self.stats["reads"] += 1
        if found is None:
            return
        self.stats["hits"] += 1
        stored_at, value = found
        assert not exact or stored_at == created_at, (block, module, created_at, stored_at)
        problem = self.ledger.check(block, module, stored_at, value)
        assert problem is None, f"wrong value read: {problem}"

    def _check_opens(self, index: int) -> None:
        """A fresh store opens on the replica, lists its entries and reads one."""
        with as_host(self.roots[index].name):
            self._check_open(self.roots[index])

    def _check_open(self, root: Path) -> None:
        options = store_options(self.grace, str(self.drops), exit_cleanup=False)
        store = FsPersistentStore(root, **options)
        entries = store.entries()
        self.stats["opens"] += 1
        if entries and self.rng.random() < 0.25:  # a hit writes an access record
            key = self.rng.choice(entries).key
            entry = store.get(key, exact_match_created_at=True)
            if entry is not None:
                assert key.created_at is not None
                problem = self.ledger.check(
                    key.block_id, key.module_hash, key.created_at, dict(entry.variables)
                )
                assert problem is None, f"wrong value read by a fresh store: {problem}"
        store.close()

    def _check_converged(self) -> None:
        """The same live entries everywhere; each loads right or is a miss
        (an object a sync tool left with the right size and the wrong bytes
        passes a cleanup, which checks sizes only, and a placeholder may
        hold an object's name while the right bytes are a conflicted copy);
        after `verify(repair=True)` no completed put is lost, a second
        `verify()` finds nothing and every live entry loads."""
        live = []
        options = store_options(self.grace, str(self.drops), exit_cleanup=False)
        for root in self.roots:
            with as_host(root.name):  # each replica is another machine
                store = FsPersistentStore(root, **options)
                live.append({m.key: m.contents for m in store.entries()})
                self._check_loads(store, root, every=False)
                # Without a grace, what GC deleted under an unseen entry stays
                # missing (counted by _check_no_put_lost): drop those entries.
                report = store.verify(repair=True, drop_dangling=self.grace == 0)
                self.stats["repaired problems"] = self.stats.get("repaired problems", 0) + len(
                    report.problems
                )
                assert report.skipped == [], report.skipped
                store.close()
        self._check_no_put_lost(options)
        for root in self.roots:
            with as_host(root.name):  # each replica is another machine
                store = FsPersistentStore(root, **options)
                second = store.verify().problems
                assert second == [], f"{root.name}: after a repair, verify() found {second}"
                self._check_loads(store, root, every=True)
                store.close()
        for root, entries in zip(self.roots[1:], live[1:], strict=True):
            if entries != live[0]:
                only_here = sorted(set(entries) - set(live[0]), key=str)[:5]
                only_there = sorted(set(live[0]) - set(entries), key=str)[:5]
                differ = [k for k in set(entries) & set(live[0]) if entries[k] != live[0][k]]
                raise AssertionError(
                    f"{root.name} did not converge with {self.roots[0].name}: only in "
                    f"{root.name} {only_here}, only in {self.roots[0].name} {only_there}, "
                    f"different contents {differ[:5]}"
                )

    def _check_no_put_lost(self, options: dict[str, Any]) -> None:
        """Every put that returned loads, with a right value, on every
        replica, unless a strategy dropped its key (the rule is named), or
        object GC without a grace deleted its objects (counted apart)."""
        dropped = read_drops(self.drops)
        lost: list[str] = []
        for root in self.roots:
            with as_host(root.name):  # each replica is another machine
                store = FsPersistentStore(root, **options)
                for (block, module, created_at), _ in sorted(self.ledger.variants.items()):
                    rule = dropped.get((block, module, created_at))
                    if rule is not None:
                        self.stats[f"puts dropped by {rule.split(':')[0]}"] = (
                            self.stats.get(f"puts dropped by {rule.split(':')[0]}", 0) + 1
                        )
                        continue
                    entry = store.get(ExecutionKey(block, module, created_at), True)
                    if entry is None:
                        lost.append(f"{root.name}: {block}/{module}@{created_at}")
                        continue
                    problem = self.ledger.check(block, module, created_at, dict(entry.variables))
                    assert problem is None, f"{root.name}: wrong value: {problem}"
                store.close()
        if lost and self.grace == 0:
            # No grace: GC may delete an object whose entry has not arrived,
            # and a read quarantines a copy still arriving (docs/sync.md).
            self.stats["puts lost with object_grace_seconds=0"] = len(lost)
            return
        self.stats["lost puts"] = len(lost)
        assert not lost, f"completed puts lost: {lost[:6]}"

    def _check_loads(self, store: FsPersistentStore, root: Path, *, every: bool) -> None:
        """Each live entry loads with a right value (or, unless `every`, misses)."""
        for metadata in store.entries():
            key = metadata.key
            assert key.created_at is not None
            entry = store.get(key, exact_match_created_at=True)
            if entry is None:
                assert not every, f"{root.name}: live entry {key} does not load after repair"
                self.stats["final misses"] = self.stats.get("final misses", 0) + 1
                continue
            problem = self.ledger.check(
                key.block_id, key.module_hash, key.created_at, dict(entry.variables)
            )
            assert problem is None, f"{root.name}: {problem}"
