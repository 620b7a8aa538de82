"""What `verify()` and `doctor()` return: small value types, importable
without the (lazily imported) modules that do the work."""

from __future__ import annotations

from marimo_store._value import Value


class VerifyProblem(Value):
    """One thing `verify()` found wrong.

    `kind` is a short category ("damaged object", "conflicted copy", ...),
    `path` the file concerned ("" for an entry), `detail` what exactly is
    wrong, and `action` what `verify(repair=True)` did about it ("" when
    not repairing).
    """

    __slots__ = ("kind", "path", "detail", "action")
    kind: str
    path: str
    detail: str
    action: str

    def __init__(self, kind: str, path: str, detail: str, action: str = "") -> None:
        self._assign(kind=kind, path=path, detail=detail, action=action)


class VerifyReport:
    """What `verify()` checked and found.

    `problems` is empty for a healthy store. With `repair=True` each problem
    says what was done about it, `snapshot` names the fresh snapshot, and
    `skipped` says what could not be done (a busy lock, for instance).
    """

    __slots__ = (
        "bytes_hashed",
        "entries_checked",
        "objects_checked",
        "problems",
        "repaired",
        "segments_checked",
        "skipped",
        "snapshot",
        "snapshots_checked",
    )

    def __init__(self, *, repaired: bool) -> None:
        self.repaired = repaired
        self.problems: list[VerifyProblem] = []
        self.objects_checked = 0
        self.bytes_hashed = 0
        self.snapshots_checked = 0
        self.segments_checked = 0
        self.entries_checked = 0
        self.snapshot: str | None = None
        self.skipped: list[str] = []

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self.__slots__))
        return f"VerifyReport({fields})"


class Finding(Value):
    """One thing `doctor()` noticed.

    `code` is stable and short ("sync-folder", "network-filesystem",
    "conflicted-copies", "stale-temp-files", "clock-skew",
    "change-notification", "marimo-ignores-store"); `severity` is "warning" or "info"; `message`
    says what, why it matters and what to do; `paths` lists what it is about.
    """

    __slots__ = ("code", "severity", "message", "paths")
    code: str
    severity: str
    message: str
    paths: tuple[str, ...]

    def __init__(self, code: str, severity: str, message: str, paths: tuple[str, ...] = ()) -> None:
        self._assign(code=code, severity=severity, message=message, paths=paths)
