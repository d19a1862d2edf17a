"""Shared fixtures: a real S3 server on 127.0.0.1 (moto), started once per session, and
a local Ray on 127.0.0.1 for the modules that run whole jobs.

Object storage is tested against a real HTTP S3 endpoint, not a patched client, so
s3fs, botocore and our retries run exactly as they do against AWS. Both servers
listen on 127.0.0.1 only, and so does every Ray the tests start, in-process, with
``ray start`` or as a multi-node ``ray.cluster_utils.Cluster``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import botocore.session
import fsspec
import pytest
from moto.server import ThreadedMotoServer

# Ray's switch for a local-only instance (see sam_batch.runtime.session), for the
# Rays the tests start themselves; set before Ray is imported, which reads it then,
# and inherited by `ray start` and every process a Ray starts.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@dataclass(frozen=True)
class S3:
    """A bucket on the test S3 server and the fsspec options that reach it.

    >>> fsspec.open(s3.url("v.mp4"), "rb", **s3.storage_options)  # doctest: +SKIP
    """

    endpoint_url: str
    bucket: str
    storage_options: dict = field(hash=False)

    def url(self, key: str) -> str:
        """``s3://bucket/key`` for a key in the test bucket."""
        return f"s3://{self.bucket}/{key}"

    def upload(self, path: str | Path, key: str) -> str:
        """Copy a local file to ``key``; returns its ``s3://`` URL."""
        url = self.url(key)
        with open(path, "rb") as src, fsspec.open(url, "wb", **self.storage_options) as dst:
            dst.write(src.read())
        return url


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """A moto S3 server on a free port of 127.0.0.1 with one empty bucket, ``test-bucket``."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        storage_options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint_url, "region_name": "us-east-1"},
            # Each test sees the bucket as it is now, not as an earlier listing left it.
            "use_listings_cache": False,
        }
        bucket = "test-bucket"
        botocore.session.get_session().create_client(  # botocore: what s3fs itself runs on
            "s3", endpoint_url=endpoint_url, aws_access_key_id="testing",
            aws_secret_access_key="testing", region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        yield S3(endpoint_url=endpoint_url, bucket=bucket, storage_options=storage_options)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local two-CPU Ray on 127.0.0.1 for one test module; jobs join it, not start one."""
    import ray  # only the modules that run jobs pay for importing Ray

    from sam_batch.runtime.session import init_local

    init_local(num_cpus=2)
    yield
    ray.shutdown()
