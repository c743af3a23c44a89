"""Benchmark: deduplicating 1,000 items (target: under 10 ms). Run: .venv/bin/python -m benchmarks.dedupe

Items are real HuffPost records from ../shared/datasets when present (with a share of them repeated
under tracked links, other sources' ids and re-cased headlines), else synthetic ones; the output says which.
"""

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from newsletter_pipeline.items.dedupe import find_duplicates
from newsletter_pipeline.items.parse import ITEM_COLUMNS, normalize_record

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "huffpost_news_category_v3_10k.jsonl"


def sample_items(n: int = 1_000) -> tuple[pd.DataFrame, str]:
    if DATASET.exists():
        records = [json.loads(line) for line in DATASET.open()][: int(n * 0.8)]
        origin = f"{int(n * 0.8)} HuffPost records"
    else:
        records = [
            {"headline": f"Story number {i}", "link": f"https://x.test/{i}", "date": "2024-01-01"}
            for i in range(int(n * 0.8))
        ]
        origin = f"{int(n * 0.8)} synthetic records"
    # A fifth of the items repeat earlier ones, the way newsletters do: tracked links, re-cased headlines.
    repeats = [dict(r, link=r["link"] + "?utm_source=newsletter") for r in records[: n // 10]]
    repeats += [dict(r, link="", headline=r["headline"].upper()) for r in records[n // 10 : n // 5]]
    rows = [normalize_record(r, "bench", f"bench.jsonl:{i}") for i, r in enumerate(records + repeats)]
    return pd.DataFrame(rows, columns=ITEM_COLUMNS), f"{origin} + {len(repeats)} repeats"


def main() -> int:
    items, origin = sample_items()
    times = []
    for _ in range(30):
        start = time.perf_counter()
        keep, duplicates = find_duplicates(items)
        times.append((time.perf_counter() - start) * 1000)
    print(f"dedupe of {len(items)} items ({origin}): {len(duplicates)} duplicates found")
    print(f"median {statistics.median(times):.2f} ms, min {min(times):.2f} ms, max {max(times):.2f} ms over 30 runs")
    print(f"python {platform.python_version()}, pandas {pd.__version__}, {platform.machine()}")
    return 0 if statistics.median(times) < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
