"""The remote tier: the store's format on object storage (docs/remote.md).

`RemoteStore(url)` is a `Store` on S3, GCS, Azure, a local directory or
memory through obstore (`pip install marimo_store[remote]`);
`FsPersistentStore(path, remote=url)` puts a local store in front of one
(`_tier.py`). The modules, one job each: `_segments` (sealed segments),
`_segment_cache` (their local copies), `_catalog` (the live index),
`_objects` (objects by hash, parallel ranged reads), `_writer` (segment
numbering), `store` (the `Store` itself), `_tier` (read-through and
write-through or write-back in front of it). Importing this package does
not import obstore: only opening a URL does.
"""

from __future__ import annotations

from marimo_store.remote.store import RemoteStore

__all__ = ["RemoteStore"]
