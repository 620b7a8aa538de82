"""`MarimoStore` in-process: marimo's key-value interface on the store.

Keys are marimo's relative paths (see marimo_store/_marimo_keys.py). The
subprocess tests with real notebooks are in test_marimo_notebooks.py.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _layout import log_dir, object_files

from marimo_store import (
    ConfigError,
    DefaultCleanupStrategy,
    FsPersistentStore,
    InvalidArgumentError,
    InvalidKeyError,
    StoreError,
)
from marimo_store.marimo import MarimoStore

pytestmark = pytest.mark.usefixtures("home")  # the real user's configuration never counts

HASH = "PSfhcRoqms3vYD_zS9PtDA_TeVkdYgT3_AJUSkxrNy8"
PICKLE_KEY = f"big_block/C_{HASH}.pickle"
MANIFEST_KEY = f"lazy_block/C_{HASH}.jsonl"
BLOB_KEY = f"lazy_block/{HASH}/arr.npy"
ARRAY = np.arange(50_000, dtype=np.float64)


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def marimo_store(store_path: Path) -> MarimoStore:
    return MarimoStore(store_path)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        pytest.param("block/../escape.pickle", "'..' segment", id="dotdot"),
        pytest.param("..", "'..' segment", id="dotdot-alone"),
        pytest.param("block/./x.pickle", "'.' segment", id="dot"),
        pytest.param("/etc/passwd", "absolute path", id="absolute"),
        pytest.param("C:/x/y.pickle", "absolute path", id="drive"),
        pytest.param("block\\x.pickle", "backslash", id="backslash"),
        pytest.param("block/x\x00.pickle", "NUL", id="nul"),
        pytest.param("block//x.pickle", "empty segment", id="empty-segment"),
        pytest.param("block/", "empty segment", id="trailing-slash"),
        pytest.param("", "empty", id="empty"),
    ],
)
def test_unsafe_keys_are_refused_by_every_method(
    marimo_store: MarimoStore, store_path: Path, key: str, problem: str
) -> None:
    for call in (
        lambda: marimo_store.get(key),
        lambda: marimo_store.put(key, b"data"),
        lambda: marimo_store.hit(key),
        lambda: marimo_store.clear(key),
    ):
        with pytest.raises(InvalidKeyError, match=problem) as raised:
            call()
        assert isinstance(raised.value, StoreError)
        assert repr(key) in str(raised.value)
    assert not store_path.exists()


def test_a_key_must_be_a_str_and_a_value_bytes(marimo_store: MarimoStore) -> None:
    with pytest.raises(InvalidKeyError, match="must be a str, got int"):
        marimo_store.get(7)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="must be bytes, got str"):
        marimo_store.put(PICKLE_KEY, "text")  # type: ignore[arg-type]


def test_a_pickle_entry_round_trips_and_maps_to_its_block(
    marimo_store: MarimoStore, store_path: Path
) -> None:
    blob = pickle.dumps({"arr": ARRAY}, protocol=5)
    assert not marimo_store.hit(PICKLE_KEY)
    assert marimo_store.get(PICKLE_KEY) is None
    assert marimo_store.put(PICKLE_KEY, blob) is True
    assert marimo_store.hit(PICKLE_KEY)
    assert marimo_store.get(PICKLE_KEY) == blob
    marimo_store.close()

    (metadata,) = FsPersistentStore(store_path).entries()
    assert metadata.key.block_id == "big_block"
    assert metadata.key.module_hash == f"C_{HASH}.pickle"
    assert list(metadata.variables) == [PICKLE_KEY]
    assert MarimoStore(store_path).get(PICKLE_KEY) == blob


def test_root_keys_are_blocks_of_their_own(marimo_store: MarimoStore, store_path: Path) -> None:
    marimo_store.put("nb-0a30cf0177525eff.json", b'{"version": 1}')
    marimo_store.put("other-1111111111111111.json", b'{"version": 1}')
    assert marimo_store.get("nb-0a30cf0177525eff.json") == b'{"version": 1}'
    blocks = {m.key.block_id for m in FsPersistentStore(store_path).entries()}
    assert blocks == {"nb-0a30cf0177525eff.json", "other-1111111111111111.json"}


def test_lazy_blobs_wait_for_their_manifest_then_form_one_entry(
    marimo_store: MarimoStore, store_path: Path
) -> None:
    blob = npy_bytes(ARRAY)
    assert marimo_store.put(BLOB_KEY, blob)
    # Until the manifest arrives, this process serves the blob from memory
    # and nothing is written.
    assert marimo_store.get(BLOB_KEY) == blob
    assert marimo_store.hit(BLOB_KEY)
    assert not log_dir(store_path).exists()
    assert MarimoStore(store_path).get(BLOB_KEY) is None

    manifest = b'{"hash": "...", "defs": {}}'
    assert marimo_store.put(MANIFEST_KEY, manifest)
    (metadata,) = FsPersistentStore(store_path).entries()
    assert metadata.key.block_id == "lazy_block"
    assert metadata.key.module_hash == HASH
    assert sorted(metadata.variables) == sorted([BLOB_KEY, MANIFEST_KEY])

    other = MarimoStore(store_path)
    assert other.get(MANIFEST_KEY) == manifest
    assert other.get(BLOB_KEY) == blob


def test_a_manifest_whose_blob_is_gone_is_a_miss(
    marimo_store: MarimoStore, store_path: Path
) -> None:
    marimo_store.put(BLOB_KEY, npy_bytes(ARRAY))
    marimo_store.put(MANIFEST_KEY, b"{}")
    for path in object_files(store_path):
        path.unlink()
    reader = MarimoStore(store_path)
    assert reader.get(MANIFEST_KEY) is None
    assert not reader.hit(MANIFEST_KEY)


def test_clear_deletes_the_whole_entry(marimo_store: MarimoStore, store_path: Path) -> None:
    marimo_store.put(BLOB_KEY, npy_bytes(ARRAY))
    marimo_store.put(MANIFEST_KEY, b"{}")
    marimo_store.put(PICKLE_KEY, b"pickle bytes")
    assert marimo_store.clear(BLOB_KEY) is True
    assert marimo_store.get(MANIFEST_KEY) is None
    assert marimo_store.get(BLOB_KEY) is None
    assert marimo_store.get(PICKLE_KEY) == b"pickle bytes"
    assert marimo_store.clear(BLOB_KEY) is False
    assert [m.key.block_id for m in FsPersistentStore(store_path).entries()] == ["big_block"]


def test_clear_of_a_waiting_blob_drops_only_that_blob(
    marimo_store: MarimoStore, store_path: Path
) -> None:
    ui_key = f"lazy_block/{HASH}/ui.pickle"
    marimo_store.put(BLOB_KEY, b"array")
    marimo_store.put(ui_key, b"ui")
    assert marimo_store.clear(ui_key) is True
    marimo_store.put(MANIFEST_KEY, b"{}")
    (metadata,) = FsPersistentStore(store_path).entries()
    assert sorted(metadata.variables) == sorted([BLOB_KEY, MANIFEST_KEY])


def test_the_same_array_in_two_blocks_and_two_formats_is_one_file(
    marimo_store: MarimoStore, store_path: Path
) -> None:
    # What marimo writes: the pickle of a whole cache entry (names and hashes
    # differ), and the .npy blob of a lazy entry.
    first = pickle.dumps({"hash": "a", "defs": {"x": ARRAY}}, protocol=5)
    second = pickle.dumps({"hash": "b", "defs": {"y": ARRAY, "n": 3}}, protocol=5)
    assert first != second
    marimo_store.put("block_a/C_a.pickle", first)
    marimo_store.put("block_b/C_b.pickle", second)
    marimo_store.put(BLOB_KEY, npy_bytes(ARRAY))
    marimo_store.put(MANIFEST_KEY, b"{}")
    (data_file,) = [p for p in object_files(store_path) if p.stat().st_size >= ARRAY.nbytes]
    assert data_file.stat().st_size == ARRAY.nbytes
    assert sum(p.stat().st_size for p in object_files(store_path)) < 1.1 * ARRAY.nbytes

    reader = MarimoStore(store_path)
    assert reader.get("block_a/C_a.pickle") == first
    assert reader.get("block_b/C_b.pickle") == second
    assert np.array_equal(pickle.loads(reader.get("block_b/C_b.pickle") or b"")["defs"]["y"], ARRAY)


def test_cleanup_keeps_and_drops_marimo_entries_whole(store_path: Path) -> None:
    store = MarimoStore(
        store_path, cleanup_strategy={"max_entries_per_block": 1}, object_grace_seconds=0
    )
    for i in range(5):
        store.put(f"lazy_block/h{i}/arr.npy", npy_bytes(ARRAY + i))
        store.put(f"lazy_block/h{i}/small.pickle", pickle.dumps(i))
        store.put(f"lazy_block/C_h{i}.jsonl", b"manifest %d" % i)
    report = store.store.cleanup(include_content=True)
    assert len(report.dropped) == 4
    (kept,) = store.store.entries()
    assert kept.key.module_hash == "h4"
    assert sorted(kept.variables) == sorted(
        ["lazy_block/h4/arr.npy", "lazy_block/h4/small.pickle", "lazy_block/C_h4.jsonl"]
    )
    assert store.get("lazy_block/C_h4.jsonl") == b"manifest 4"
    assert store.get("lazy_block/h4/arr.npy") == npy_bytes(ARRAY + 4)
    for i in range(4):
        assert store.get(f"lazy_block/C_h{i}.jsonl") is None
        assert store.get(f"lazy_block/h{i}/arr.npy") is None
    # Only the kept entry's array is left on disk.
    assert [p.stat().st_size for p in object_files(store_path)] == [ARRAY.nbytes]


def test_options_are_those_of_fs_persistent_store(store_path: Path) -> None:
    store = MarimoStore(
        store_path,
        object_id_mode="execution_key_qualified",
        cleanup_strategy={"max_entries_per_block": 2},
    )
    assert store.store.object_id_mode == "execution_key_qualified"
    assert store.store.cleanup_strategy == DefaultCleanupStrategy(max_entries_per_block=2)
    with pytest.raises(ConfigError, match="durability"):
        MarimoStore(store_path, durability="never")
    with pytest.raises(ConfigError, match="max_entries_per_block"):
        MarimoStore(store_path, cleanup_strategy={"max_entries_per_block": 0})
    with pytest.raises(ConfigError, match=r"cleanup_strategy: .*unexpected keyword"):
        MarimoStore(store_path, cleanup_strategy={"keep": 1})
    with pytest.raises(TypeError):
        MarimoStore(store_path, no_such_option=1)


def test_pickles_as_its_configuration(store_path: Path) -> None:
    store = MarimoStore(store_path, cleanup_strategy={"max_entries_per_block": 1})
    store.put(PICKLE_KEY, b"value")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get(PICKLE_KEY) == b"value"
    assert copy.store.cleanup_strategy == store.store.cleanup_strategy


def test_local_dirs_is_the_store_directory(store_path: Path) -> None:
    assert MarimoStore(store_path).local_dirs() == [store_path]


def test_without_a_path_the_store_is_marimo_persist_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = MarimoStore()
    assert store.local_dirs() == [tmp_path / "__marimo__" / "persist"]
    store.put(PICKLE_KEY, b"value")
    assert FsPersistentStore(tmp_path / "__marimo__" / "persist").entries()


def test_configuration_files_fill_in_what_the_arguments_leave_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / ".marimo.toml").write_text(
        "[fs_persister.defaults]\n"
        'dir_path = "shared-store"\n'
        'durability = "fsync"\n'
        "[fs_persister.default_cleanup_strategy]\n"
        "max_entries_per_block = 1\n"
    )
    monkeypatch.chdir(project / "notebooks")
    configured = MarimoStore().store
    assert configured.path == str(project / "shared-store")
    assert configured.durability == "fsync"
    assert configured.cleanup_strategy == DefaultCleanupStrategy(max_entries_per_block=1)
    # Arguments win, key by key.
    given = MarimoStore(tmp_path / "given", durability="flush").store
    assert given.path == str(tmp_path / "given")
    assert given.durability == "flush"
    assert given.cleanup_strategy == DefaultCleanupStrategy(max_entries_per_block=1)


def test_a_bad_configuration_file_fails_on_first_use_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".marimo.toml").write_text('[fs_persister.defaults]\ndurability = "never"\n')
    monkeypatch.chdir(tmp_path)
    store = MarimoStore(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"\.marimo\.toml.*durability"):
        store.get(PICKLE_KEY)


def test_is_marimo_store_subclass_and_listed_as_fs_persistent() -> None:
    from marimo._save.stores import _get_store_from_config
    from marimo._save.stores.store import Store

    assert issubclass(MarimoStore, Store)
    built = _get_store_from_config({"type": "fs_persistent", "args": {"path": "somewhere"}})
    assert isinstance(built, MarimoStore)
    assert built.store.path == str(Path("somewhere").absolute())


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_marimo_store_does_not_import_marimo() -> None:
    out = run_python(
        """
        import sys
        import marimo_store
        print("marimo" in sys.modules, "marimo_store.marimo" in sys.modules)
        store_class = marimo_store.MarimoStore
        print("marimo" in sys.modules, store_class.__module__)
        """
    )
    assert out.split() == ["False", "False", "True", "marimo_store.marimo"]


def test_marimo_store_works_without_marimo(tmp_path: Path) -> None:
    out = run_python(
        f"""
        import sys
        sys.modules["marimo"] = None  # as if marimo were not installed
        from marimo_store.marimo import MarimoStore
        store = MarimoStore({str(tmp_path / "store")!r})
        store.put("block/C_x.pickle", b"value")
        print(MarimoStore.__mro__[1].__name__, store.get("block/C_x.pickle"))
        """
    )
    assert out.split() == ["object", "b'value'"]


def test_blobs_whose_manifest_never_comes_are_forgotten(
    marimo_store: MarimoStore, store_path: Path
) -> None:
    # A lazy write that failed after its blobs leaves them waiting; newer
    # entries push them out (32 may wait), and nothing of them is stored.
    for i in range(33):
        marimo_store.put(f"lazy_block/h{i}/x.pickle", b"blob %d" % i)
    assert marimo_store.get("lazy_block/h0/x.pickle") is None
    assert marimo_store.get("lazy_block/h1/x.pickle") == b"blob 1"
    marimo_store.put("lazy_block/C_h0.jsonl", b"{}")
    (metadata,) = FsPersistentStore(store_path).entries()
    assert list(metadata.variables) == ["lazy_block/C_h0.jsonl"]
