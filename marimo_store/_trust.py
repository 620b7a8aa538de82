"""Which entries a store may unpickle: signatures checked against trusted keys.

Loading a pickle runs code chosen by whoever wrote it, so a store folder
that others can write (Dropbox, a network drive, a git repository) is a
code-execution channel. A store with a signing key signs every entry it
puts; with `verify_signatures="on"` or `"strict"` it unpickles only values
of entries signed by its own key or by a key in `trusted_signers`, after
checking every object's SHA-256 against the signed record. docs/security.md
has the threat model; this module has the decisions:

- The signed message is the entry's canonical encoding (docs/format.md
  §6.4.6): key, contents (format, size, id and SHA-256 of every object;
  inline bytes themselves), environment, user metadata and the signer's
  public key; not `last_access`, which readers update. It is rebuilt from
  the decoded entry, so a snapshot, which re-encodes entries, keeps every
  signature valid.
- A check is made once per entry per process: the result is remembered by
  the identity of the decoded entry (immutable), and by the signed bytes
  (so that re-reading the same record after a cleanup costs an encoding,
  not an Ed25519 verification).
- JSON and bytes values never run code when the store loads them, so they
  load whoever signed them; a caller that will unpickle bytes itself (the
  marimo plug-in) asks for a trusted entry explicitly (`requires_trust`).

Implements R6 (docs/format.md §14).
"""

from __future__ import annotations

import threading
import warnings

from marimo_store._entry import EntrySignature
from marimo_store._errors import ConfigError, StoreWarning, UntrustedEntryError
from marimo_store._format.framing import pack
from marimo_store._format.records import StoredEntry, encode_entry
from marimo_store._signing import (
    KEY_ENV,
    KEY_FILE_ENV,
    SigningKey,
    fingerprint_problem,
    require_cryptography,
    signature_matches,
)
from marimo_store._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Literal, TypeAlias

    from marimo_store._entry import ObjectRef

    VerifyMode: TypeAlias = Literal["off", "on", "strict"]
    Status: TypeAlias = Literal["trusted", "untrusted", "unsigned", "invalid"]

MODES: tuple[str, ...] = ("off", "on", "strict")
"""From the weakest to the strictest."""

USER_LEVEL_OPTIONS = ("signing_key", "trusted_signers")
"""Options a project's configuration file may not set: whoever can commit
to the project could name their own key."""

EXECUTABLE_FORMATS = frozenset(("pickle", "cloudpickle"))
"""Stored formats whose loading runs code."""

SIGNATURE_CONTEXT = b"marimo_store entry signature v1\x00"
"""Prefixed to the signed encoding, so that these signatures can never be
taken for signatures of anything else made with the same key."""

_MEMO_LIMIT = 65_536
"""Remembered checks per store before the memory is cleared (bounds memory
in long sessions; a cleared check costs one verification again)."""

_warned: set[tuple[str, str, str | None]] = set()
_warned_lock = threading.Lock()


class SignatureStatus(Value):
    """What a store makes of an entry's signature.

    `status`: `"trusted"` (a valid signature by the store's own key or one
    of its `trusted_signers`), `"untrusted"` (valid, by another key),
    `"unsigned"`, or `"invalid"` (the signature does not match the entry:
    it was changed without the key, or damaged). `signer`: the fingerprint
    the entry names (None when unsigned). `reason`: a sentence for people.
    """

    __slots__ = ("status", "signer", "reason")
    status: Status
    signer: str | None
    reason: str

    def __init__(self, status: Status, signer: str | None, reason: str) -> None:
        self._assign(status=status, signer=signer, reason=reason)

    @property
    def trusted(self) -> bool:
        """Whether the store unpickles this entry's values."""
        return self.status == "trusted"


def strictest(modes: Iterable[str]) -> str:
    """The strictest of several `verify_signatures` values ("off" if none)."""
    return max(modes, key=MODES.index, default="off")


def check_trust_options(config: Mapping[str, Any]) -> None:
    """Raise `ConfigError` for a bad `verify_signatures`, `trusted_signers`
    or `signing_key` (no key is loaded here)."""
    mode = config["verify_signatures"]
    if mode not in MODES:
        raise ConfigError(
            f"verify_signatures must be one of {', '.join(map(repr, MODES))}, got {mode!r}"
        )
    signers = config["trusted_signers"]
    if isinstance(signers, str) or not isinstance(signers, list | tuple | frozenset | set):
        raise ConfigError(
            f"trusted_signers must be a list of fingerprints, got {type(signers).__name__}"
        )
    for signer in signers:
        problem = fingerprint_problem(signer)
        if problem is not None:
            raise ConfigError(f"trusted_signers: {problem}")
    key = config["signing_key"]
    if key is not None and not isinstance(key, str | bytes) and not hasattr(key, "__fspath__"):
        raise ConfigError(f"signing_key must be a path or None, got {type(key).__name__}")


def signed_payload(stored: StoredEntry, public_key: bytes) -> bytes:
    """The bytes an entry's signature is made over (docs/format.md §6.4.6)."""
    record = encode_entry(stored, None)
    record.pop("sig", None)
    record["sn"] = public_key  # last, whether or not the entry was signed already
    return SIGNATURE_CONTEXT + pack(record)


