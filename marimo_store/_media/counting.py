"""`CountingMedium`: a medium that counts the requests made through it.

The costs in docs/remote.md (requests per put, per hit, per miss) are
measured, not guessed: benchmarks/remote.py and tests/remote wrap a medium
in this and read `calls`. The invariant: it changes nothing but the counts
(every call goes to the wrapped medium as it is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marimo_store._media import Medium


class CountingMedium:
    """`inner`, with `calls[operation]` counting each operation used."""

    def __init__(self, inner: Medium) -> None:
        self.inner = inner
        self.can_append = inner.can_append
        self.can_lock = inner.can_lock
        self.calls: dict[str, int] = {}

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(*args, **kwargs)

        return counted
