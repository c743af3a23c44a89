"""Embedding cache: vectors keyed by the model and the exact text embedded, as Parquet beside the outputs.

Layout: `<output root>/embedding_cache/<model namespace>/<day>.parquet`, one segment per day holding the key
and vector of every text of that day. The namespace names the model and how it ran (backend and precision),
since PyTorch, OpenVINO and float16 vectors differ in their last digits and the same configuration must give
the same clusters. The key is a 128-bit BLAKE2b hash of the text's UTF-8 bytes: a different text, even by one
character, is a different key.

A lookup reads the run's own days first (a re-run of a day finds everything there), then, for what is still
missing, the key columns of the other segments (newest first, 16 at a time in parallel) and the vectors of the
rows that match. Segments live on the
same local disk or S3 prefix as the outputs, so deleting the folder only costs the next run its speed.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from newsletter_pipeline.storage import ParquetStore, vectors_to_arrow_column

CACHE_TABLE = "embedding_cache"
KEY_BYTES = 16
READ_AHEAD = 16  # segments whose key columns are read at once


def _key_array(wanted: dict[bytes, list[int]]) -> pa.Array:
    return pa.array(list(wanted), pa.binary(KEY_BYTES))


def text_keys(texts: list[str]) -> list[bytes]:
    """One key per text; surrogate escapes (from undecodable input) are kept, not dropped, so they key distinctly."""
    return [hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).digest() for text in texts]


def namespace(model: str, variant: str, weights: str = "") -> str:
    """A folder name for a model, its weights (embed.weights_id) and variant: readable, and unique through a short hash
    of all three."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", model.rsplit("/", 1)[-1]).strip("-.")[:60] or "model"
    digest = hashlib.blake2b(f"{model}\0{variant}\0{weights}".encode(), digest_size=4).hexdigest()
    return f"{readable}-{variant}-{digest}"


@dataclass
class Lookup:
    """Which keys were found (`hit`) and their vectors (rows of misses are zero; no columns when nothing was found)."""

    hit: np.ndarray
    vectors: np.ndarray
    segments_read: int

    @property
    def hits(self) -> int:
        """Texts found in the cache."""
        return int(self.hit.sum())


