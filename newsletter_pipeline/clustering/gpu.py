"""cuML (RAPIDS) runs UMAP and HDBSCAN on a CUDA GPU when it is installed (the `gpu` extra); the CPU libraries
otherwise."""

from __future__ import annotations

import functools

ACCELERATORS = ("auto", "cpu", "cuml")


@functools.cache
def cuml_available() -> bool:
    """cuML imports and CUDA shows a device: both, or the CPU libraries run."""
    try:
        import cuml  # noqa: F401
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # not installed, no driver, no device: all mean "run on the CPU"
        return False


def use_cuml(accelerator: str) -> bool:
    """'auto': cuML when available; 'cpu': never; 'cuml': required, an error without it."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"clustering accelerator must be one of {', '.join(ACCELERATORS)}; got {accelerator!r}")
    if accelerator == "cpu":
        return False
    if accelerator == "cuml" and not cuml_available():
        raise ValueError(
            "clustering accelerator 'cuml' was configured but cuML or a CUDA GPU is missing: install the gpu extra "
            "(pip install '.[gpu]') on a machine with CUDA, or set NEWSLETTER_CLUSTER_ACCELERATOR to auto or cpu"
        )
    return cuml_available()
