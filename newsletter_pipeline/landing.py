"""Where landing files are found: a local folder (and, later, an S3 prefix)."""

from pathlib import Path

from newsletter_pipeline.stages.parse import LandingFile
from newsletter_pipeline.stages.readers import READERS


def local_files(folder: str | Path) -> list[LandingFile]:
    """Every readable file below `folder`, in a stable order."""
    folder = Path(folder)
    if not folder.exists():
        return []
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in READERS)
    return [LandingFile(str(path), path.read_bytes) for path in paths]
