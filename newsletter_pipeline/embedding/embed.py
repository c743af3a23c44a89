"""Embed item texts with a sentence-transformers model: PyTorch (on a GPU when there is one) or OpenVINO on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from newsletter_pipeline.embedding import openvino_backend
from newsletter_pipeline.embedding.weights import DEFAULT_MODEL, resolve_model_path

if TYPE_CHECKING:  # sentence-transformers pulls in torch: import it only when a model is loaded.
    from sentence_transformers import SentenceTransformer

BACKENDS = ("torch", "openvino", "openvino-int8")
DEVICES = ("auto", "cpu", "cuda")
# Texts per forward pass when none is configured: 64 keeps a CPU busy without padding waste; a GPU wants more.
CPU_BATCH, GPU_BATCH = 64, 256


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ValueError("device 'cuda' was configured but torch sees no CUDA GPU; set device to 'auto' or 'cpu'")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def load_model(
    model: str = DEFAULT_MODEL, device: str = "auto", *, allow_download: bool = False, fp16_on_cuda: bool = True
) -> SentenceTransformer:
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
    vectors = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


PROGRESS_STEP = 2_048  # texts encoded between two progress reports on a long day (about 30 s on 2 CPU cores)


def encode_with_progress(
    encoder: Encoder, texts: list[str], batch_size: int, report: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """`encoder.encode(texts)`, in steps of PROGRESS_STEP texts when there are more, calling `report(done, total)`
    after each step and showing a progress bar when stderr is a terminal. Short inputs go in one call."""
    if report is None or len(texts) <= PROGRESS_STEP:
        return encoder.encode(texts, batch_size)
    import sys

    from tqdm import tqdm

    parts = []
    with tqdm(total=len(texts), unit="text", desc="embedding", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, len(texts), PROGRESS_STEP):
            parts.append(encoder.encode(texts[start : start + PROGRESS_STEP], batch_size))
            done = min(start + PROGRESS_STEP, len(texts))
            bar.update(done - start)
            report(done, len(texts))
    return np.concatenate(parts)


class Encoder(Protocol):
    """What the pipeline needs of a model: unit-length float32 vectors, their dimension, and where it runs."""

    dimension: int
    device: str

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, encoded `batch_size` texts at a time."""
        ...


@dataclass
class TorchEncoder:
    """sentence-transformers on PyTorch, on the CPU or a CUDA GPU (float16 there)."""

    model: SentenceTransformer

    @property
    def dimension(self) -> int:
        """Length of the model's vectors."""
        return self.model.get_embedding_dimension()

    @property
    def device(self) -> str:
        """Where the model runs: cpu, cuda or cuda:N."""
        return str(self.model.device)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """See Encoder.encode."""
        return embed_texts(self.model, texts, batch_size)


def variant_name(backend: str, device: str = "auto", fp16_on_cuda: bool = True) -> str:
    """Backend and precision, e.g. "torch-fp32": the vectors of two variants differ in their last digits, so the
    embedding cache keeps them apart. Worked out from the settings, without loading the model."""
    if backend not in BACKENDS:
        raise ValueError(f"embedding backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend != "torch":
        return f"openvino-{openvino_backend.precision(int8=backend == 'openvino-int8')}"
    # 'cpu' needs no torch import; 'auto' asks torch whether there is a GPU.
    return "torch-fp16" if fp16_on_cuda and device != "cpu" and resolve_device(device) == "cuda" else "torch-fp32"


def load_encoder(
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    backend: str = "torch",
    *,
    model_cache_dir: str,
    allow_download: bool = False,
    fp16_on_cuda: bool = True,
) -> Encoder:
    """The configured encoder. OpenVINO runs on the CPU from a model exported once into `model_cache_dir`."""
    if backend not in BACKENDS:
        raise ValueError(f"embedding backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "torch":
        return TorchEncoder(load_model(model, device, allow_download=allow_download, fp16_on_cuda=fp16_on_cuda))
    if device == "cuda":
        raise ValueError(
            f"backend {backend!r} runs on the CPU; set device to 'auto' or 'cpu', or the backend to 'torch' for CUDA"
        )
    return openvino_backend.openvino_encoder(
        resolve_model_path(model), model_cache_dir, int8=backend == "openvino-int8"
    )


def default_batch_size(device: str) -> int:
    """Texts per forward pass when none is configured: CPU_BATCH on a CPU, GPU_BATCH on CUDA."""
    return GPU_BATCH if device.startswith("cuda") else CPU_BATCH
