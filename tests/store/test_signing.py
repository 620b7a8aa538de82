"""Signing keys, fingerprints, and the rules for trust settings in configuration."""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import StoreFactory

from marimo_store import (
    ConfigError,
    Entry,
    ExecutionKey,
    FsPersistentStore,
    InvalidArgumentError,
    generate_signing_key,
)
from marimo_store._signing import KEY_ENV, KEY_FILE_ENV
from marimo_store.config import read_settings


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


def expected_fingerprint(raw_public_key: bytes) -> str:
    """The documented definition (docs/security.md), computed independently."""
    return "ed25519:" + hashlib.sha256(raw_public_key).hexdigest()[:32]


def test_generate_signing_key_writes_a_private_pem_key_once(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "key.pem"
    fingerprint = generate_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS8, unencrypted
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    public = load_pem_private_key(text.encode(), None).public_key().public_bytes_raw()
    assert fingerprint == expected_fingerprint(public)
    assert FsPersistentStore(tmp_path / "s", signing_key=path).signer == fingerprint
    with pytest.raises(InvalidArgumentError, match="never overwrites"):
        generate_signing_key(path)
    assert path.read_text() == text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_key_made_by_openssl_signs_and_has_the_documented_fingerprint(
    tmp_path: Path, make_store: StoreFactory
) -> None:
    key = tmp_path / "openssl.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True, timeout=30
    )
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    store = make_store(signing_key=key, verify_signatures="strict")
    assert store.signer == expected_fingerprint(der[-32:])  # SubjectPublicKeyInfo ends with it
    store.put(Entry.of(ExecutionKey("b", "m"), {"v": [1, 2]}))
    entry = store.get(ExecutionKey("b", "m"))
    assert entry is not None and entry.variables["v"] == [1, 2]


def test_the_key_comes_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first.pem", tmp_path / "second.pem"
    first_fp, second_fp = generate_signing_key(first), generate_signing_key(second)
    assert FsPersistentStore(tmp_path / "s").signer is None
    monkeypatch.setenv(KEY_FILE_ENV, str(second))
    assert FsPersistentStore(tmp_path / "s").signer == second_fp
    monkeypatch.setenv(KEY_ENV, first.read_text())
    assert FsPersistentStore(tmp_path / "s").signer == first_fp  # the PEM text first
    assert FsPersistentStore(tmp_path / "s", signing_key=second).signer == second_fp
    monkeypatch.setenv(KEY_ENV, "not a key")
    with pytest.raises(ConfigError, match=f"\\${KEY_ENV}"):
        FsPersistentStore(tmp_path / "s")