def needs_trust(refs: Iterable[ObjectRef]) -> bool:
    """Whether loading these values runs code (unpickles)."""
    return any(ref.format in EXECUTABLE_FORMATS for ref in refs)


class TrustPolicy:
    """One store's signing key, verification mode and trusted keys."""

    def __init__(
        self,
        path: str,
        mode: VerifyMode,
        key: SigningKey | None,
        trusted_signers: tuple[str, ...],
    ) -> None:
        if mode != "off":
            require_cryptography(f"verify_signatures={mode!r}")
            if key is None and not trusted_signers:
                raise ConfigError(
                    f"verify_signatures={mode!r} without a signing key or trusted_signers "
                    "trusts no one: every pickled value would be a miss. Give the store a "
                    f"signing_key (or set ${KEY_ENV} / ${KEY_FILE_ENV}) and list your team's "
                    "fingerprints in trusted_signers in your user configuration "
                    "(docs/security.md)"
                )
        self.path = path
        self.mode = mode
        self.key = key
        self.trusted = frozenset(trusted_signers) | ({key.fingerprint} if key else set())
        self._statuses: dict[int, tuple[StoredEntry, SignatureStatus]] = {}
        self._verified: dict[bytes, bool] = {}

    @property
    def checks(self) -> bool:
        """Whether reads are checked (mode "on" or "strict")."""
        return self.mode != "off"

    def sign(self, stored: StoredEntry) -> StoredEntry:
        """`stored` with this store's signature (unchanged without a key)."""
        key = self.key
        if key is None:
            return stored
        value = key.sign(signed_payload(stored, key.public_key))
        signed = StoredEntry(
            stored.metadata.replace(signature=EntrySignature(key.public_key, value)),
            stored.inline,
        )
        self._remember(signed, SignatureStatus("trusted", key.fingerprint, "signed here"))
        return signed

    def status(self, stored: StoredEntry) -> SignatureStatus:
        """The signature check of `stored`, made once per decoded entry."""
        known = self._statuses.get(id(stored))
        if known is not None and known[0] is stored:
            return known[1]
        status = self._check(stored)
        self._remember(stored, status)
        return status

    def admits(self, stored: StoredEntry, *, executable: bool) -> bool:
        """Whether values of `stored` may be loaded; `executable`: loading
        them runs code. In "on" mode a refusal warns once per signer; in
        "strict" mode it raises `UntrustedEntryError`."""
        if not executable or self.mode == "off":
            return True
        status = self.status(stored)
        if status.trusted:
            return True
        entry = stored.metadata.key
        if self.mode == "strict":
            raise UntrustedEntryError(
                f"{self.path}: entry {entry} {status.reason}; verify_signatures='strict' "
                f"refuses to unpickle it. {_remedy(status)}"
            )
        warned = (self.path, status.status, status.signer)
        with _warned_lock:
            first = warned not in _warned
            _warned.add(warned)
        if first:
            warnings.warn(
                f"marimo_store: {self.path}: entry {entry} {status.reason}; its pickled values "
                f"are not loaded (a miss). {_remedy(status)} (Said once per signer.)",
                StoreWarning,
                stacklevel=4,
            )
        return False

    def would_admit(self, stored: StoredEntry, *, executable: bool) -> bool:
        """`admits` without a warning or an error: for inspection."""
        return not executable or self.mode == "off" or self.status(stored).trusted

    def _check(self, stored: StoredEntry) -> SignatureStatus:
        signature = stored.metadata.signature
        if signature is None:
            return SignatureStatus("unsigned", None, "is not signed")
        signer = signature.signer
        for ref in stored.metadata.objects().values():
            if not ref.inline and ref.size and ref.digest is None:
                return SignatureStatus(
                    "invalid", signer, f"has no digest of object {ref.id} in its signed record"
                )
        message = signed_payload(stored, signature.public_key)
        remembered = message + signature.value
        valid = self._verified.get(remembered)
        if valid is None:
            valid = signature_matches(signature.public_key, signature.value, message)
            if len(self._verified) >= _MEMO_LIMIT:
                self._verified.clear()
            self._verified[remembered] = valid
        if not valid:
            return SignatureStatus(
                "invalid",
                signer,
                f"claims to be signed by {signer}, but the signature does not match the entry "
                "(changed without the key, or damaged)",
            )
        if signer in self.trusted:
            return SignatureStatus("trusted", signer, f"is signed by {signer}")
        return SignatureStatus(
            "untrusted", signer, f"is signed by {signer}, which is not in trusted_signers"
        )

    def _remember(self, stored: StoredEntry, status: SignatureStatus) -> None:
        if len(self._statuses) >= _MEMO_LIMIT:
            self._statuses.clear()
        self._statuses[id(stored)] = (stored, status)


def _remedy(status: SignatureStatus) -> str:
    if status.status == "untrusted":
        return (
            f"If you trust that key, add {status.signer!r} to trusted_signers in your user "
            "configuration (docs/security.md)."
        )
    if status.status == "unsigned":
        return "Only stores with a signing key sign what they put (docs/security.md)."
    return "Someone who can write the store folder changed it, or it was damaged."
