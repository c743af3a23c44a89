"""Where landing files are found: a local folder, or an S3 prefix.

Either way the result is a list of `LandingFile`s in a stable order, holding only files whose suffix has a reader
(`newsletter_pipeline.stages.readers.READERS`); a file's bytes are read when the parser asks for them.
"""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath
from typing import Any

from newsletter_pipeline.stages.parse import LandingFile
from newsletter_pipeline.stages.readers import READERS

# S3 errors that concern one object (it is unreadable, not the store): the file is quarantined and the run goes
# on. Any other error (the endpoint is down, throttling that outlasted the client's retries, a 5xx) fails the
# run instead, so that a passing outage never publishes a day without its items.
OBJECT_ERRORS = frozenset({"AccessDenied", "NoSuchKey", "InvalidObjectState", "403", "404"})


def _readable(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in READERS


def local_files(folder: str | Path) -> list[LandingFile]:
    """Every readable file below `folder`, in a stable order."""
    folder = Path(folder)
    if not folder.exists():
        return []
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and _readable(p.name))
    return [LandingFile(str(path), path.read_bytes) for path in paths]


def s3_objects(client: Any, bucket: str, prefix: str = "") -> list[dict]:
    """The readable objects below `s3://bucket/prefix`, sorted by key: dicts of Key, ETag, Size, LastModified.

    `prefix` is a folder: "landing" lists landing/... but not landing-old/... . `client` is a boto3 S3 client
    (`S3Resource.get_client()`). A listing that fails raises OSError naming the location.
    """
    prefix = prefix.strip("/")
    folder = f"{prefix}/" if prefix else ""
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        objects = [entry for page in pages for entry in page.get("Contents", [])]
    except Exception as error:
        raise OSError(f"cannot list the landing location s3://{bucket}/{folder}: {error}") from error
    readable = [entry for entry in objects if not entry["Key"].endswith("/") and _readable(entry["Key"])]
    return sorted(readable, key=lambda entry: entry["Key"])


def _read_object(client: Any, bucket: str, key: str) -> bytes:
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as error:
        code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
        if code in OBJECT_ERRORS:  # parse_file quarantines an OSError as "unreadable file: ..."
            raise OSError(f"cannot read s3://{bucket}/{key}: {code}") from error
        raise


def s3_files(client: Any, bucket: str, prefix: str = "") -> list[LandingFile]:
    """Every readable object below `s3://bucket/prefix`, named `s3://bucket/key`, in key order."""
    return [
        LandingFile(f"s3://{bucket}/{entry['Key']}", functools.partial(_read_object, client, bucket, entry["Key"]))
        for entry in s3_objects(client, bucket, prefix)
    ]
