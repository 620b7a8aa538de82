"""`ObjectStoreMedium`: the storage seam over obstore (S3, GCS, Azure, a
local directory, memory), for the remote tier (docs/remote.md).

An object store has no append and no lock (`can_append`, `can_lock` are
False): writers seal each segment as a new object, maintenance takes a
lease with `put_once`. The invariant kept here: `put_once` is one
conditional request (`If-None-Match: *` on S3, the same precondition on
GCS and Azure, a no-clobber link on a local directory), so two machines
putting one key never overwrite each other and nothing is ever visible
partly under its final name (a failed upload leaves the key absent).

Credentials come only from the environment and the provider's usual chain
(`AWS_*`, `GOOGLE_*`, `AZURE_*` variables, instance metadata), never from
project files. `endpoint` and `allow_http` exist for S3-compatible servers
such as MinIO (and the test server on 127.0.0.1). Every request has a
timeout and a bounded number of retries, so a stalled server costs a
bounded wait and then a `MediumError`, never a hang.
"""

from __future__ import annotations

import calendar
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError
from obstore.store import from_url

from marimo_store._errors import NotSupportedError
from marimo_store._media import KeyInfo, MediumError, MediumMissing, check_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from contextlib import AbstractContextManager

    from obstore.store import ObjectStore

    from marimo_store._hashing import Buffer
    from marimo_store._media import Appender

_NETWORK_SCHEMES = ("s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl", "http", "https")


def _scheme(url: str) -> str:
    scheme, separator, _ = url.partition("://")
    if not separator:
        raise MediumError(f"not a storage URL (scheme://...): {url!r}")
    return scheme.lower()


def _info(meta: Any) -> KeyInfo:
    modified = meta["last_modified"]
    seconds = calendar.timegm(modified.utctimetuple())
    modified_ns = seconds * 1_000_000_000 + modified.microsecond * 1000
    return KeyInfo(meta["path"], meta["size"], modified_ns)


class ObjectStoreMedium:
    """A `Medium` on an obstore store: `url` as `s3://bucket/prefix`,
    `gs://bucket/prefix`, `az://container/prefix`, `file:///dir`, `memory://`."""

    can_append = False
    can_lock = False

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        allow_http: bool | None = None,
        timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        self.url = url
        scheme = _scheme(url)
        options: dict[str, Any] = {}
        if scheme in _NETWORK_SCHEMES:  # bounded timeouts and retries (module docstring)
            if allow_http is None:  # client options replace the environment's: read it here
                allow_http = os.environ.get("AWS_ALLOW_HTTP", "").lower() == "true"
            options["client_options"] = {
                "timeout": timedelta(seconds=timeout),
                "connect_timeout": timedelta(seconds=min(timeout, 5.0)),
                "allow_http": allow_http,
            }
            options["retry_config"] = {
                "max_retries": retries,
                "retry_timeout": timedelta(seconds=timeout),
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2,
                },
            }
            if endpoint is not None:
                options["endpoint"] = endpoint
        elif scheme == "file":
            options["mkdir"] = True
        try:
            self.store: ObjectStore = from_url(url, **options)
        except (BaseError, ValueError, OSError) as error:
            raise MediumError(f"cannot open {url}: {error}") from error

    def __repr__(self) -> str:
        return f"ObjectStoreMedium({self.url!r})"

    def _failed(self, what: str, key: str, error: Exception) -> MediumError:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, FileNotFoundError):
            return MediumMissing(f"{self.url}: {key} is not there")
        return MediumError(f"{self.url}: {what} {key} failed: {first_line}")

    def put_once(self, key: str, parts: Iterable[Buffer]) -> bool:
        """One conditional put of the concatenated parts (see the module docstring)."""
        check_key(key)
        pieces = list(parts)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)  # one part: no copy
        try:
            obstore.put(self.store, key, data, mode="create", use_multipart=False)
        except (AlreadyExistsError, PreconditionError):
            return False
        except (BaseError, OSError) as error:
            raise self._failed("put of", key, error) from error
        return True

    def replace(self, key: str, data: Buffer) -> None:
        """A plain put: an object store replaces an object whole, atomically."""
        check_key(key)
        try:
            obstore.put(self.store, key, bytes(data), use_multipart=False)
        except (BaseError, OSError) as error:
            raise self._failed("put of", key, error) from error

    def read(self, key: str) -> bytes:
        check_key(key)
        try:
            return bytes(obstore.get(self.store, key).bytes())
        except (BaseError, OSError) as error:
            raise self._failed("read of", key, error) from error

    def read_range(self, key: str, start: int, end: int) -> bytes:
        check_key(key)
        if end <= start:
            return b""
        try:
            return bytes(obstore.get_range(self.store, key, start=start, end=end))
        except (BaseError, OSError) as error:
            info = None if isinstance(error, FileNotFoundError) else self.head(key)
            if info is not None and start >= info.size:
                return b""  # a range past the end: fewer bytes, as a file read gives
            raise self._failed("read of", key, error) from error

    def head(self, key: str) -> KeyInfo | None:
        check_key(key)
        try:
            return _info(obstore.head(self.store, key))
        except FileNotFoundError:
            return None
        except (BaseError, OSError) as error:
            raise self._failed("head of", key, error) from error

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        check_key(prefix, prefix=True)
        try:
            for chunk in obstore.list(self.store, prefix=prefix.rstrip("/") or None):
                for meta in chunk:
                    yield _info(meta)
        except FileNotFoundError:
            return
        except (BaseError, OSError) as error:
            raise self._failed("listing of", prefix, error) from error

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            obstore.delete(self.store, key)
        except FileNotFoundError:
            return
        except (BaseError, OSError) as error:
            raise self._failed("delete of", key, error) from error

    def appender(self, key: str) -> Appender:
        raise NotSupportedError(f"{self.url}: an object store cannot append (to {key})")

    def lock(self, name: str) -> AbstractContextManager[None]:
        raise NotSupportedError(
            f"{self.url}: an object store has no lock ({name}); take a lease with put_once"
        )
