"""Python scripts run as real processes, the way a user runs them."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `script` (dedented) with `args` in a fresh interpreter; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result
