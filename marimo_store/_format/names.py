"""The patterns of the store's durable names, for the maintenance that must
recognise them among other files (`verify()`, `doctor()`).

Kept apart from the rest of the format because it imports `re`, which the
hit path has no need of.
"""

from __future__ import annotations

import re

OBJECT_NAME = re.compile(r"[0-9a-f]{30}(?:[0-9a-f]{16})?")
"""An object's file name inside its fan-out directory (30 hex, or 46 when qualified)."""

OBJECT_ID = re.compile(r"[0-9a-f]{32}(?:[0-9a-f]{16})?")
"""A whole object id (32 hex, or 48 when qualified)."""

SNAPSHOT_NAME = re.compile(r"[0-9a-f]{32}\.snap")
SEGMENT_NAME = re.compile(r"[a-z0-9-]+-\d+-[0-9a-f]{12}\.\d+\.log")
