"""Per-day Parquet tables: `<root>/<table>/<YYYY-MM-DD>.parquet`, on local disk or an object store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


@dataclass(frozen=True)
class ParquetStore:
    """Reads and writes one Parquet file per table and day. `root` is a folder or a URI (s3://bucket/prefix)."""

    root: str
    filesystem: pafs.FileSystem | None = None

    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        if self.filesystem is not None:
            return self.filesystem, self.root.rstrip("/")
        if "://" in self.root:
            return pafs.FileSystem.from_uri(self.root)
        return pafs.LocalFileSystem(), str(Path(self.root).resolve())

    def path(self, table: str, day: str) -> str:
        return f"{self._fs_and_base()[1]}/{table}/{day}.parquet"

    def write(self, table: str, day: str, data: pd.DataFrame | pa.Table, metadata: dict[str, str] | None = None) -> str:
        """Write atomically: a reader sees the old file or the new one, never half of one."""
        fs, base = self._fs_and_base()
        final = f"{base}/{table}/{day}.parquet"
        arrow = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        if metadata:
            arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **{k: str(v) for k, v in metadata.items()}})
        fs.create_dir(f"{base}/{table}", recursive=True)
        if isinstance(fs, pafs.LocalFileSystem):
            temporary = f"{base}/{table}/.{day}.{uuid.uuid4().hex}.tmp"
            try:
                pq.write_table(arrow, temporary, filesystem=fs)
                fs.move(temporary, final)  # rename: atomic on one filesystem
            finally:
                if fs.get_file_info(temporary).type != pafs.FileType.NotFound:
                    fs.delete_file(temporary)
        else:
            pq.write_table(arrow, final, filesystem=fs)  # an object store's PUT replaces the object whole
        return final

    def exists(self, table: str, day: str) -> bool:
        fs, base = self._fs_and_base()
        return fs.get_file_info(f"{base}/{table}/{day}.parquet").type == pafs.FileType.File

    def read(self, table: str, day: str) -> pd.DataFrame:
        fs, base = self._fs_and_base()
        path = f"{base}/{table}/{day}.parquet"
        if not self.exists(table, day):
            raise FileNotFoundError(f"{path} does not exist: materialize '{table}' for {day} first")
        return pq.read_table(path, filesystem=fs).to_pandas()

    def read_metadata(self, table: str, day: str) -> dict[str, str]:
        fs, base = self._fs_and_base()
        schema = pq.read_schema(f"{base}/{table}/{day}.parquet", filesystem=fs)
        return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if not k.startswith(b"pandas")}


def vectors_to_arrow_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """An (n, d) float32 matrix as a fixed-size-list column: compact, and readable by any Arrow reader."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1] if vectors.ndim == 2 else 0)


def column_to_vectors(column: pd.Series, dimension: int) -> np.ndarray:
    """The inverse: a column of vectors read back from Parquet as an (n, d) float32 matrix."""
    if len(column) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.stack(column.to_numpy()).astype(np.float32)
