"""Tests of the remote tier (docs/remote.md); a package, so that its conftest
is `remote.conftest` and never shadows the top-level `conftest` module."""
