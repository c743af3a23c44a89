"""Where landing files are found: a local folder, or an S3 prefix.

Either way the result is a `Listing`: the files whose format has a reader (`newsletter_pipeline.landing.readers`), in a
stable order, and every entry that was not read with the reason (another format, a folder that cannot be entered, a
link to a folder). A file's bytes are read when the parser asks for them.

A location that does not exist or cannot be listed raises `LandingError` naming it: read as empty, it would publish
its days with no items and wipe them from the sheet. Symbolic links are read only when their target lies inside the
location; any other link (outside, dangling, a loop) becomes a refused file, quarantined with the reason.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from newsletter_pipeline.landing.formats import READERS, format_of

# S3 errors that concern one object (it is unreadable, not the store): the file is quarantined and the run goes
# on. Any other error (the endpoint is down, throttling that outlasted the client's retries, a 5xx) fails the
# run instead, so that a passing outage never publishes a day without its items.
OBJECT_ERRORS = frozenset({"AccessDenied", "NoSuchKey", "InvalidObjectState", "403", "404"})
KNOWN_FORMATS = ", ".join(READERS) + " (and .jsonl, .ndjson, .csv, .json compressed as .gz)"


class LandingError(OSError):
    """A landing location that does not exist or cannot be listed: the run fails before anything is written."""


@dataclass(frozen=True)
class Skipped:
    """An entry of a landing location that was not read, and why."""

    name: str
    reason: str


@dataclass
class Listing:
    """What a landing location holds: the files to read, and the entries skipped with the reason."""

    files: list[LandingFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def extend(self, other: Listing) -> None:
        """Add another location's listing to this one."""
        self.files += other.files
        self.skipped += other.skipped


@dataclass(frozen=True)
class LandingFile:
    """One input file, wherever it lives: `name` is what messages show (a path, or s3://bucket/key).

    `refusal`, when set, says why the file is not read (a link to outside the landing location): it becomes one
    quarantined record with that reason, and `load` refuses too.
    """

    name: str
    load: Callable[[], bytes]
    refusal: str | None = None
    # What changes when the content may have, known from the listing without reading the file: size and
    # modification time on disk, ETag and size on S3. None: unknown, read it.
    stamp: str | None = None

    @property
    def suffix(self) -> str | None:
        """The suffix of its reader (`.jsonl` for `a.jsonl.gz`), None for no reader."""
        return format_of(self.name)

    @property
    def default_source(self) -> str:
        """A file without a source field names its newsletter: morning_brief.jsonl(.gz) -> 'morning brief'."""
        return PurePosixPath(self.name.removesuffix(".gz")).stem.replace("_", " ").replace("-", " ").strip()


def _stamp(stat: os.stat_result) -> str:
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _not_read(name: str) -> Skipped:
    return Skipped(name, f"not a format the readers know; they read {KNOWN_FORMATS}")


def _refused(path: Path, reason: str) -> LandingFile:
    def load() -> bytes:
        raise OSError(reason)

    return LandingFile(str(path), load, refusal=reason)


def _link(path: Path, root: Path) -> LandingFile | Skipped | None:
    """A symbolic link: read where it points inside the location, refused otherwise."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return _refused(path, f"not read: dangling symbolic link to {os.readlink(path)} (its target does not exist)")
    except (RuntimeError, OSError) as error:  # ELOOP: Python 3.11 raises RuntimeError, later versions OSError
        return _refused(
            path, f"not read: symbolic link that cannot be resolved ({getattr(error, 'strerror', None) or error})"
        )
    if not target.is_relative_to(root):
        return _refused(path, f"not read: symbolic link to {target}, outside the landing location {root}")
    if target.is_dir():
        return Skipped(
            str(path), f"symbolic link to the folder {target}: not followed (the files there are read where they are)"
        )
    if format_of(path.name) is None:
        return _not_read(str(path))
    return LandingFile(str(path), target.read_bytes, stamp=_stamp(target.stat()))


def local_listing(folder: str | Path) -> Listing:
    """Every entry below `folder`: readable files in path order, everything else reported."""
    root = Path(folder)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise LandingError(
            f"the landing location {root} {what}: check the path (and that its share is mounted), "
            "or set NEWSLETTER_LANDING_DIR to where the files land"
        )
    resolved_root = root.resolve()
    listing = Listing()

    def walk(directory: Path) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            if directory == root:
                raise LandingError(
                    f"cannot list the landing location {root}: {error.strerror}; check its permissions"
                ) from error
            listing.skipped.append(
                Skipped(str(directory), f"folder cannot be listed ({error.strerror}): its files were not read")
            )
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                found = _link(path, resolved_root)
                (listing.skipped if isinstance(found, Skipped) else listing.files).append(found)
            elif entry.is_dir(follow_symlinks=False):
                walk(path)
            elif not entry.is_file(follow_symlinks=False):
                listing.skipped.append(Skipped(str(path), "not a regular file (a socket, pipe or device)"))
            elif format_of(path.name) is None:
                listing.skipped.append(_not_read(str(path)))
            else:
                listing.files.append(LandingFile(str(path), path.read_bytes, stamp=_stamp(entry.stat())))

    walk(root)
    listing.files.sort(key=lambda file: file.name)
    listing.skipped.sort(key=lambda skipped: skipped.name)
    return listing


def local_files(folder: str | Path) -> list[LandingFile]:
    """The files `local_listing` reads (refused links included, which quarantine)."""
    return local_listing(folder).files


def s3_objects(client: Any, bucket: str, prefix: str = "") -> list[dict]:
    """Every object below `s3://bucket/prefix` (folder markers left out), sorted by key: dicts of Key, ETag, Size,
    LastModified.

    `prefix` is a folder: "landing" lists landing/... but not landing-old/... . `client` is a boto3 S3 client
    (`S3Resource.get_client()`). A listing that fails raises LandingError naming the location.
    """
    prefix = prefix.strip("/")
    folder = f"{prefix}/" if prefix else ""
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        objects = [entry for page in pages for entry in page.get("Contents", [])]
    except Exception as error:
        raise LandingError(f"cannot list the landing location s3://{bucket}/{folder}: {error}") from error
    return sorted((entry for entry in objects if not entry["Key"].endswith("/")), key=lambda entry: entry["Key"])


def _read_object(client: Any, bucket: str, key: str) -> bytes:
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as error:
        code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
        if code in OBJECT_ERRORS:  # parse_file quarantines an OSError as "unreadable file: ..."
            raise OSError(f"cannot read s3://{bucket}/{key}: {code}") from error
        raise


def s3_listing(client: Any, bucket: str, prefix: str = "") -> Listing:
    """Every object below `s3://bucket/prefix`, named `s3://bucket/key`, in key order: readable ones as files."""
    listing = Listing()
    for entry in s3_objects(client, bucket, prefix):
        name = f"s3://{bucket}/{entry['Key']}"
        if format_of(name) is None:
            listing.skipped.append(_not_read(name))
        else:
            load = functools.partial(_read_object, client, bucket, entry["Key"])
            stamp = f"{entry['ETag']}:{entry['Size']}" if entry.get("ETag") else None
            listing.files.append(LandingFile(name, load, stamp=stamp))
    return listing


def s3_files(client: Any, bucket: str, prefix: str = "") -> list[LandingFile]:
    """The readable objects of `s3_listing`."""
    return s3_listing(client, bucket, prefix).files