@dataclass
class EmbeddingCache:
    """The cache of one model, weights and variant. `dimension` may be left None: it is then taken from the first
    segment read or the first vectors saved, so a run that finds everything cached never loads the model."""

    store: ParquetStore
    model: str
    variant: str
    dimension: int | None = None
    weights: str = ""  # embed.weights_id: a model folder whose files changed is another model

    @property
    def table(self) -> str:
        """The store table (a folder under the output root) of this model, weights and variant."""
        return f"{CACHE_TABLE}/{namespace(self.model, self.variant, self.weights)}"

    def _metadata(self) -> dict[str, str]:
        return {"model": self.model, "variant": self.variant, "weights": self.weights, "dimension": str(self.dimension)}

    def _readable(self, table: pa.Table) -> bool:
        """A segment of this model, weights, variant and dimension (a folder copied from elsewhere could hold
        another)."""
        metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        if any(metadata.get(name) != value for name, value in self._metadata().items() if name != "dimension"):
            return False
        if not metadata.get("dimension", "").isdigit() or metadata["dimension"] == "0":
            return False
        if self.dimension is None:
            self.dimension = int(metadata["dimension"])
        return metadata["dimension"] == str(self.dimension)

    def lookup(self, keys: list[bytes], days: list[str] = ()) -> Lookup:
        """The cached vectors of `keys`, reading the segments of `days` first and the others only for what is
        missing."""
        hit = np.zeros(len(keys), dtype=bool)
        vectors = None
        wanted: dict[bytes, list[int]] = {}
        for position, key in enumerate(keys):
            wanted.setdefault(key, []).append(position)
        stored = self.store.days(self.table)
        own = [day for day in days if day in stored]
        # Then the other days, newest first (recent stories repeat most), their key columns read READ_AHEAD at a time
        # in parallel: on S3 a year of segments waits on 23 rounds of reads instead of 365 in a row.
        others = [day for day in reversed(stored) if day not in set(own)]
        batches = [own[i : i + 1] for i in range(len(own))] + [
            others[i : i + READ_AHEAD] for i in range(0, len(others), READ_AHEAD)
        ]
        read = 0
        with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
            for batch in batches:
                if not wanted:
                    break
                for day, keys_only in zip(
                    batch, pool.map(lambda d: self.store.read_arrow(self.table, d, ["key"]), batch)
                ):
                    read += 1
                    if (
                        not wanted
                        or not self._readable(keys_only)
                        or not pc.any(pc.is_in(keys_only.column("key"), value_set=_key_array(wanted))).as_py()
                    ):
                        continue
                    # Keys and vectors from one read, so a segment rewritten meanwhile cannot pair a key with another's
                    # vector.
                    segment = self.store.read_arrow(self.table, day, ["key", "embedding"])
                    if not self._readable(segment):
                        continue
                    segment_keys = segment.column("key")
                    rows = np.flatnonzero(
                        pc.is_in(segment_keys, value_set=_key_array(wanted)).to_numpy(zero_copy_only=False)
                    )
                    matrix = (
                        segment.column("embedding")
                        .combine_chunks()
                        .flatten()
                        .to_numpy(zero_copy_only=False)
                        .reshape(-1, self.dimension)
                    )
                    if vectors is None:
                        vectors = np.zeros((len(keys), self.dimension), dtype=np.float32)
                    for row, key in zip(rows, segment_keys.take(pa.array(rows)).to_pylist()):
                        positions = wanted.pop(key, None)
                        if positions:
                            vectors[positions] = matrix[row]
                            hit[positions] = True
        return Lookup(hit, vectors if vectors is not None else np.zeros((len(keys), 0), dtype=np.float32), read)

    def save(self, day: str, texts: list[str], vectors: np.ndarray) -> bool:
        """Make the day's segment hold these texts' vectors; False when it already does (nothing written).

        Only finite unit-length vectors are kept: a broken one (a float16 overflow, say) is computed again next time
        instead of failing every later run the same way."""
        if self.dimension is None:
            if vectors.ndim != 2 or vectors.shape[1] == 0:
                return False  # an empty run with nothing cached: no dimension to record
            self.dimension = int(vectors.shape[1])
        sound = np.isfinite(vectors).all(axis=1) & (np.abs(np.linalg.norm(vectors, axis=1) - 1.0) < 1e-3)
        unique: dict[bytes, int] = {}
        for row, key in enumerate(text_keys(texts)):
            if sound[row]:
                unique.setdefault(key, row)
        if self.store.exists(self.table, day):
            existing = self.store.read_arrow(self.table, day, ["key"])
            if self._readable(existing) and set(existing.column("key").to_pylist()) == set(unique):
                return False
        rows = list(unique.values())
        table = pa.table(
            {
                "key": pa.array(list(unique), pa.binary(KEY_BYTES)),
                "embedding": vectors_to_arrow_column(vectors[rows].reshape(len(rows), self.dimension)),
            }
        )
        self.store.write(self.table, day, table, metadata=self._metadata())
        return True


def embed_with_cache(
    cache: EmbeddingCache | None, texts: list[str], days: list[str], encode
) -> tuple[np.ndarray, dict]:
    """Vectors for `texts` (unit-length float32), calling `encode(list_of_texts)` only for texts the cache lacks.

    Each distinct missing text is encoded once, however many days or items share it; when every text is
    cached, `encode` is not called at all (and the model need not be loaded). Returns the vectors (no columns
    for an empty `texts` with nothing cached) and figures for the run's metadata."""
    if cache is None:
        vectors = encode(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        return vectors, {"cache": "off", "texts_encoded": len(texts)}
    keys = text_keys(texts)
    found = cache.lookup(keys, days)
    vectors = found.vectors
    missing: dict[bytes, list[int]] = {}
    for position in np.flatnonzero(~found.hit):
        missing.setdefault(keys[position], []).append(int(position))
    if missing:
        fresh = encode([texts[positions[0]] for positions in missing.values()])
        if vectors.shape[1] != fresh.shape[1]:
            if found.hits:
                raise ValueError(
                    f"the embedding cache {cache.table} holds vectors of dimension {vectors.shape[1]} but the model "
                    "gives "
                    f"{fresh.shape[1]}: the model changed under the same name; delete that folder"
                )
            vectors = np.zeros((len(texts), fresh.shape[1]), dtype=np.float32)  # nothing was found: no vectors to keep
        for row, positions in enumerate(missing.values()):
            vectors[positions] = fresh[row]
    return vectors, {
        "cache_hits": found.hits,
        "cache_misses": len(texts) - found.hits,
        "texts_encoded": len(missing),
        "cache_segments_read": found.segments_read,
    }
