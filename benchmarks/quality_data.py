"""The labelled sets of the quality benchmark, and their embeddings (computed once, then read from a cache).

- HuffPost: the items of each full week (Monday to Sunday) of May 2018, labelled by `category`.
- AG News: the test split shuffled with a fixed seed and cut into synthetic days of 500 to 2,000 items,
  labelled by class.
- Held out (the defaults were not tuned on them): HuffPost two-month windows of a similar size (June-July
  and October-November 2018, about 4 to 6 items a day), and AG News cut with another shuffle seed.
Texts are what the pipeline embeds (embedding.embed.item_texts after items.parse.normalize_record).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from newsletter_pipeline.embedding import embed
from newsletter_pipeline.embedding.embed import DEFAULT_MODEL, embed_texts, item_texts, load_model
from newsletter_pipeline.items.parse import ITEM_COLUMNS, normalize_record

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
HUFFPOST = DATASETS / "huffpost_news_category_v3_10k.jsonl"
AG_NEWS = DATASETS / "ag_news_test.csv"
CACHE = Path(__file__).resolve().parent / ".cache"
MODEL_CACHE = Path(__file__).resolve().parents[1] / "data" / "cache" / "models"  # the pipeline's default
# The backend the benchmarks embed with: "torch", the reference (the default), or another, as `--backend` says.
BACKEND = {"name": "torch"}


def use_backend(name: str) -> str:
    """Embed with `name` ("auto" as the pipeline decides it); returns the variant the vectors come from."""
    BACKEND["name"] = embed.choose_backend(name, "cpu", DEFAULT_MODEL, str(MODEL_CACHE)).backend
    return embed.variant_name(BACKEND["name"], "cpu")


# Full weeks of May 2018 (Mondays): 379, 348 and 332 items.
HUFFPOST_WEEKS = ["2018-05-07", "2018-05-14", "2018-05-21"]
AG_NEWS_DAY_SIZES = [500, 800, 1_200, 1_500, 2_000, 1_600]  # 7,600 items: the whole test split
HUFFPOST_HELD_OUT = {"June-July 2018": ("2018-06", "2018-07"), "October-November 2018": ("2018-10", "2018-11")}
AG_NEWS_HELD_OUT_SIZES, AG_NEWS_HELD_OUT_SEED = [500, 1_000, 2_000], 1
AG_NEWS_CLASSES = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}


@dataclass(frozen=True)
class LabelledSet:
    """One benchmark input: items as the pipeline sees them, their true labels and their embeddings."""

    family: str  # "huffpost-week" or "agnews-day"
    name: str
    items: pd.DataFrame
    labels: np.ndarray
    embeddings: np.ndarray


def available() -> bool:
    return HUFFPOST.exists() and AG_NEWS.exists()


def _frame(records: list[dict], source: str) -> pd.DataFrame:
    rows = [normalize_record(r, source, f"{source}:{i}") for i, r in enumerate(records)]
    return pd.DataFrame(rows, columns=ITEM_COLUMNS)


def _huffpost(months: tuple[str, ...]) -> list[dict]:
    records = [json.loads(line) for line in HUFFPOST.open(encoding="utf-8")]
    return sorted((r for r in records if r["date"][:7] in months), key=lambda r: (r["date"], r["link"]))


def huffpost_held_out() -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """The held-out HuffPost windows: the items, their categories, and the rows of each window."""
    records = _huffpost(tuple(m for months in HUFFPOST_HELD_OUT.values() for m in months))
    months = np.array([r["date"][:7] for r in records])
    windows = {name: np.flatnonzero(np.isin(months, list(window))) for name, window in HUFFPOST_HELD_OUT.items()}
    return _frame(records, "huffpost"), np.array([r["category"] for r in records]), windows


def huffpost_sets() -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """May 2018: the items, their categories, and the rows of each full week and of each day."""
    records = _huffpost(("2018-05",))
    dates = np.array([r["date"] for r in records])
    weeks = {}
    for monday in HUFFPOST_WEEKS:
        start = dt.date.fromisoformat(monday)
        days = [(start + dt.timedelta(days=i)).isoformat() for i in range(7)]
        weeks[f"week of {monday}"] = np.flatnonzero(np.isin(dates, days))
    days = {day: np.flatnonzero(dates == day) for day in sorted(set(dates))}
    return _frame(records, "huffpost"), np.array([r["category"] for r in records]), weeks, days


def agnews_sets(
    seed: int = 0, sizes: list[int] = AG_NEWS_DAY_SIZES
) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """The AG News test split, its classes, and the rows of each synthetic day (a fixed shuffle cut into sizes)."""
    with AG_NEWS.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # AG News has no dates or links: give each item a fixed date and a unique link so it parses as an item.
    records = [
        {
            "headline": r["title"],
            "short_description": r["description"],
            "date": "2024-01-01",
            "link": f"https://agnews.test/{i}",
        }
        for i, r in enumerate(rows)
    ]
    order = np.random.default_rng(seed).permutation(len(rows))
    days, start = {}, 0
    for number, size in enumerate(sizes, start=1):
        days[f"day {number} ({size:,} items)"] = np.sort(order[start : start + size])
        start += size
    return _frame(records, "agnews"), np.array([AG_NEWS_CLASSES[r["label"]] for r in rows]), days


def _cache_path(texts: list[str], model_name: str, variant: str) -> Path:
    device = "cpu" if variant == "torch-fp32" else f"cpu {variant}"  # the torch files keep their earlier names
    return CACHE / f"{hashlib.sha256(chr(10).join([model_name, device, *texts]).encode()).hexdigest()[:16]}.npy"


def cached_embeddings(texts: list[str], model_name: str = DEFAULT_MODEL) -> np.ndarray:
    """Embeddings from the pipeline's own embedding code on the CPU with the BACKEND, cached by model, variant and the
    exact texts."""
    backend = BACKEND["name"]
    path = _cache_path(texts, model_name, embed.variant_name(backend, "cpu"))
    if path.exists():
        return np.load(path)
    if backend == "torch":
        vectors = embed_texts(load_model(model_name, device="cpu"), texts)
    else:
        encoder = embed.load_encoder(model_name, "cpu", backend, model_cache_dir=str(MODEL_CACHE))
        vectors = encoder.encode(texts, embed.CPU_BATCH)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), vectors)
    path.with_suffix(".tmp.npy").replace(path)
    return vectors


def load_sets(with_days: bool = False) -> list[LabelledSet]:
    """Every benchmark set with its embeddings (each source embedded once, then cached).

    With `with_days`, also each single day of HuffPost's May 2018 (family "huffpost-day"), the size the
    pipeline meets every day, for the distributions behind the quality-check thresholds."""
    huffpost, categories, weeks, days = huffpost_sets()
    agnews, classes, synthetic_days = agnews_sets()
    held_out, held_out_categories, windows = huffpost_held_out()
    _, _, held_out_days = agnews_sets(AG_NEWS_HELD_OUT_SEED, AG_NEWS_HELD_OUT_SIZES)
    sets = []
    for family, items, labels, parts in (
        ("huffpost-week", huffpost, categories, weeks),
        ("agnews-day", agnews, classes, synthetic_days),
        ("huffpost-held-out", held_out, held_out_categories, windows),
        ("agnews-held-out", agnews, classes, held_out_days),
        *([("huffpost-day", huffpost, categories, days)] if with_days else []),
    ):
        vectors = cached_embeddings(item_texts(items))
        sets += [
            LabelledSet(family, name, items.iloc[rows].reset_index(drop=True), labels[rows], vectors[rows])
            for name, rows in parts.items()
        ]
    return sets
