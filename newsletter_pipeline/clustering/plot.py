"""Draw a day's clusters as a 2-D scatter plot (PNG bytes)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from newsletter_pipeline.clustering.cluster import NOISE


def cluster_scatter_png(plot_xy: np.ndarray, labels: np.ndarray, summaries: pd.DataFrame, title: str) -> bytes:
    """Noise in grey, each cluster in its own colour, labelled at its centre with its id and keywords."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5), dpi=80)
    noise = labels == NOISE
    axes.scatter(plot_xy[noise, 0], plot_xy[noise, 1], s=10, c="#c8c8c8", label="noise")
    colours = plt.get_cmap("tab20")
    label_of = dict(zip(summaries["cluster_id"], summaries["label"], strict=True)) if len(summaries) else {}
    for cluster_id in sorted(set(labels.tolist()) - {NOISE}):
        points = plot_xy[labels == cluster_id]
        axes.scatter(points[:, 0], points[:, 1], s=16, color=colours(cluster_id % 20))
        centre = points.mean(axis=0)
        text = f"{cluster_id}: {label_of.get(cluster_id, '')}"[:40]
        axes.annotate(text, centre, fontsize=7, ha="center", weight="bold")
    axes.set_title(title, fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
