"""Per-day Parquet tables: `<root>/<table>/<YYYY-MM-DD>.parquet`, on local disk or on S3.

Every write is atomic: a reader (or the next run) sees the previous version of a file or the new one, never
part of one.

- Local disk: the table is written to a hidden temporary file beside the target, flushed to disk, then renamed
  over the target (a rename within one filesystem is atomic). A failure removes the temporary file.
- S3 (and other object stores): the table is first encoded whole in memory, so a failure while encoding (bad
  data, an interrupted input stream) sends nothing. The finished bytes then go up as one object: a single PUT
  for a small file, a multipart upload for a large one. S3 makes an object visible only when its PUT or its
  multipart upload completes, so a failed upload leaves the previous object in place; a multipart upload that
  failed is aborted (best effort) so that its parts are not left behind.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

S3_SCHEME = "s3://"
# pyarrow sends a body below its part size (10 MiB) as one PUT; S3's smallest part is 5 MiB, so a smaller body
# can never have begun a multipart upload.
_SMALLEST_MULTIPART = 5 * 1024 * 1024
_log = logging.getLogger(__name__)


def is_s3_uri(location: str | os.PathLike) -> bool:
    """Whether `location` is an s3:// URI (any case)."""
    return str(location).lower().startswith(S3_SCHEME)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix/ -> ("bucket", "some/prefix"); the prefix has no leading or trailing slash."""
    if not is_s3_uri(uri):
        raise ValueError(f"{uri!r} is not an S3 location: expected s3://bucket/prefix")
    bucket, _, prefix = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def aws_region(region: str | None = None) -> str | None:
    """The region to sign requests for: the one given, else AWS_REGION, else AWS_DEFAULT_REGION."""
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


@functools.lru_cache(maxsize=64)
def _bucket_region(bucket: str) -> str:
    return pafs.resolve_s3_region(bucket)


def s3_filesystem(
    endpoint_url: str | None = None, region: str | None = None, bucket: str | None = None
) -> pafs.S3FileSystem:
    """pyarrow's S3 client, for AWS or an S3-compatible endpoint such as `http://127.0.0.1:9000`.

    Credentials come from the AWS default chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN),
    then the shared config and credentials files (AWS_PROFILE), then a container or instance role. The region is
    `region`, AWS_REGION or AWS_DEFAULT_REGION; failing those, us-east-1 for a custom endpoint and the bucket's
    own region (looked up once) on AWS.
    """
    options: dict = {"allow_delayed_open": True}  # small objects go up as a single PUT
    if endpoint_url:
        parts = urlsplit(endpoint_url if "://" in endpoint_url else f"https://{endpoint_url}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"S3 endpoint URL {endpoint_url!r} is not of the form http(s)://host[:port]")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    region = aws_region(region)
    if region is None:
        region = "us-east-1" if endpoint_url else (_bucket_region(bucket) if bucket else None)
    return pafs.S3FileSystem(region=region, **options)


def _abort_multipart_uploads(endpoint_url: str | None, region: str | None, bucket: str, key: str) -> None:
    """Abort the unfinished multipart uploads of one key, so a failed upload leaves no parts behind (best effort).

    pyarrow does not abort a multipart upload whose part failed; the parts stay invisible but are kept (and
    billed) until aborted. An S3 lifecycle rule (AbortIncompleteMultipartUpload) is the backstop.
    """
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=aws_region(region))
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
        for upload in uploads:
            if upload["Key"] == key:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
    except Exception as error:  # the write has failed already; its error is the one to report
        _log.warning("could not abort unfinished uploads of s3://%s/%s: %s", bucket, key, error)


def _with_metadata(schema: pa.Schema, metadata: dict[str, str] | None) -> pa.Schema:
    if not metadata:
        return schema
    return schema.with_metadata({**(schema.metadata or {}), **{k: str(v) for k, v in metadata.items()}})


def _encode(data: pd.DataFrame | pa.Table | pa.RecordBatchReader, metadata: dict[str, str] | None, sink) -> None:
    """Write `data` as Parquet to `sink` (a file object or a stream); a RecordBatchReader is written batch by batch."""
    if isinstance(data, pa.RecordBatchReader):
        with pq.ParquetWriter(sink, _with_metadata(data.schema, metadata)) as writer:
            for batch in data:
                writer.write_batch(batch)
        return
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(_with_metadata(table.schema, metadata).metadata), sink)


@dataclass(frozen=True)
class ParquetStore:
    """Reads and writes one Parquet file per table and day.

    `root` is a local folder or `s3://bucket/prefix`. For S3, `endpoint_url` points at an S3-compatible service
    (MinIO, moto, ...) instead of AWS, and `region` overrides AWS_REGION. Another pyarrow filesystem may be given
    as `filesystem`, with `root` a path on it.
    """

    root: str
    filesystem: pafs.FileSystem | None = None
    endpoint_url: str | None = None
    region: str | None = None

    @functools.cached_property
    def resolved(self) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem of `root` and the base path under which the tables live."""
        if is_s3_uri(self.root):
            bucket, prefix = split_s3_uri(self.root)
            fs = self.filesystem or s3_filesystem(self.endpoint_url, self.region, bucket)
            return fs, f"{bucket}/{prefix}" if prefix else bucket
        if self.filesystem is not None:
            return self.filesystem, self.root.rstrip("/")
        if "://" in self.root:
            return pafs.FileSystem.from_uri(self.root)
        return pafs.LocalFileSystem(), str(Path(self.root).resolve())

    def _location(self, table: str, day: str) -> str:
        return f"{self.resolved[1]}/{table}/{day}.parquet"

    def path(self, table: str, day: str) -> str:
        """Where a table's day lives, as shown to people: a local path, or s3://bucket/key."""
        location = self._location(table, day)
        return f"{S3_SCHEME}{location}" if isinstance(self.resolved[0], pafs.S3FileSystem) else location

    def write(
        self,
        table: str,
        day: str,
        data: pd.DataFrame | pa.Table | pa.RecordBatchReader,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Write atomically: a reader sees the old file or the new one, never half of one. Returns `path()`."""
        fs, _ = self.resolved
        final = self._location(table, day)
        if isinstance(fs, pafs.LocalFileSystem):
            self._write_local(Path(final), data, metadata)
        else:
            self._write_object(fs, final, data, metadata)
        return self.path(table, day)

    @staticmethod
    def _write_local(final: Path, data, metadata) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{final.stem}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as file:
                _encode(data, metadata, file)
                file.flush()
                os.fsync(file.fileno())  # the bytes are on disk before the name points at them
            os.replace(temporary, final)  # atomic on one filesystem
            _fsync_directory(final.parent)
        finally:
            temporary.unlink(missing_ok=True)

    def _write_object(self, fs: pafs.FileSystem, final: str, data, metadata) -> None:
        buffer = pa.BufferOutputStream()
        _encode(data, metadata, buffer)  # a failure here has sent nothing
        body = buffer.getvalue()
        try:
            with fs.open_output_stream(final) as stream:
                stream.write(body)
        except Exception:
            if isinstance(fs, pafs.S3FileSystem) and self.filesystem is None and body.size >= _SMALLEST_MULTIPART:
                bucket, _, key = final.partition("/")
                _abort_multipart_uploads(self.endpoint_url, self.region, bucket, key)
            raise

    def exists(self, table: str, day: str) -> bool:
        """Whether the day's file of `table` exists."""
        fs, _ = self.resolved
        return fs.get_file_info(self._location(table, day)).type == pafs.FileType.File

    def read(self, table: str, day: str) -> pd.DataFrame:
        """One day's table; the metadata written with it (write's `metadata`) is in the frame's `attrs`."""
        fs, _ = self.resolved
        if not self.exists(table, day):
            raise FileNotFoundError(f"{self.path(table, day)} does not exist: materialize '{table}' for {day} first")
        arrow = pq.read_table(self._location(table, day), filesystem=fs)
        frame = arrow.to_pandas()
        frame.attrs = _file_metadata(arrow.schema)
        return frame

    def days(self, table: str) -> list[str]:
        """The days (file stems) a table has, sorted; temporary files of writes in progress are left out."""
        fs, base = self.resolved
        infos = fs.get_file_info(pafs.FileSelector(f"{base}/{table}", allow_not_found=True))
        return sorted(
            info.base_name[: -len(".parquet")]
            for info in infos
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith(".")
        )

    def read_arrow(self, table: str, day: str, columns: list[str] | None = None) -> pa.Table:
        """One day's table as Arrow, optionally only some columns (no pandas conversion: vectors stay compact)."""
        fs, _ = self.resolved
        return pq.read_table(self._location(table, day), filesystem=fs, columns=columns)

    def made_from(self, table: str, day: str, inputs: str) -> bool:
        """Whether the day's stored `table` was made from `inputs` (a fingerprint written as its `inputs` metadata)."""
        return self.exists(table, day) and self.read_metadata(table, day).get("inputs") == inputs

    def read_metadata(self, table: str, day: str) -> dict[str, str]:
        """The metadata written with a day's table, without reading its rows."""
        fs, _ = self.resolved
        return _file_metadata(pq.read_schema(self._location(table, day), filesystem=fs))


def _file_metadata(schema: pa.Schema) -> dict[str, str]:
    """What `write` keeps in a file's schema metadata (pandas' own entry left out)."""
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if not k.startswith(b"pandas")}


