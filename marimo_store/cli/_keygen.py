"""`keygen [PATH]`: make an Ed25519 signing key (docs/security.md)."""

from __future__ import annotations

import os

from marimo_store._signing import generate_signing_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from marimo_store.cli import Register
    from marimo_store.cli._output import Output


DEFAULT_KEY_PATH = "~/.config/marimo_store/signing_key.pem"
"""Where docs/security.md suggests each member keeps their key."""


def register(add: Register) -> None:
    keygen = add("keygen", help="write a new signing key; print its fingerprint", store=False)
    keygen.add_argument(
        "path", nargs="?", default=DEFAULT_KEY_PATH, help=f"default: {DEFAULT_KEY_PATH}"
    )
    keygen.set_defaults(run=run_keygen)


def run_keygen(args: argparse.Namespace, out: Output) -> int:
    path = os.path.abspath(os.path.expanduser(args.path))
    fingerprint = generate_signing_key(path)
    if out.json_mode:
        out.document({"path": path, "fingerprint": fingerprint})
        return 0
    out.line(f"wrote a new signing key to {path} (permissions 0600)")
    out.line(f"fingerprint: {fingerprint}")
    out.line(
        f'sign with it: signing_key = "{path}" under [fs_persister.defaults] in your user '
        "configuration; give the fingerprint to your team for their trusted_signers "
        "(docs/security.md)"
    )
    return 0
