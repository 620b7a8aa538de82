"""Signed entries and verification modes: what someone who can write the
store folder, but does not hold a trusted key, can and cannot make a reader do.

The attacker here does what anyone with write access to a shared folder can
do: run marimo_store with their own key (or none) in another process,
rewrite log records (recomputing their checksums, which are no secret),
replace object files, and write `local/`. Every planted pickle is a
`Tripwire`: unpickling it creates a marker file, so "never unpickled" is
observed, not assumed, and each test shows the tripwire firing where
loading is meant to happen.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import workers
from _checks import refuse_unpickling
from _layout import local_dir, log_dir, object_path, objects_dir, quarantine_dir, snapshots_dir
from conftest import StoreFactory
from workers.trust import JSON_VALUE, PLANTED, Tripwire

from marimo_store import (
    Entry,
    ExecutionKey,
    NotFoundError,
    StoreWarning,
    UntrustedEntryError,
    _trust,
    generate_signing_key,
    persistent_cache,
)
from marimo_store._format.framing import frame, pack, parse_frames, unpack
from marimo_store._hashed_objects import fingerprint, ledger_name
from marimo_store._hashing import content_digest
from marimo_store._signing import KEY_ENV, KEY_FILE_ENV


class Keys:
    """Two signing keys: alice (the reader's own) and mallory (someone else)."""

    def __init__(self, directory: Path) -> None:
        self.alice = directory / "alice.pem"
        self.mallory = directory / "mallory.pem"
        self.alice_fp = generate_signing_key(self.alice)
        self.mallory_fp = generate_signing_key(self.mallory)


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keys:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    return Keys(tmp_path / "keys")


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Created by any planted pickle that gets unpickled."""
    return tmp_path / "tripped"


def plant(store_path: Path, key: Path | None, marker: Path, *specs: str) -> None:
    """Entries `BLOCK:FORMAT` put by another process (see workers/trust.py)."""
    environment = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, KEY_FILE_ENV)}
    subprocess.run(
        workers.script("trust", str(store_path), str(key or "-"), str(marker), *specs),
        check=True,
        env=workers.environment(environment),
        timeout=120,
    )


def planted(block: str) -> ExecutionKey:
    return ExecutionKey(block, PLANTED)


def rewrite_entries(store_path: Path, change: Callable[[dict[str, Any]], None]) -> int:
    """Change entry records in place, as someone without the key can: edit
    the msgpack, recompute the frame checksum. Returns how many changed."""
    changed = 0
    for segment in sorted(log_dir(store_path).glob("*.log")):
        data = memoryview(segment.read_bytes())
        payloads = parse_frames(data).payloads
        records = [unpack(payload) for payload in payloads]
        out = []
        for record in records:
            assert record is not None
            if record.get("t") == "entry":
                before = pack(record)
                change(record)
                changed += pack(record) != before
            out.append(frame(pack(record)))
        segment.write_bytes(b"".join(out))
    return changed


def untrusted_warnings(caught: list[warnings.WarningMessage], text: str) -> int:
    return sum(1 for w in caught if issubclass(w.category, StoreWarning) and text in str(w.message))


# -- planted entries -------------------------------------------------------------


def test_an_entry_planted_by_another_key_is_never_unpickled_under_on_and_raises_under_strict(
    make_store: StoreFactory, store_path: Path, keys: Keys, marker: Path
) -> None:
    own_key = ExecutionKey("mine", "run")
    writer = make_store(signing_key=keys.alice, verify_signatures="on")
    writer.put(Entry.of(own_key, {"x": list(range(300))}))
    writer.close()
    plant(store_path, keys.mallory, marker, "a:pickle", "b:pickle", "j:json")
    plant(store_path, None, marker, "u:pickle")

    reader = make_store(signing_key=keys.alice, verify_signatures="on")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reader.get(planted("a")) is None
        assert reader.get(planted("b")) is None
        assert reader.get(planted("u")) is None
        assert reader.get(planted("u")) is None
        with pytest.raises(NotFoundError):
            reader.load_variable(planted("a"), "value")
    assert not marker.exists()
    assert untrusted_warnings(caught, keys.mallory_fp) == 1  # one per signer, not per entry
    assert untrusted_warnings(caught, "is not signed") == 1
    # JSON never runs code: it loads whoever wrote it. Our own entry is trusted.
    json_entry = reader.get(planted("j"))
    assert json_entry is not None and json_entry.variables["value"] == JSON_VALUE
    own = reader.get(own_key)
    assert own is not None and own.variables["x"] == list(range(300))
    assert reader.lookup(planted("a")) is None  # passed over, as get would
    assert reader.lookup(own_key) is not None

    strict = make_store(signing_key=keys.alice, verify_signatures="strict")
    with pytest.raises(UntrustedEntryError, match=keys.mallory_fp) as raised:
        strict.get(planted("a"))
    assert "trusted_signers" in str(raised.value)
    with pytest.raises(UntrustedEntryError, match="is not signed"):
        strict.load_variable(planted("u"), "value")
    strict_json = strict.get(planted("j"))
    assert strict_json is not None and strict_json.variables["value"] == JSON_VALUE
    assert not marker.exists()

    # The tripwire works: trusting mallory's key loads (and runs) the planted pickle.
    trusting = make_store(verify_signatures="on", trusted_signers=[keys.mallory_fp])
    assert trusting.get(planted("a")) is not None
    assert marker.exists()


def test_a_named_object_saved_by_another_key_does_not_load(
    make_store: StoreFactory, keys: Keys, marker: Path
) -> None:
    with make_store(signing_key=keys.mallory) as planter:
        planter.save("model", Tripwire(str(marker)))
    reader = make_store(signing_key=keys.alice, verify_signatures="on")
    with pytest.warns(StoreWarning, match=keys.mallory_fp), pytest.raises(NotFoundError):
        reader.load("model")
    with pytest.raises(UntrustedEntryError):
        make_store(signing_key=keys.alice, verify_signatures="strict").load("model")
    assert not marker.exists()
    reader.save("model", {"mine": True})  # a newer version, signed by alice
    assert reader.load("model") == {"mine": True}


def test_off_mode_loads_planted_pickles(
    make_store: StoreFactory, store_path: Path, keys: Keys, marker: Path
) -> None:
    """The default trusts the folder: what signatures are there to prevent."""
    plant(store_path, None, marker, "u:pickle")
    assert make_store(signing_key=keys.alice).get(planted("u")) is not None
    assert marker.exists()


def test_signature_status_says_what_the_store_makes_of_each_entry(
    make_store: StoreFactory, store_path: Path, keys: Keys, marker: Path
) -> None:
    plant(store_path, keys.mallory, marker, "m:pickle")
    plant(store_path, None, marker, "u:pickle")
    store = make_store(signing_key=keys.alice)  # mode "off": the status is still told
    store.put(Entry.of(ExecutionKey("mine", "x"), {"v": 1}))
    statuses = {
        metadata.key.block_id: store.signature_status(metadata.key) for metadata in store.entries()
    }
    assert {block: (s.status, s.signer) for block, s in statuses.items() if s} == {
        "mine": ("trusted", keys.alice_fp),
        "m": ("untrusted", keys.mallory_fp),
        "u": ("unsigned", None),
    }
    assert store.signature_status(ExecutionKey("nothing", "here", 1)) is None
    assert not marker.exists()


# -- what an attacker can do to records and files ----------------------------------


def _signed_entry(make_store: StoreFactory, keys: Keys, **variables: Any) -> ExecutionKey:
    # A current created_at: an old one would start a background cleanup, whose
    # snapshot would keep the untouched record out of the attacker's reach.
    with make_store(signing_key=keys.alice) as writer:
        entry = Entry.of(ExecutionKey("signed", "entry"), variables, user_metadata={"note": "ok"})
        return writer.put(entry).key


def _flip_signature(record: dict[str, Any]) -> None:
    record["sig"] = bytes([record["sig"][0] ^ 1]) + record["sig"][1:]


def _change_metadata(record: dict[str, Any]) -> None:
    record["um"]["note"] = "approved by everyone"


def _change_environment(record: dict[str, Any]) -> None:
    record["pl"] = "elsewhere-x86_64"


def _replace_inline_pickle(record: dict[str, Any]) -> None:
    value = record["c"]["variables"]["small"]
    value["d"] = pickle.dumps(Tripwire(os.environ["TRIPWIRE_MARKER"]), protocol=5)
    value["s"] = len(value["d"])


@pytest.mark.parametrize(
    "tamper",
    [_flip_signature, _change_metadata, _change_environment, _replace_inline_pickle],
    ids=["signature", "user-metadata", "environment", "inline-pickle"],
)
def test_a_record_changed_without_the_key_is_rejected(
    make_store: StoreFactory,
    store_path: Path,
    *,
    keys: Keys,
    marker: Path,
    monkeypatch: pytest.MonkeyPatch,
    tamper: Callable[[dict[str, Any]], None],
) -> None:
    monkeypatch.setenv("TRIPWIRE_MARKER", str(marker))
    key = _signed_entry(make_store, keys, small=[1, 2, 3])
    assert rewrite_entries(store_path, tamper) == 1
    reader = make_store(signing_key=keys.alice, verify_signatures="on")
    with pytest.warns(StoreWarning, match="does not match the entry"):
        assert reader.get(key) is None
    status = reader.signature_status(key)
    assert status is not None and status.status == "invalid"
    with pytest.raises(UntrustedEntryError, match="does not match"):
        make_store(signing_key=keys.alice, verify_signatures="strict").get(key)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("keep_digest", "complaint"),
    [(True, "does not match the entry"), (False, "no digest of object")],
    ids=["old-digest-kept", "digest-removed"],
)
def test_an_object_file_swapped_together_with_its_id_in_the_record_is_rejected(
    make_store: StoreFactory,
    store_path: Path,
    *,
    keys: Keys,
    marker: Path,
    keep_digest: bool,
    complaint: str,
) -> None:
    key = _signed_entry(make_store, keys, big=list(range(2000)))
    evil = pickle.dumps(Tripwire(str(marker)), protocol=5) + b"\x00" * 600
    evil_id = content_digest(evil).hex()
    (objects_dir(store_path) / evil_id[:2]).mkdir(exist_ok=True)
    object_path(store_path, evil_id).write_bytes(evil)

    def swap(record: dict[str, Any]) -> None:
        ref = record["c"]["variables"]["big"]
        ref["i"], ref["s"] = bytes.fromhex(evil_id), len(evil)
        if not keep_digest:
            del ref["h"]

    assert rewrite_entries(store_path, swap) == 1
    reader = make_store(signing_key=keys.alice, verify_signatures="on")
    with pytest.warns(StoreWarning, match=complaint):
        assert reader.get(key) is None
    assert not marker.exists()
    assert make_store().get(key) is not None  # the swap itself works: "off" runs it
    assert marker.exists()


def test_object_bytes_that_pass_xxh3_but_not_the_signed_digest_are_a_quarantined_miss(
    make_store: StoreFactory, store_path: Path, keys: Keys, marker: Path
) -> None:
    """An xxh3 collision, modelled by a reader that skips xxh3 (verify_reads=False):
    only the SHA-256 in the signed record stands between the file and pickle."""
    key = _signed_entry(make_store, keys, big=list(range(2000)))
    (path,) = objects_dir(store_path).glob("??/*")
    size = path.stat().st_size
    evil = pickle.dumps(Tripwire(str(marker)), protocol=5)
    path.write_bytes(evil + b"\x00" * (size - len(evil)))  # same name, same size
    reader = make_store(
        signing_key=keys.alice,
        verify_signatures="on",
        verify_reads=False,
        object_grace_seconds=0,  # quarantined at once, not left as a copy still arriving
    )
    with pytest.warns(StoreWarning, match="do not match the signed digest"):
        assert reader.get(key) is None
    assert not marker.exists()
    assert list(quarantine_dir(store_path).iterdir())


@pytest.mark.skipif(ledger_name() is None, reason="the shared ledger needs a boot id (Linux)")
def test_a_forged_verification_ledger_does_not_vouch_for_an_object_in_trust_modes(
    make_store: StoreFactory, store_path: Path, keys: Keys, marker: Path
) -> None:
    """`local/` is as writable as the rest of the folder. A large object swapped
    for same-sized malicious bytes, with a forged ledger record saying this
    machine verified the new file, skips xxh3; "on" still checks SHA-256."""
    key = _signed_entry(make_store, keys, big=b"\x01" * (5 * 1024 * 1024))
    (path,) = objects_dir(store_path).glob("??/*")
    evil = pickle.dumps(Tripwire(str(marker)), protocol=5)
    evil += b"\x00" * (path.stat().st_size - len(evil))
    replacement = path.with_name("incoming")
    replacement.write_bytes(evil)
    os.replace(replacement, path)

    def forge_ledger_record() -> None:
        name = ledger_name()
        assert name is not None
        row = [path.parent.name + path.name, *fingerprint(path.stat())]
        local_dir(store_path).mkdir(exist_ok=True)
        with open(local_dir(store_path) / name, "ab") as ledger:
            ledger.write(frame(msgpack.packb(row)))

    forge_ledger_record()

    with pytest.warns(StoreWarning, match="do not match the signed digest"):
        assert make_store(signing_key=keys.alice, verify_signatures="on").get(key) is None
    assert not marker.exists()
    replacement.write_bytes(evil)  # again (it was quarantined), with a new forged record
    os.replace(replacement, path)
    forge_ledger_record()
    assert make_store().get(key) is not None  # without trust checks the forgery works
    assert marker.exists()


# -- snapshots, cleanup and merge ----------------------------------------------------


def test_merging_two_replicas_keeps_every_signature_valid(
    make_store: StoreFactory, tmp_path: Path, keys: Keys
) -> None:
    replica_a, replica_b = tmp_path / "a", tmp_path / "b"
    array = np.arange(100_000, dtype=np.float64)  # an out-of-band buffer: an object file
    for replica, key_file, block in ((replica_a, keys.alice, "A"), (replica_b, keys.mallory, "B")):
        with make_store(replica, signing_key=key_file) as writer:
            for i in range(3):
                writer.put(Entry.of(ExecutionKey(block, f"m{i}"), {"a": array + i}))
            writer.cleanup()
    before = {m.key: m.signature for r in (replica_a, replica_b) for m in make_store(r).entries()}
    assert len(before) == 6 and all(before.values())
    for source, target in ((replica_b, replica_a), (replica_a, replica_b)):  # a sync tool
        for part in ("log", "snapshots", "objects"):
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
    make_store(replica_a).cleanup()  # merges the two heads into one snapshot
    assert len(list(snapshots_dir(replica_a).glob("*.snap"))) == 1

    reader = make_store(
        replica_a, signing_key=keys.alice, verify_signatures="strict",
        trusted_signers=[keys.mallory_fp],
    )  # fmt: skip
    after = {metadata.key: metadata.signature for metadata in reader.entries()}
    assert after == before  # byte for byte: nothing dropped, nothing re-signed
    for key in after:
        status = reader.signature_status(key)
        assert status is not None and status.status == "trusted"
        entry = reader.get(key)
        assert entry is not None
        np.testing.assert_array_equal(entry.variables["a"], array + int(key.module_hash[1]))
    # Merge made nobody's entries look like someone else's: alice alone refuses B's.
    alone = make_store(replica_a, signing_key=keys.alice, verify_signatures="on")
    with pytest.warns(StoreWarning, match=keys.mallory_fp):
        assert alone.get(ExecutionKey("B", "m0")) is None
    assert alone.get(ExecutionKey("A", "m0")) is not None


def test_signatures_are_checked_once_per_entry_per_process(
    make_store: StoreFactory, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ExecutionKey("once", "x")
    with make_store(signing_key=keys.mallory) as writer:
        writer.put(Entry.of(key, {"v": 1}))
    calls: list[int] = []
    real = _trust.signature_matches

    def counting(*args: Any) -> bool:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_trust, "signature_matches", counting)
    reader = make_store(
        signing_key=keys.alice, verify_signatures="strict", trusted_signers=[keys.mallory_fp]
    )
    for _ in range(20):
        assert reader.get(key) is not None
    assert len(calls) == 1
    reader.cleanup()  # a new snapshot: entries are decoded again, the signed bytes are known
    for _ in range(5):
        assert reader.get(key) is not None
    assert len(calls) == 1


# -- safe inspection --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "on", "strict"])
def test_inspection_never_unpickles(
    make_store: StoreFactory,
    store_path: Path,
    *,
    keys: Keys,
    marker: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    plant(store_path, keys.mallory, marker, "m:pickle")
    plant(store_path, None, marker, "u:pickle")
    with make_store(signing_key=keys.alice) as writer:
        writer.put(Entry.of(ExecutionKey("mine", "x"), {"v": {"a": 1}}))
        writer.save("model", {"weights": [1.0, 2.0]})

    refuse_unpickling(monkeypatch, "inspection unpickled something")
    store = make_store(signing_key=keys.alice, verify_signatures=mode)
    listed = store.entries()
    assert {m.key.block_id for m in listed} == {"m", "u", "mine", "model"}
    for metadata in listed:
        store.signature_status(metadata.key)
        store.lookup(metadata.key)
        assert store.history(metadata.key) == [metadata]
    assert store.names() == ["model"]
    assert store.exists("model") and store.info("model").format == "pickle"
    assert len(store) == 4 and store.cleanup(dry_run=True).entries_kept == 4
    assert not marker.exists()


# -- the caching layer and the marimo plug-in ------------------------------------------


def test_persistent_cache_hits_its_own_signed_entries_in_strict_mode(
    make_store: StoreFactory, keys: Keys, probe: Any, load_module: Any
) -> None:
    store = make_store(signing_key=keys.alice, verify_signatures="strict")
    probe.store = store
    module = load_module(
        """
        import cache_probe
        from marimo_store import persistent_cache

        @persistent_cache(store=cache_probe.store)
        def double(x):
            cache_probe.calls.append(x)
            return [x * 2] * 300
        """
    )
    assert module.double(4) == [8] * 300
    assert module.double(4) == [8] * 300
    assert probe.calls == [4]
    (metadata,) = store.entries()
    assert metadata.signature is not None and metadata.signature.signer == keys.alice_fp
    assert persistent_cache  # the public decorator is the one under test


def test_marimo_pickles_come_only_from_trusted_entries_json_from_anyone(
    tmp_path: Path, keys: Keys, home: Path
) -> None:
    from marimo_store.marimo import MarimoStore

    path = tmp_path / "persist"
    own = MarimoStore(path, signing_key=keys.alice, verify_signatures="on")
    assert own.put("mine/P_1.pickle", b"own pickle bytes")
    planter = MarimoStore(path, signing_key=keys.mallory)  # another machine's writer
    assert planter.put("cell/P_2.pickle", b"planted pickle bytes")
    assert planter.put("cell/J_3.json", b'{"planted": true}')
    planter.close()

    reader = MarimoStore(path, signing_key=keys.alice, verify_signatures="on")
    assert reader.get("mine/P_1.pickle") == b"own pickle bytes"
    assert reader.get("cell/J_3.json") == b'{"planted": true}'
    with pytest.warns(StoreWarning, match=keys.mallory_fp):
        assert reader.get("cell/P_2.pickle") is None
    strict = MarimoStore(path, signing_key=keys.alice, verify_signatures="strict")
    with pytest.raises(UntrustedEntryError):
        strict.get("cell/P_2.pickle")
    trusting = MarimoStore(path, verify_signatures="on", trusted_signers=[keys.mallory_fp])
    assert trusting.get("cell/P_2.pickle") == b"planted pickle bytes"
    for store in (own, reader, strict, trusting):
        store.close()
