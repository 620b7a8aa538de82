"""The `marimo-store` command, run as users run it: the installed console
script in a subprocess, human and `--json` output, exit codes, and one line
on stderr (never a traceback) whatever is wrong with the store."""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from _layout import log_dir, object_files

from marimo_store import Entry, ExecutionKey, FsPersistentStore, persistent_cache
from marimo_store._key_components import KEY_SCHEME
from marimo_store.cli._target import entry_id
from tests._files import flip_byte

SCRIPT = Path(sys.executable).with_name("marimo-store")
T0 = 1_700_000_000_000
ARRAY = np.arange(100_000, dtype=np.float64)  # 800 kB: an object file of its own

REFUSE_PICKLE = """\
import pickle, _pickle

def _refuse(*args, **kwargs):
    raise RuntimeError("unpickling refused by the test")

class _Refused:
    def __init__(self, *args, **kwargs):
        _refuse()

for module in (pickle, _pickle):
    module.load = module.loads = _refuse
    module.Unpickler = _Refused
"""
"""A `sitecustomize` that makes every unpickling in the process fail."""


class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def environment(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg"), **extra}


def run_cli(
    home: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Result:
    """Run the console script; whatever happens, stderr holds no traceback."""
    done = subprocess.run(
        [str(SCRIPT), *args],
        check=False,
        cwd=cwd or home,
        env=env or environment(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "\x1b[" not in done.stdout  # not a terminal: no colour, no progress
    return Result(done.returncode, done.stdout, done.stderr)


def writing_store(path: Path) -> FsPersistentStore:
    """A store that cleans up only when the test says (its entries are old:
    a put would otherwise start a background cleanup)."""
    return FsPersistentStore(path, cleanup_on_exit=False, entry_merge_timeout_seconds=1e9)


class Sample(NamedTuple):
    path: Path
    ids: dict[str, str]


def put_samples(path: Path) -> dict[str, str]:
    """Two runs sharing one array, a JSON entry and a named object."""
    store = writing_store(path)
    keys = {
        "train1": ExecutionKey("train", "m1", T0),
        "train2": ExecutionKey("train", "m2", T0 + 1000),
        "settings": ExecutionKey("settings", "s1", T0 + 2000),
    }
    store.put(Entry.of(keys["train1"], {"weights": ARRAY, "loss": 0.5}))
    store.put(Entry.of(keys["train2"], {"weights": ARRAY, "loss": 0.25}))
    store.put(
        Entry.of(
            keys["settings"], {"config": {"lr": 0.1, "tags": ["a"]}, "note": "hi"}, format="json"
        )
    )
    model = store.save("model", {"w": [1, 2]}, metadata={"epoch": 3})
    store.close()
    return {**{name: entry_id(key) for name, key in keys.items()}, "model": entry_id(model.key)}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    path = tmp_path_factory.mktemp("sample") / "store"
    return Sample(path, put_samples(path))


# -- inspection ----------------------------------------------------------------------


def test_info_counts_entries_objects_and_shared_bytes(home: Path, sample: Sample) -> None:
    result = run_cli(home, "--store", str(sample.path), "info", "--json")
    assert result.code == 0
    info = result.json()
    assert info["path"] == str(sample.path)
    assert info["format_version"] == 1
    assert (info["entries"], info["blocks"]) == (4, 3)
    assert info["objects"] == 1  # the array, once; the rest is inline
    assert info["object_files"] == 1
    assert info["logical_bytes"] > 2 * ARRAY.nbytes > info["stored_bytes"] > ARRAY.nbytes
    assert info["dedup_ratio"] > 1.9
    assert info["bytes_on_disk"] > ARRAY.nbytes
    assert (info["segments"], info["writers"], info["heads"], info["last_cleanup"]) == (
        1,
        1,
        [],
        None,
    )

    human = run_cli(home, "info", "--store", str(sample.path))  # options after the command
    assert human.code == 0
    assert "dedup ratio" in human.stdout
    assert f"{info['dedup_ratio']:.2f}" in human.stdout


def test_ls_filters_and_sorts(home: Path, sample: Sample) -> None:
    store = ("--store", str(sample.path))
    listed = run_cli(home, *store, "--json", "ls").json()["entries"]
    assert [e["id"] for e in listed] == [
        sample.ids[n] for n in ("model", "settings", "train2", "train1")
    ]  # newest first
    by_id = {e["id"]: e for e in listed}
    assert by_id[sample.ids["settings"]]["variables"] == {"config": "json", "note": "json"}
    assert by_id[sample.ids["model"]]["kind"] == "named"
    assert by_id[sample.ids["train1"]]["created_at"] == T0

    by_size = run_cli(home, *store, "ls", "--json", "--sort", "size", "--limit", "2").json()
    assert [e["block_id"] for e in by_size["entries"]] == ["train", "train"]
    train = run_cli(home, *store, "ls", "--json", "--block", "tra", "--reverse").json()
    assert [e["id"] for e in train["entries"]] == [sample.ids["train1"], sample.ids["train2"]]
    named = run_cli(home, *store, "ls", "--json", "--name", "mod*").json()
    assert [e["label"] for e in named["entries"]] == ["model"]

    human = run_cli(home, *store, "ls")
    assert human.code == 0
    for short in (i[:12] for i in sample.ids.values()):
        assert short in human.stdout
    assert "4 entries" in human.stdout


def test_show_describes_an_entry_by_id_prefix_or_name(home: Path, sample: Sample) -> None:
    store = ("--store", str(sample.path))
    shown = run_cli(home, *store, "show", sample.ids["train1"][:6], "--json").json()
    assert shown["id"] == sample.ids["train1"]
    weights = shown["contents"]["variables"]["weights"]
    assert weights["format"] == "pickle"
    assert weights["size"] > ARRAY.nbytes
    assert [part["inline"] for part in weights["objects"]] == [True, False]
    assert shown["environment"]["packages"]["numpy"] == np.__version__
    assert shown["signature"]["status"] == "unsigned"
    assert shown["runs"] == [sample.ids["train1"]]

    named = run_cli(home, *store, "show", "model", "--json").json()  # by its name
    assert (named["id"], named["user_metadata"]) == (sample.ids["model"], {"epoch": 3})
    by_key = run_cli(home, *store, "show", "train/m2/", "--json").json()
    assert by_key["id"] == sample.ids["train2"]

    human = run_cli(home, *store, "show", "model")
    assert human.code == 0
    assert "model (named)" in human.stdout
    assert '"epoch": 3' in human.stdout

    ambiguous = run_cli(home, *store, "show", "train")
    assert ambiguous.code == 2
    assert "matches 2 entries of 2 computations" in ambiguous.stderr
    assert len(ambiguous.stderr.splitlines()) == 1
    unknown = run_cli(home, *store, "show", "nothing-like-it")
    assert (unknown.code, unknown.stdout) == (2, "")
    assert "no entry matches 'nothing-like-it'" in unknown.stderr


def test_show_gives_a_calls_key_scheme_beside_its_key(home: Path, tmp_path: Path) -> None:
    store = writing_store(tmp_path / "store")

    @persistent_cache(store=store)
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8
    store.close()
    where = ("--store", str(tmp_path / "store"))
    (listed,) = run_cli(home, *where, "ls", "--json").json()["entries"]
    human = run_cli(home, *where, "show", listed["id"]).stdout
    lines = human.splitlines()
    scheme = next(i for i, line in enumerate(lines) if line.split()[:2] == ["key", "scheme"])
    assert lines[scheme].split()[2:] == [str(KEY_SCHEME)]
    assert lines[scheme - 1].split()[0] == "module_hash"  # beside the key
    shown = run_cli(home, *where, "show", listed["id"], "--json").json()
    assert shown["user_metadata"]["persistent_cache"]["scheme"] == KEY_SCHEME
    assert set(shown["user_metadata"]["persistent_cache"]["components"]) == {"code", "arg:x"}


def test_export_json_prints_json_values_and_refuses_pickles(home: Path, sample: Sample) -> None:
    store = ("--store", str(sample.path))
    exported = run_cli(home, *store, "export-json", sample.ids["settings"][:8]).json()
    assert exported["variables"] == {"config": {"lr": 0.1, "tags": ["a"]}, "note": "hi"}
    only = run_cli(home, *store, "export-json", "settings", "--variable", "note").json()
    assert only["variables"] == {"note": "hi"}

    refused = run_cli(home, *store, "export-json", "model")
    assert (refused.code, refused.stdout) == (2, "")
    assert "never unpickles" in refused.stderr
    missing = run_cli(home, *store, "export-json", "settings", "--variable", "nope")
    assert missing.code == 2
    assert "no variable 'nope'" in missing.stderr


def test_inspection_never_unpickles(home: Path, sample: Sample, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(REFUSE_PICKLE)
    env = environment(home, PYTHONPATH=str(tmp_path))
    control = subprocess.run(
        [sys.executable, "-c", "import pickle; pickle.loads(pickle.dumps(1))"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "unpickling refused by the test" in control.stderr  # the trap works
    store = ("--store", str(sample.path))
    for command in (
        ("info",),
        ("ls",),
        ("show", "model"),
        ("show", sample.ids["train1"]),
        ("export-json", "settings"),
        ("verify",),
        ("doctor",),
    ):
        for output in ((), ("--json",)):
            result = run_cli(home, *store, *command, *output, env=env)
            assert result.code == 0, (command, result.stderr)
            assert result.stderr == ""


# -- cleanup -------------------------------------------------------------------------


def test_cleanup_dry_run_lists_exactly_what_cleanup_removes(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = writing_store(path)
    for i in range(5):  # 5 computations of one block: the 2 oldest go (3 per block)
        store.put(Entry.of(ExecutionKey("sweep", f"m{i}", T0 + i), {"i": i}))
    for i in range(4):  # 4 runs of one computation: the 2 oldest go (2 per module)
        store.put(Entry.of(ExecutionKey("fit", "same", T0 + i), {"i": i}))
    store.close()
    listed = run_cli(home, "ls", "--json", "--store", str(path)).json()["entries"]
    everything = {entry["id"] for entry in listed}

    # Count limits are opt-in (the default strategy only limits the size).
    limits = ("--max-entries-per-block", "3", "--max-entries-per-module", "2")
    planned = run_cli(home, "cleanup", "--dry-run", "--json", *limits, "--store", str(path))
    assert planned.code == 0
    plan = planned.json()
    assert plan["dry_run"] is True
    assert plan["snapshot"] is None
    assert {d["reason"] for d in plan["dropped"]} == {
        "older than the newest 3 entries of its block",
        "older than the newest 2 entries of its computation",
    }
    assert {(d["block_id"], d["module_hash"]) for d in plan["dropped"]} == {
        ("sweep", "m0"),
        ("sweep", "m1"),
        ("fit", "same"),
    }
    assert len(plan["dropped"]) == 4
    unchanged = run_cli(home, "ls", "--json", "--store", str(path)).json()["entries"]
    assert {entry["id"] for entry in unchanged} == everything
    assert len(everything) == 9

    done = run_cli(home, "cleanup", "--json", *limits, "--store", str(path)).json()
    assert done["dry_run"] is False
    assert done["snapshot"]
    assert done["dropped"] == plan["dropped"]
    assert done["entries_kept"] == plan["entries_kept"] == 5
    left = {e["id"] for e in run_cli(home, "ls", "--json", "--store", str(path)).json()["entries"]}
    assert left == everything - {d["id"] for d in plan["dropped"]}

    info = run_cli(home, "info", "--json", "--store", str(path)).json()
    assert len(info["heads"]) == 1
    assert info["last_cleanup"] == info["heads"][0]["created_at"]


def test_cleanup_takes_strategy_overrides_and_says_why(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = writing_store(path)
    for i in range(3):
        store.put(Entry.of(ExecutionKey("sweep", f"m{i}", T0 + i), {"i": i}))
    store.close()
    where = ("--store", str(path))
    one = run_cli(home, "cleanup", "--dry-run", "--max-entries-per-block", "1", *where)
    assert one.code == 0
    assert "would drop 2 entries" in one.stdout
    assert "older than the newest 1 entries of its block" in one.stdout
    unlimited = run_cli(
        home, "cleanup", "--json", "--max-entries-per-block", "none", "--include-content", *where
    ).json()
    assert unlimited["dropped"] == []
    assert unlimited["entries_kept"] == 3
    bad = run_cli(home, "cleanup", "--max-entries-per-block", "0", *where)
    assert bad.code == 2
    assert bad.stderr.startswith("marimo-store: error: max_entries_per_block must be an int >= 1")
    human = run_cli(home, "cleanup", *where)
    assert human.code == 0
    assert "dropped 0 entries" in human.stdout
    assert "snapshot " in human.stdout


# -- what is wrong ---------------------------------------------------------------------


def test_a_missing_store_is_one_line_and_exit_code_2(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for command in (
        ("info",),
        ("ls", "--json"),
        ("show", "x"),
        ("cleanup",),
        ("verify", "--repair"),
        ("doctor",),
        ("watch",),
    ):
        result = run_cli(home, "--store", str(missing), *command)
        assert result.code == 2, command
        assert result.stdout == ""
        assert result.stderr == (
            f"marimo-store: error: no store at {missing} (nothing was cached there yet; "
            "give another with --store PATH)\n"
        )
    assert not missing.exists()  # looking did not create it
    not_a_store = run_cli(home, "--store", str(tmp_path), "ls")
    assert not_a_store.code == 2
    assert "is not a marimo_store store" in not_a_store.stderr


def test_a_newer_format_is_one_line_and_exit_code_2(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "store"
    put_samples(path)
    (path / "format.json").write_text('{"format": "marimo_store", "version": 99}')
    for command in (
        ("info",),
        ("ls",),
        ("cleanup", "--dry-run"),
        ("export-json", "x"),
        ("verify",),
        ("doctor",),
    ):
        result = run_cli(home, "--store", str(path), *command, "--json")
        assert (result.code, result.stdout) == (2, ""), command
        assert result.stderr == (
            f"marimo-store: error: {path} has format version 99; this marimo_store reads "
            "versions up to 1: upgrade marimo_store to open it\n"
        )


def test_corrupt_files_are_warnings_not_tracebacks(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "store"
    ids = put_samples(path)
    (path / "format.json").write_text("{not json")
    segment = next(log_dir(path).glob("*.log"))
    flip_byte(segment, segment.read_bytes().index(b"model"))  # the named object's record
    flip_byte(object_files(path)[0], 100)  # the shared array
    listed = run_cli(home, "--store", str(path), "ls", "--json")
    assert listed.code == 0
    assert {e["id"] for e in listed.json()["entries"]} == {
        ids["train1"],
        ids["train2"],
        ids["settings"],
    }
    warnings = listed.stderr.splitlines()
    assert any("format.json is damaged" in line for line in warnings)
    assert any("log segment" in line and "is damaged" in line for line in warnings)
    assert all(line.startswith("marimo-store: warning: ") for line in warnings)
    info = run_cli(home, "--store", str(path), "info", "--json")
    assert (info.code, info.json()["format_version"]) == (0, None)
    exported = run_cli(home, "--store", str(path), "export-json", "settings")
    assert exported.json()["variables"]["note"] == "hi"


def test_usage_errors_exit_2(home: Path) -> None:
    for args in ((), ("frobnicate",), ("ls", "--sort", "colour")):
        result = run_cli(home, *args)
        assert result.code == 2, args
        assert "usage: marimo-store" in result.stderr


# -- verify and doctor -----------------------------------------------------------------


def test_verify_finds_damage_and_repair_leaves_a_healthy_store(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "store"
    put_samples(path)
    store = ("--store", str(path))
    assert run_cli(home, *store, "verify").code == 0
    shared_array = max(object_files(path), key=lambda p: p.stat().st_size)
    copy = shared_array.with_name(f"{shared_array.name} (laptop's conflicted copy 2026-11-21)")
    copy.write_bytes(shared_array.read_bytes())  # a Dropbox conflicted copy, intact
    flip_byte(shared_array, 100)  # ... and the original damaged

    found = run_cli(home, *store, "verify", "--json")
    assert found.code == 1
    report = found.json()
    assert report["ok"] is False and report["repaired"] is False
    assert {"damaged object", "conflicted copy"} <= {p["kind"] for p in report["problems"]}
    assert all(problem["action"] == "" for problem in report["problems"])
    human = run_cli(home, *store, "verify")
    assert human.code == 1
    assert "damaged object" in human.stdout and "verify --repair" in human.stdout

    repaired = run_cli(home, *store, "verify", "--repair", "--json")
    assert repaired.code == 1  # problems were found (and repaired)
    assert repaired.json()["snapshot"] is not None
    assert all(problem["action"] for problem in repaired.json()["problems"])
    again = run_cli(home, *store, "verify")
    assert (again.code, again.stderr) == (0, "")
    assert "no problems found" in again.stdout
    loaded = FsPersistentStore(path, cleanup_on_exit=False).get(ExecutionKey("train", "m1"))
    assert loaded is not None  # the intact copy took the damaged original's place
    np.testing.assert_array_equal(loaded.contents["variables"]["weights"], ARRAY)


def test_doctor_warns_about_sync_folders_and_conflicted_copies(home: Path, tmp_path: Path) -> None:
    healthy = tmp_path / "healthy"
    put_samples(healthy)
    calm = run_cli(home, "--store", str(healthy), "doctor", "--json")
    assert calm.code == 0, calm.stdout
    assert all(finding["severity"] == "info" for finding in calm.json()["findings"])

    dropbox = tmp_path / "Dropbox"
    (dropbox / ".dropbox").mkdir(parents=True)  # what the Dropbox client leaves in its folder
    path = dropbox / "project" / "store"
    put_samples(path)
    segment = next(log_dir(path).glob("*.log"))
    segment.with_name(f"{segment.stem} (laptop's conflicted copy 2026-11-21).log").write_bytes(
        segment.read_bytes()
    )
    warned = run_cli(home, "--store", str(path), "doctor", "--json")
    assert warned.code == 1
    codes = {finding["code"]: finding for finding in warned.json()["findings"]}
    assert codes["sync-folder"]["severity"] == "warning"
    assert "Dropbox" in codes["sync-folder"]["message"]
    assert len(codes["conflicted-copies"]["paths"]) == 1
    human = run_cli(home, "--store", str(path), "doctor")
    assert human.code == 1
    assert "warning [sync-folder]" in human.stdout
    assert "conflicted copy" in human.stdout


# -- finding the store, importing, keys, watching ----------------------------------------


def test_the_store_is_found_like_app_does(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    put_samples(project / "__marimo__" / "persist")
    (project / "notebooks").mkdir()
    found = run_cli(home, "ls", "--json", cwd=project)
    assert len(found.json()["entries"]) == 4
    # A parent's __marimo__ is not the store of a notebook below it.
    below = run_cli(home, "info", cwd=project / "notebooks")
    assert below.code == 2
    assert f"no store at {project / 'notebooks' / '__marimo__' / 'persist'}" in below.stderr
    (project / ".marimo.toml").write_text('[fs_persister.defaults]\ndir_path = "elsewhere"\n')
    configured = run_cli(home, "info", cwd=project / "notebooks")
    assert configured.code == 2
    assert f"no store at {project / 'elsewhere'}" in configured.stderr

    module = subprocess.run(
        [sys.executable, "-m", "marimo_store", "ls", "--json"],
        cwd=project / "notebooks",
        env=environment(home),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (module.returncode, module.stdout) == (2, "")
    assert "no store at" in module.stderr


def test_migrate_imports_marimo_cache_beside_it(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    cache = project / "__marimo__" / "cache"
    (cache / "train").mkdir(parents=True)
    (cache / "train" / "C_one.pickle").write_bytes(b"\x80\x05K\x01.")
    (cache / "train" / "C_two.pickle").write_bytes(b"\x80\x05K\x02.")
    (cache / "train" / "C_one.pickle.tmp1a2b3c4d").write_bytes(b"half")
    legacy = run_cli(home, "ls", cwd=project)
    assert legacy.code == 2
    assert "marimo-store migrate" in legacy.stderr

    report = run_cli(home, "migrate", "--json", cwd=project)
    assert report.code == 0
    imported = report.json()
    assert (imported["entries"], imported["files"]) == (2, 2)
    assert imported["store"] == str(project / "__marimo__" / "persist")
    assert [s["reason"] for s in imported["skipped"]] == ["interrupted write"]
    listed = run_cli(home, "ls", "--json", cwd=project).json()["entries"]  # persist/ now
    assert sorted(e["block_id"] for e in listed) == ["train", "train"]
    assert all(e["variables"] for e in listed)

    again = run_cli(home, "migrate", str(cache), "--store", str(tmp_path / "other"))
    assert again.code == 0
    assert "imported 2 entries (2 files" in again.stdout
    nothing = run_cli(home, "migrate", str(tmp_path / "absent"))
    assert nothing.code == 2
    assert "does not exist" in nothing.stderr


def test_keygen_writes_a_private_key_once(home: Path, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    path = tmp_path / "keys" / "me.pem"
    made = run_cli(home, "keygen", str(path), "--json")
    assert made.code == 0
    document = made.json()
    assert document["path"] == str(path)
    assert document["fingerprint"].startswith("ed25519:")
    assert len(document["fingerprint"]) == len("ed25519:") + 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    store = FsPersistentStore(tmp_path / "signed", signing_key=path)
    assert store.signer == document["fingerprint"]

    again = run_cli(home, "keygen", str(path))
    assert again.code == 2
    assert "exists already" in again.stderr
    human = run_cli(home, "keygen", str(tmp_path / "second.pem"))
    assert human.code == 0
    assert "fingerprint: ed25519:" in human.stdout


WRITER = """\
import sys, time
from marimo_store import Entry, ExecutionKey, FsPersistentStore, persistent_cache
from marimo_store._key_components import KEY_SCHEME
store = FsPersistentStore(sys.argv[1], cleanup_on_exit=False)
for name in sys.argv[2:]:
    time.sleep(0.3)
    store.put(Entry.of(ExecutionKey(name, "m"), {"value": name}, format="json"))
    store.close()
"""


@pytest.fixture
def watcher(home: Path) -> Iterator[Any]:
    """Start `watch` on a store; whatever is still running is killed afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [str(SCRIPT), "watch", "--store", str(path), "--interval", "0.1", *args],
            env=environment(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_watch_shows_entries_other_processes_add(home: Path, tmp_path: Path, watcher: Any) -> None:
    path = tmp_path / "store"
    put_samples(path)
    machine = watcher(path, "--json", "--count", "2", "--timeout", "30")
    time.sleep(1.0)  # the watcher has read what was there
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, str(path), "first", "second"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert writer.returncode == 0, writer.stderr
    out, err = machine.communicate(timeout=30)
    assert machine.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["block_id"], line["variables"]) for line in lines] == [
        ("first", {"value": "json"}),
        ("second", {"value": "json"}),
    ]


def test_watch_stops_at_its_timeout_and_can_list_what_is_there(
    home: Path, sample: Sample, watcher: Any
) -> None:
    started = time.monotonic()
    human = watcher(sample.path, "--existing", "--timeout", "0.5")
    out, err = human.communicate(timeout=30)
    assert human.returncode == 0, err
    assert time.monotonic() - started < 10
    assert "watching" in out
    assert all(i[:12] in out for i in sample.ids.values())


def run_in_terminal(home: Path, *args: str) -> tuple[int, str]:
    """Run the console script with stdout and stderr on a pseudo-terminal."""
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [str(SCRIPT), *args],
        cwd=home,
        env=environment(home, TERM="xterm-256color"),
        stdout=secondary,
        stderr=secondary,
    ) as process:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=30)
    os.close(primary)
    return process.returncode, b"".join(chunks).decode()


def test_a_terminal_gets_colour_and_progress(home: Path, sample: Sample, tmp_path: Path) -> None:
    code, output = run_in_terminal(home, "--store", str(sample.path), "ls")
    assert code == 0
    assert "\x1b[" in output
    assert sample.ids["model"][:12] in output

    cache = tmp_path / "cache"
    (cache / "b").mkdir(parents=True)
    (cache / "b" / "C_x.pickle").write_bytes(b"\x80\x05K\x01.")
    where = ("migrate", str(cache), "--store")
    code, output = run_in_terminal(home, *where, str(tmp_path / "on-a-terminal"))
    assert code == 0
    assert "importing" in output  # the progress bar
    piped = run_cli(home, *where, str(tmp_path / "in-a-pipe"))
    assert piped.code == 0
    assert "importing" not in piped.stdout + piped.stderr


FREE_MAPS = {"variables", "contents", "packages", "user_metadata", "skipped"}
"""Documented objects whose keys are data (variable names, packages), not fields."""


def documented_json() -> dict[str, Any]:
    """The example JSON document of each command in docs/cli.md."""
    reference = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    examples = {}
    for section in reference.split("\n### `")[1:]:
        command = section.split("`", 1)[0]
        examples[command] = json.loads(section.split("```json\n", 1)[1].split("\n```", 1)[0])
    return examples


def assert_same_fields(documented: Any, actual: Any, where: str) -> None:
    """Every field the docs show is in the output and the other way round,
    for nested records and for the records of lists (when both have one)."""
    assert isinstance(actual, dict), where
    assert sorted(documented) == sorted(actual), where
    for name, value in documented.items():
        if isinstance(value, dict) and name not in FREE_MAPS:
            assert_same_fields(value, actual[name], f"{where}.{name}")
        if isinstance(value, list) and value and isinstance(value[0], dict) and actual[name]:
            assert_same_fields(value[0], actual[name][0], f"{where}.{name}[0]")


def test_docs_show_every_command_and_its_json_fields(
    home: Path, sample: Sample, tmp_path: Path
) -> None:
    examples = documented_json()
    usage = run_cli(home, "--help").stdout
    commands = re.findall(r"^    ([a-z-]+)", usage, flags=re.MULTILINE)
    assert sorted(examples) == sorted(commands)
    store = ("--store", str(sample.path))
    cache = tmp_path / "cache"
    (cache / "b").mkdir(parents=True)
    (cache / "b" / "C_x.pickle.tmp1a2b3c4d").write_bytes(b"half")
    (cache / "b" / "C_x.pickle").write_bytes(b"\x80\x05K\x01.")
    runs = {
        "info": ("info",),
        "ls": ("ls",),
        "show": ("show", "train/m1"),
        "export-json": ("export-json", "settings"),
        "cleanup": ("cleanup", "--dry-run", "--max-entries-per-block", "1"),
        "clear": ("clear", "--dry-run"),
        "migrate": ("migrate", str(cache), "--store", str(tmp_path / "imported")),
        "keygen": ("keygen", str(tmp_path / "key.pem")),
        "watch": ("watch", "--existing", "--timeout", "0"),
        "verify": ("verify",),
        "doctor": ("doctor",),
        "push": ("push", "--remote", (tmp_path / "bucket").as_uri()),
        "pull": ("pull", "--remote", (tmp_path / "bucket").as_uri()),
    }
    if "keygen" in runs and importlib.util.find_spec("cryptography") is None:
        del examples["keygen"]
    for command, example in examples.items():
        result = run_cli(home, *store, "--json", *runs[command])
        assert result.code == 0, (command, result.stderr)
        actual = json.loads(result.stdout.splitlines()[0] if command == "watch" else result.stdout)
        assert_same_fields(example, actual, command)
