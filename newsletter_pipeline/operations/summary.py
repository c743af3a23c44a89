"""Print what a run left behind: the workbook's clusters per day, with their stories, and where every output lives."""

import sys
from pathlib import Path

from newsletter_pipeline.config import load_config
from newsletter_pipeline.publishing.export import UnreadableWorkbook, read_layout


def _shown(location: str) -> str:
    return location if "://" in location else str(Path(location).resolve())


def main() -> int:
    config = load_config()
    workbook = Path(config.get("NEWSLETTER_WORKBOOK"))
    if not workbook.exists():
        print(f"No workbook at {workbook}: materialize sheet_export for a day first.", file=sys.stderr)
        return 1
    try:
        tabs = read_layout(workbook)
    except UnreadableWorkbook as error:  # the message names the file and what to do
        print(error, file=sys.stderr)
        return 1
    header, *rows = tabs["clusters"]
    day, size, label = header.index("day"), header.index("size"), header.index("label")
    story, days_active, trend = header.index("story_id"), header.index("days_active"), header.index("trend")
    print(f"Workbook: {workbook.resolve()}  (tabs: {', '.join(tabs)}; {len(tabs['items']) - 1} item rows)")
    for current in sorted({row[day] for row in rows}):
        print(f"\n{current}")
        for row in (r for r in rows if r[day] == current):
            # Rows exported before layout v3 have no story.
            told = (
                f"  [story {row[story]}, {row[days_active]} day{'s' if row[days_active] != 1 else ''}, {row[trend]}]"
                if row[story]
                else ""
            )
            print(f"  {row[size]:>3} items  {row[label]}{told}")
    print(f"\nParquet outputs: {_shown(config.get('NEWSLETTER_OUTPUT_ROOT'))}/<table>/<YYYY-MM-DD>.parquet")
    print("UI: make ui   (then open http://127.0.0.1:3000 and look at the asset graph, checks and plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
