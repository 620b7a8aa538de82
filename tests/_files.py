"""Damage done to real files, the way disks, sync tools and people do it."""

from __future__ import annotations

from pathlib import Path


def flip_byte(path: Path, offset: int) -> None:
    """Invert every bit of one byte, in place (same inode, same size)."""
    with open(path, "r+b") as file:
        file.seek(offset)
        original = file.read(1)
        assert len(original) == 1
        file.seek(offset)
        file.write(bytes([original[0] ^ 0xFF]))
