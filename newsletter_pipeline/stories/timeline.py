"""Draw the stories of a look-back window as a timeline (PNG bytes): days across, one row per story."""

from __future__ import annotations

import io

import pandas as pd

MAX_ROWS = 30  # more rows than this make labels unreadable: the stories seen most recently are kept


def timeline_png(history: pd.DataFrame, days: list[str], title: str) -> bytes:
    """A row per story (newest first seen at the top), a marker on each day it was seen, sized by its items.

    Args:
        history: One row per story and day it was seen: story_id, day, items (tracking.daily_counts).
        days: the days across, oldest first (days without stories keep their column).
        title: the plot's title.

    Returns:
        The PNG file's bytes.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    seen = history.groupby("story_id")["day"].agg(["min", "max"])
    stories = seen.sort_values(["max", "min"], ascending=False).index[:MAX_ROWS].tolist()
    stories = sorted(stories, key=lambda s: (seen.loc[s, "min"], s))
    row = {story: n for n, story in enumerate(reversed(stories))}
    column = {day: n for n, day in enumerate(days)}
    shown = history[history["story_id"].isin(row) & history["day"].isin(column)]

    figure, axes = plt.subplots(figsize=(7, 1.2 + 0.25 * max(len(stories), 1)), dpi=80)
    if len(stories):
        # A story on one day only stays grey: a reader follows the ones that continue.
        days_seen = shown.groupby("story_id")["day"].nunique()
        colours = ["#1f77b4" if days_seen.get(s, 0) > 1 else "#b0b0b0" for s in shown["story_id"]]
        axes.scatter(
            shown["day"].map(column), shown["story_id"].map(row), s=20 + 12 * shown["items"], c=colours, zorder=2
        )
        for story, y in row.items():
            first, last = (column.get(d) for d in seen.loc[story, ["min", "max"]])
            if first is not None and last is not None:
                axes.plot([first, last], [y, y], color="#d0d0d0", linewidth=1, zorder=1)
    axes.set_yticks(list(row.values()), list(row), fontsize=6)
    axes.set_xticks(range(len(days)), [day[5:] for day in days], fontsize=7)
    axes.set_xlim(-0.5, len(days) - 0.5)
    axes.set_ylim(-0.8, max(len(stories), 1) - 0.2)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