def test_keys_that_cannot_sign_are_refused_with_the_reason(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    def write(name: str, key: object, password: bytes | None = None) -> Path:
        encryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        path = tmp_path / name
        path.write_bytes(pem)
        return path

    cases = {
        tmp_path / "missing.pem": "cannot read the key file",
        write("ec.pem", ec.generate_private_key(ec.SECP256R1())): "Ed25519",
        write("locked.pem", ed25519.Ed25519PrivateKey.generate(), b"secret"): "encrypted",
    }
    (tmp_path / "text.pem").write_text("hello")
    cases[tmp_path / "text.pem"] = "not a PEM private key"
    for path, reason in cases.items():
        with pytest.raises(ConfigError, match=reason):
            FsPersistentStore(tmp_path / "s", signing_key=path)


def test_trust_options_are_checked(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    fingerprint = generate_signing_key(key)
    bad = {
        "verify_signatures": ("yes", "verify_signatures must be one of"),
        "trusted_signers": (fingerprint, "must be a list of fingerprints"),
    }
    for option, (value, message) in bad.items():
        with pytest.raises(ConfigError, match=message):
            FsPersistentStore(tmp_path / "s", **{option: value})
    for signer in ("SHA256:abc", fingerprint.upper(), fingerprint[:-1]):
        with pytest.raises(ConfigError, match="is not a fingerprint"):
            FsPersistentStore(tmp_path / "s", trusted_signers=[signer])
    with pytest.raises(ConfigError, match="trusts no one"):
        FsPersistentStore(tmp_path / "s", verify_signatures="on")
    store = FsPersistentStore(tmp_path / "s", trusted_signers=[fingerprint, fingerprint])
    assert store.trusted_signers == (fingerprint,)
    assert store == FsPersistentStore(tmp_path / "s", trusted_signers=(fingerprint,))


def test_without_cryptography_trust_settings_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "k.pem"
    fingerprint = generate_signing_key(key)
    monkeypatch.setitem(sys.modules, "cryptography", None)  # as if not installed
    for options in (
        {"signing_key": key},
        {"verify_signatures": "on", "trusted_signers": [fingerprint]},
    ):
        with pytest.raises(ConfigError, match=r"marimo_store\[sign\]"):
            FsPersistentStore(tmp_path / "s", **options)
    with FsPersistentStore(tmp_path / "s") as plain:  # everything else works without it
        plain.put(Entry.of(ExecutionKey("b", "m"), {"v": 1}))
        assert plain.get(ExecutionKey("b", "m")) is not None


def test_importing_the_package_imports_neither_cryptography_nor_hashlib() -> None:
    code = "import sys, marimo_store; print(sorted({'cryptography', 'hashlib'} & set(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert output.strip() == "[]"


# -- configuration files ------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("file_name", "table"),
    [(".marimo.toml", "fs_persister"), ("pyproject.toml", "tool.marimo.fs_persister")],
)
@pytest.mark.parametrize("option", ["trusted_signers", "signing_key"])
def test_a_project_file_may_not_choose_whom_to_trust(
    tmp_path: Path, home: Path, file_name: str, table: str, option: str
) -> None:
    value = (
        '["ed25519:0123456789abcdef0123456789abcdef"]' if option == "trusted_signers" else '"k.pem"'
    )
    project = write(tmp_path / "project" / file_name, f"[{table}.defaults]\n{option} = {value}\n")
    with pytest.raises(ConfigError) as raised:
        read_settings(str(project.parent / "notebooks"))
    message = str(raised.value)
    assert str(project) in message and option in message
    assert "user configuration" in message and "travels with the code" in message


def test_the_user_file_may_choose_whom_to_trust(tmp_path: Path, home: Path) -> None:
    key = home / "keys" / "me.pem"
    fingerprint = generate_signing_key(key)
    other = "ed25519:0123456789abcdef0123456789abcdef"
    write(
        home / ".marimo.toml",
        "[fs_persister.defaults]\nsigning_key = 'keys/me.pem'\n"
        f"trusted_signers = ['{other}']\nverify_signatures = 'on'\n",
    )
    settings = read_settings(str(tmp_path))
    assert settings.store_options["signing_key"] == str(key)  # relative to the user file
    store = settings.open_store(str(tmp_path / "s"))
    assert (store.signer, store.trusted_signers) == (fingerprint, (other,))
    assert store.verify_signatures == "on"


def test_a_project_file_can_ask_for_verification_but_never_weaken_it(
    tmp_path: Path, home: Path
) -> None:
    signer = "ed25519:0123456789abcdef0123456789abcdef"
    user = write(
        home / ".marimo.toml", f"[fs_persister.defaults]\ntrusted_signers = ['{signer}']\n"
    )
    project = tmp_path / "project"
    write(project / ".marimo.toml", "[fs_persister.defaults]\nverify_signatures = 'strict'\n")
    assert read_settings(str(project)).store_options["verify_signatures"] == "strict"
    user.write_text(user.read_text() + "verify_signatures = 'on'\n")
    write(project / ".marimo.toml", "[fs_persister.defaults]\nverify_signatures = 'off'\n")
    assert read_settings(str(project)).store_options["verify_signatures"] == "on"
    # Code decides for itself: explicit arguments win as always.
    explicit = read_settings(str(project), {"verify_signatures": "off"})
    assert explicit.store_options["verify_signatures"] == "off"


def test_a_store_that_verifies_never_falls_back_to_the_unsigned_legacy_layout(
    tmp_path: Path, home: Path
) -> None:
    from marimo_store import LegacyPersistentStore
    from marimo_store.app import resolve_store

    (tmp_path / "__marimo__" / "cache").mkdir(parents=True)  # marimo's cache only
    assert isinstance(resolve_store(str(tmp_path)), LegacyPersistentStore)
    signer = "ed25519:0123456789abcdef0123456789abcdef"
    write(
        home / ".marimo.toml",
        f"[fs_persister.defaults]\nverify_signatures = 'on'\ntrusted_signers = ['{signer}']\n",
    )
    store = resolve_store(str(tmp_path))
    assert isinstance(store, FsPersistentStore) and store.verify_signatures == "on"
    assert store.path == str(tmp_path / "__marimo__" / "persist")
