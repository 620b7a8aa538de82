"""Signing keys, their fingerprints, and the cryptographic digest of objects.

The choices, and why:

- **Ed25519** through the `cryptography` package (the optional extra
  `marimo_store[sign]`): small keys and signatures, fast verification, and
  the algorithm marimo's own cache signing uses. It is imported only when a
  key is loaded or a signature is checked, so `import marimo_store` never
  pays for it (about 25 ms).
- **Key files** are unencrypted PEM PKCS8 private keys, exactly what
  `openssl genpkey -algorithm ed25519` writes, so keys can be made and
  inspected with standard tools; `generate_signing_key` writes one.
- **Fingerprint**: `"ed25519:"` followed by the first 32 hex digits (128
  bits) of the SHA-256 of the raw 32-byte public key. Short enough to paste
  into a configuration file, long enough that nobody can make a key with a
  given fingerprint.
- **Object digest**: SHA-256 of an object's bytes, recorded in a signing
  writer's entry records. Object ids are xxh3-128, which detects damage but
  is not collision resistant against someone who chooses bytes; a signature
  covers an object's bytes only through a cryptographic digest. SHA-256 ran
  at 1.65 GiB/s on the reference machine (SHA-NI), twice BLAKE2b-256's 0.87
  GiB/s (`benchmarks/signing.py` measures both).
"""

from __future__ import annotations

import functools
import os

from marimo_store import _fs
from marimo_store._errors import ConfigError, InvalidArgumentError, StoreIOError
from marimo_store._hashing import HEX_DIGITS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from marimo_store._hashing import Buffer

FINGERPRINT_PREFIX = "ed25519:"
_FINGERPRINT_HEX = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
DIGEST_BYTES = 32
"""Length of an object digest (SHA-256)."""

KEY_ENV = "MARIMO_STORE_SIGNING_KEY"
"""The PEM text of the signing key, used when a store is given no `signing_key`."""
KEY_FILE_ENV = "MARIMO_STORE_SIGNING_KEY_FILE"
"""The path of the signing key file, used when neither `signing_key` nor `KEY_ENV` is set."""

INSTALL_HINT = "pip install 'marimo_store[sign]'"
_MAX_KEY_FILE_BYTES = 64 * 1024
"""A PEM Ed25519 key is about 120 bytes; refusing large files bounds what a
mistaken path (a device, a data file) can make us read."""


def object_digest(data: Buffer) -> bytes:
    """SHA-256 of an object's bytes, without copying them."""
    import hashlib  # noqa: PLC0415 - only signing and trust modes need it

    return hashlib.sha256(data).digest()


def fingerprint(public_key: bytes) -> str:
    """The fingerprint of a raw Ed25519 public key (see the module docstring)."""
    import hashlib  # noqa: PLC0415

    return FINGERPRINT_PREFIX + hashlib.sha256(public_key).hexdigest()[:_FINGERPRINT_HEX]


def fingerprint_problem(value: object) -> str | None:
    """Why `value` is not a fingerprint, if it is not."""
    if not isinstance(value, str) or not value.startswith(FINGERPRINT_PREFIX):
        return f"{value!r} is not a fingerprint ('{FINGERPRINT_PREFIX}' and 32 hex digits)"
    digits = value[len(FINGERPRINT_PREFIX) :]
    if len(digits) != _FINGERPRINT_HEX or not set(digits) <= HEX_DIGITS:
        return f"{value!r} is not a fingerprint ('{FINGERPRINT_PREFIX}' and 32 lowercase hex)"
    return None


def require_cryptography(what: str) -> None:
    """Raise `ConfigError` saying what to install when `cryptography` is missing."""
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("cryptography") is None:
        raise ConfigError(f"{what} needs the cryptography package: {INSTALL_HINT}")