def fingerprint(*parts) -> str:
    """A short hash of what a stage's result is made from (arrays, frames, settings, text), kept in the result's
    metadata so that a re-run with the same inputs can reuse the stored result instead of computing it again."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"array{part.shape}{part.dtype}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (pd.DataFrame, pd.Series)):
            digest.update(f"frame{list(part.columns) if isinstance(part, pd.DataFrame) else [part.name]}".encode())
            digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


@functools.cache
def code_fingerprint(modules: tuple[str, ...], distributions: tuple[str, ...]) -> str:
    """The source of `modules` and the versions of `distributions`: a stored result made by other code is not reused."""
    sources = [Path(importlib.util.find_spec(name).origin).read_bytes() for name in modules]
    return fingerprint(*[s.decode("utf-8", "replace") for s in sources], *[_version(d) for d in distributions])


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable; a no-op where directories cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def vectors_to_arrow_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """An (n, d) float32 matrix as a fixed-size-list column: compact, and readable by any Arrow reader."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1)), vectors.shape[1] if vectors.ndim == 2 else 0
    )


def column_to_vectors(column: pd.Series, dimension: int) -> np.ndarray:
    """The inverse: a column of vectors read back from Parquet as an (n, d) float32 matrix."""
    if len(column) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.stack(column.to_numpy()).astype(np.float32)
