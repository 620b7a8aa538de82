"""Python scripts run as real processes, the way a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


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


COMMAND = Path(sys.executable).with_name("marimo-store")


def command_environment(home: Path) -> dict[str, str]:
    """The environment of a command run in `home`: that HOME and no other
    configuration; wide lines, so that help text is not wrapped."""
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg"),
        "COLUMNS": "1000",
    }


def run_command(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`marimo-store ARGS` in `home`, with no terminal anywhere (stdin
    included); whatever happens, no traceback."""
    done = subprocess.run(
        [str(COMMAND), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=home,
        env=command_environment(home),
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done
