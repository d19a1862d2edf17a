"""One output location on any fsspec filesystem, with atomic writes.

A dataset is read while it is being written (``sam-batch inspect``, a resumed
job), so nothing may ever be seen half written: on a local disk a file is
written beside its final name and renamed; on an object store it is one PUT of
the finished object, which S3 makes visible all at once. pyarrow wants paths
without the ``s3://`` prefix when handed an fsspec filesystem, so this module
keeps both the filesystem path and the URL for messages.
"""

from __future__ import annotations

import os
import posixpath
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem


class Location:
    """A directory URL (``/data/out``, ``file://``, ``s3://bucket/prefix``).

    >>> import tempfile
    >>> loc = Location(tempfile.mkdtemp())
    >>> loc.write("a/b.txt", b"hi"); loc.read("a/b.txt"), loc.exists("a/c.txt")
    (b'hi', False)
    """

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def path(self, relpath: str = "") -> str:
        """Filesystem path (no protocol) for pyarrow and fsspec calls."""
        return posixpath.join(self.root, relpath) if relpath else self.root

    def url_of(self, relpath: str) -> str:
        return f"{self.url}/{relpath}"

    def write(self, relpath: str, data: bytes) -> None:
        """Make ``relpath`` hold ``data``, visible only once complete."""
        path = self.path(relpath)
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            try:
                self.fs.pipe_file(path, data)
            except OSError as e:  # retries spent (botocore's): say which object
                raise OSError(e.errno, f"writing {self.url_of(relpath)}: {e.strerror or e}") from e

    def read(self, relpath: str) -> bytes:
        return self.fs.cat_file(self.path(relpath))

    def exists(self, relpath: str) -> bool:
        return self.fs.exists(self.path(relpath))

    def list(self, relpath: str, suffix: str = "") -> list[str]:
        """Relative paths of the files under ``relpath`` (recursive), sorted."""
        base = self.path(relpath)
        if not self.fs.exists(base):
            return []
        self.fs.invalidate_cache(base)
        found = self.fs.find(base)
        root = self.root + "/"
        out = [p[len(root):] if p.startswith(root) else p for p in found]
        return sorted(p for p in out if p.endswith(suffix) and ".tmp-" not in p)

    def delete(self, relpath: str) -> None:
        path = self.path(relpath)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)


#: botocore's retries for S3 (``standard`` mode: 500, 502, 503, 504, throttling and
#: dropped connections, with exponential backoff and jitter), as a job's default.
#: ``max_attempts`` counts the retries after the first try.
S3_RETRIES = {"max_attempts": 8, "mode": "standard"}


def with_retries(urls: list[str | None], storage_options: dict | None) -> dict:
    """``storage_options`` with :data:`S3_RETRIES` as botocore's retry config when any
    of ``urls`` is on S3 and the options set none (s3fs hands ``config_kwargs`` to
    botocore's ``Config``); unchanged otherwise.

    >>> with_retries(["s3://b/out"], {"anon": True})["config_kwargs"]["retries"]["mode"]
    'standard'
    >>> mine = {"config_kwargs": {"retries": {"max_attempts": 2}}}
    >>> with_retries(["/data/out"], {}), with_retries(["s3://b"], mine) == mine
    ({}, True)
    """
    options = dict(storage_options or {})
    if not any(u and u.startswith(("s3://", "s3a://")) for u in urls):
        return options
    config_kwargs = dict(options.get("config_kwargs") or {})
    config_kwargs.setdefault("retries", dict(S3_RETRIES))
    options["config_kwargs"] = config_kwargs
    return options


def safe_name(video_id: str) -> str:
    """A video id as one path component: readable, reversible, no separators.

    >>> safe_name("cam 1/clip:7")
    'cam%201%2Fclip%3A7'
    """
    from urllib.parse import quote

    return quote(video_id, safe="-_.=+@,")