class SigningKey:
    """A loaded Ed25519 private key; `fingerprint` names its public half."""

    __slots__ = ("_private", "fingerprint", "public_key")

    def __init__(self, private: Any) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes_raw()
        self.fingerprint = fingerprint(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        signature: bytes = self._private.sign(message)
        return signature

    def __repr__(self) -> str:  # never the key material
        return f"SigningKey({self.fingerprint})"


def load_signing_key(path: str | os.PathLike[str] | None) -> SigningKey | None:
    """The key at `path`; without one, the key in `$MARIMO_STORE_SIGNING_KEY`
    (PEM text) or else in the file `$MARIMO_STORE_SIGNING_KEY_FILE`; None
    when none is set. A key that cannot be loaded is a `ConfigError` naming
    where it came from."""
    if path is not None:
        where = os.path.expanduser(os.fspath(path))
        source = f"signing_key {where!r}"
        return _key_from_pem(_read_key_file(where, source), source)
    text = os.environ.get(KEY_ENV)
    if text:
        return _key_from_pem(text.encode("utf-8", "replace"), f"${KEY_ENV}")
    file = os.environ.get(KEY_FILE_ENV)
    if file:
        where = os.path.expanduser(file)
        source = f"${KEY_FILE_ENV} ({where!r})"
        return _key_from_pem(_read_key_file(where, source), source)
    return None


def _read_key_file(path: str, source: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the key file: {error}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise ConfigError(f"{source}: not a key file (larger than {_MAX_KEY_FILE_BYTES} bytes)")
    return data


def _key_from_pem(pem: bytes, source: str) -> SigningKey:
    require_cryptography(f"{source} (entry signing)")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_pem_private_key,
    )

    try:
        private = load_pem_private_key(pem, password=None)
    except TypeError:  # a password-protected key
        raise ConfigError(
            f"{source}: the key is encrypted; marimo_store needs an unencrypted PEM key "
            "(keep the file private instead: permissions 0600)"
        ) from None
    except Exception as error:  # ValueError, UnsupportedAlgorithm: not a usable PEM key
        raise ConfigError(
            f"{source}: not a PEM private key ({type(error).__name__}: {error}); make one "
            "with generate_signing_key() or `openssl genpkey -algorithm ed25519`"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(
            f"{source}: a {type(private).__name__.removeprefix('_')} key; entries are signed "
            "with Ed25519 keys (generate_signing_key() or `openssl genpkey -algorithm ed25519`)"
        )
    return SigningKey(private)


@functools.lru_cache(maxsize=256)
def _public_key(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )

    return Ed25519PublicKey.from_public_bytes(raw)


def signature_matches(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is the Ed25519 signature of `message` by `public_key`."""
    require_cryptography("checking entry signatures")
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

    try:
        _public_key(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):  # ValueError: not a valid public key
        return False
    return True


def generate_signing_key(path: str | os.PathLike[str]) -> str:
    """Write a new Ed25519 signing key to `path`; return its fingerprint.

    The file is an unencrypted PEM PKCS8 private key (what `openssl genpkey
    -algorithm ed25519` writes), created with permissions 0600; missing
    parent directories are created. An existing file is never overwritten
    (`InvalidArgumentError`): replacing a key changes who signs, which the
    other members of a team must learn of. Give the fingerprint to them for
    their `trusted_signers` (docs/security.md). The command
    `marimo-store keygen` calls this.
    """
    require_cryptography("generate_signing_key()")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    target = os.path.abspath(os.path.expanduser(os.fspath(path)))
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        _fs.makedirs(os.path.dirname(target))
        file = _fs.create_new(target, mode=0o600)
    except FileExistsError:
        raise InvalidArgumentError(
            f"{target} exists already; generate_signing_key() never overwrites a key "
            "(delete the file first if you mean to replace it)"
        ) from None
    except OSError as error:
        raise StoreIOError(f"cannot create the key file {target}: {error}") from error
    try:
        with file:
            _fs.write_all(file, pem)
            _fs.fsync(file)
    except OSError as error:
        _fs.unlink(target)
        raise StoreIOError(f"cannot write the key file {target}: {error}") from error
    return SigningKey(private).fingerprint
