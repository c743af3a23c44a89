"""A real S3-compatible server for tests: moto's server mode, in a thread, on 127.0.0.1 and a free port.

Clients reach it over HTTP like any S3 endpoint (boto3 with `endpoint_url`, pyarrow with `endpoint_override`),
with fake credentials from the environment; nothing leaves the machine.

    with moto_s3_server() as s3:
        bucket = s3.new_bucket()
        store = ParquetStore(f"s3://{bucket}/outputs", endpoint_url=s3.endpoint_url)
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

REGION = "us-east-1"

# Fake credentials, and no way to find real ones: no profile, no config files, no instance metadata.
FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@contextmanager
def fake_aws_environment() -> Iterator[None]:
    """Set the fake credentials and region for the duration, then restore the environment as it was."""
    saved = {name: os.environ.get(name) for name in (*FAKE_AWS_ENVIRONMENT, *UNSET)}
    try:
        for name in UNSET:
            os.environ.pop(name, None)
        os.environ.update(FAKE_AWS_ENVIRONMENT)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION)

    def new_bucket(self, stem: str = "newsletters") -> str:
        """A fresh, empty bucket, so that tests sharing the server never see each other's objects."""
        bucket = f"{stem}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))

    def pending_uploads(self, bucket: str) -> list[str]:
        """Keys with a multipart upload begun and neither completed nor aborted."""
        return [upload["Key"] for upload in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


@contextmanager
def moto_s3_server() -> Iterator[S3Server]:
    """Start moto's server on 127.0.0.1 (port 0: the system picks a free one) with the fake environment set."""
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # not a line per request
    with fake_aws_environment():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield S3Server(f"http://{host}:{port}")
        finally:
            server.stop()
            werkzeug.setLevel(level)
