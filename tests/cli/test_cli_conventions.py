"""Command-line conventions: numbers are checked, `cleanup --help` shows what
the configuration sets, `export-json` shows the JSON marimo stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _scripts import run_command as run

from marimo_store import Entry, ExecutionKey, FsPersistentStore, LegacyPersistentStore
from marimo_store.marimo import MarimoStore


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("watch", "--interval", "0"), "--interval: must be more than 0 seconds"),
        (("watch", "--interval", "nan"), "--interval: not a finite number"),
        (("watch", "--timeout", "-1"), "--timeout: must be 0 seconds or more"),
        (("watch", "--count", "0"), "--count: must be 1 or more"),
        (("ls", "--limit", "-1"), "--limit: must be 1 or more"),
        (("ls", "--limit", "x"), "--limit: not a whole number"),
    ],
)
def test_numeric_options_out_of_range_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = run(tmp_path, *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_cleanup_help_shows_the_configured_defaults(tmp_path: Path) -> None:
    builtin = run(tmp_path, "cleanup", "--help").stdout
    assert "--max-total-content-size SIZE" in builtin
    assert "default: 1GB" in builtin and "set in" not in builtin

    (tmp_path / ".marimo.toml").write_text(
        "[fs_persister.default_cleanup_strategy]\n"
        'max_entries_per_block = 5\nmax_total_content_size = "10GB"\n'
    )
    configured = " ".join(run(tmp_path, "cleanup", "--help").stdout.split())
    where = f"(set in {tmp_path / '.marimo.toml'})"
    assert f"--max-entries-per-block N default: 5 {where}" in configured
    assert f"--max-total-content-size SIZE default: 10GB {where}" in configured
    assert "--max-calls-per-function N default: none" in configured


def test_export_json_shows_the_json_marimo_stored(tmp_path: Path) -> None:
    path = tmp_path / "store"
    marimo = MarimoStore(path, cleanup_on_exit=False)
    assert marimo.put("train/O_0123abcd.json", b'{"loss": [0.5, 0.25], "label": "run"}')
    assert marimo.put("train/L_4567cdef.jsonl", b'{"blob": "a"}\n{"blob": "b"}\n')
    assert marimo.put("train/P_89abcdef.pickle", b"\x80\x05K\x01.")  # never unpickled
    assert marimo.put("train/O_00000000.json", b"\x80\x05K\x01.")  # bytes that are no JSON

    done = run(tmp_path, "export-json", "train/O_0123abcd.json", "--store", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["variables"] == {
        "train/O_0123abcd.json": {"loss": [0.5, 0.25], "label": "run"}
    }
    lines = run(tmp_path, "--json", "export-json", "train/4567cdef", "--store", str(path))
    assert json.loads(lines.stdout)["variables"] == {
        "train/L_4567cdef.jsonl": [{"blob": "a"}, {"blob": "b"}]
    }
    pickle = run(tmp_path, "export-json", "train/P_89abcdef.pickle", "--store", str(path))
    assert pickle.returncode == 2 and "never unpickles" in pickle.stderr
    broken = run(tmp_path, "export-json", "train/O_00000000.json", "--store", str(path))
    assert broken.returncode == 0
    assert json.loads(broken.stdout)["variables"] == {}
    assert "not valid JSON" in broken.stderr


def test_export_json_still_exports_json_format_variables(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = FsPersistentStore(path, cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("settings", "s1"), {"config": {"lr": 0.1}}, format="json"))
    store.close()
    done = run(tmp_path, "export-json", "settings", "--store", str(path))
    assert json.loads(done.stdout)["variables"] == {"config": {"lr": 0.1}}


def test_reading_commands_accept_marimos_own_cache_folder(tmp_path: Path) -> None:
    """`ls`, `show` and `export-json` read any store through the `Store`
    protocol, marimo's `__marimo__/cache` included; the others say why not."""
    cache = tmp_path / "project" / "__marimo__" / "cache"
    legacy = LegacyPersistentStore(cache)
    legacy.put(Entry.of(ExecutionKey("train", "m1"), {"loss": 0.5}))
    legacy.put(Entry.of(ExecutionKey("settings", "s1"), {"config": {"lr": 0.1}}, format="json"))
    for where in (("--store", str(cache)), ()):
        cwd = tmp_path / "project"
        listed = run(cwd, "--json", "ls", *where)
        assert listed.returncode == 0, listed.stderr
        labels = sorted(entry["label"] for entry in json.loads(listed.stdout)["entries"])
        assert labels == ["settings", "train"]
        shown = json.loads(run(cwd, "--json", "show", "train", *where).stdout)
        assert shown["signature"]["status"] == "unsigned"
        exported = json.loads(run(cwd, "export-json", "settings", *where).stdout)
        assert exported["variables"] == {"config": {"lr": 0.1}}
        info = run(cwd, "info", *where)
        assert info.returncode == 2 and "marimo-store migrate" in info.stderr
