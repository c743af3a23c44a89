"""Embed item texts with a sentence-transformers model: PyTorch (on a GPU when there is one) or OpenVINO on the CPU."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from newsletter_pipeline.embedding import openvino_backend
from newsletter_pipeline.embedding.weights import DEFAULT_MODEL, resolve_model_path

if TYPE_CHECKING:  # sentence-transformers pulls in torch: import it only when a model is loaded.
    from sentence_transformers import SentenceTransformer

BACKENDS = ("auto", "torch", "openvino", "openvino-int8")
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


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"embedding backend must be one of {', '.join(BACKENDS)}; got {backend!r}")


def _may_have_cuda() -> bool:
    """False where no NVIDIA driver is loaded (native Linux or WSL), so a CPU machine answers without importing torch,
    which costs about 2 s: a run whose vectors are all cached never needs it."""
    return any(os.path.exists(path) for path in ("/proc/driver/nvidia/version", "/dev/dxg")) or os.name != "posix"


@dataclass(frozen=True)
class BackendChoice:
    """The backend that embeds (torch, openvino or openvino-int8) and why, for the run log; `fallback` when "auto"
    wanted OpenVINO and could not have it."""

    backend: str
    reason: str
    fallback: bool = False


def choose_backend(backend: str, device: str, model: str, model_cache_dir: str) -> BackendChoice:
    """A configured backend as it is; "auto" (the default): OpenVINO on the CPU, the fastest that keeps the vectors
    (cosine to PyTorch's 0.9999 and up, the clusters' quality the same: benchmarks/README.md), else PyTorch.

    OpenVINO's model is exported from the weights on the first run on a machine (about 15 s, paid even when every
    text of the day is in the embedding cache, since the choice names the cache's variant) and reused after. Where it
    cannot be imported or exported, or on a CUDA GPU (PyTorch in float16 is faster there), PyTorch embeds instead.
    Loading the exported model is not tried here: a failure there stops the step with OpenVINO's own error."""
    _check_backend(backend)
    if backend != "auto":
        return BackendChoice(backend, "configured")
    if device == "cuda" or (device == "auto" and _may_have_cuda() and resolve_device(device) == "cuda"):
        return BackendChoice("torch", "auto: a CUDA GPU, so PyTorch")
    try:
        openvino_backend.export_model(resolve_model_path(model), model_cache_dir)
        precision = openvino_backend.precision()
    except Exception as error:  # noqa: BLE001 - any failure means the same: embed with PyTorch, and say why
        said = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""  # one log line, not a dump
        reason = f"auto: PyTorch, since OpenVINO cannot run here ({type(error).__name__}: {said})"
        return BackendChoice("torch", reason, fallback=True)
    return BackendChoice("openvino", f"auto: OpenVINO runs on this CPU, in {precision}")


def variant_name(backend: str, device: str = "auto", fp16_on_cuda: bool = True) -> str:
    """Backend and precision, e.g. "torch-fp32": the vectors of two variants differ in their last digits, so the
    embedding cache keeps them apart. Worked out from the settings (a chosen backend, not "auto"), without loading the
    model."""
    _check_backend(backend)
    if backend == "auto":
        raise ValueError("variant_name takes the chosen backend (choose_backend), not 'auto'")
    if backend != "torch":
        return f"openvino-{openvino_backend.precision(int8=backend == 'openvino-int8')}"
    # 'cpu' needs no torch import; 'auto' asks torch whether there is a GPU.
    return "torch-fp16" if fp16_on_cuda and device != "cpu" and resolve_device(device) == "cuda" else "torch-fp32"


def load_encoder(
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    backend: str = "auto",
    *,
    model_cache_dir: str,
    allow_download: bool = False,
    fp16_on_cuda: bool = True,
) -> Encoder:
    """The configured encoder ("auto" as choose_backend decides). OpenVINO runs on the CPU from a model exported once
    into `model_cache_dir`."""
    backend = choose_backend(backend, device, model, model_cache_dir).backend
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
