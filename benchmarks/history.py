"""History benchmark (issue 15, item 6): a day's cost with 1 and with 365 days of files in the landing folder.

    .venv/bin/python -m benchmarks.history                  # raw_items step, about 15 minutes on 2 cores
    .venv/bin/python -m benchmarks.history --whole          # and the whole day (every asset), about 5 more
    .venv/bin/python -m benchmarks.history --carried 0.05   # a twentieth of each day repeats the day before

One landing file per day, each of `--items` HuffPost records (../shared/datasets) re-dated to its day, with links of
its own; with `--carried`, that share of them repeats the day before's (same link: a duplicate across files and days,
as newsletters repeat stories). The day measured is the last one; with 365 days the 364 before it are in the landing
folder too.

- cold: the day's file has just landed and the day has no outputs. With the index, the other files are in it (an
  earlier day's run made it), as on any day but the first; with 1 day there is no index at all.
- warm: the same day again, nothing changed.
- before: `parse_all` (raw_items' run config), every file parsed as before the landing index.
- first run: 365 days and no index yet: every file parsed once to make it (once per deployment, or after a change of
  the parsing code or settings).

Every run is a fresh process through `dg.materialize`, as a Dagster run is; the step time is raw_items' own (its
STEP_START to STEP_SUCCESS events), the process time adds interpreter start-up, imports and Dagster's run set-up.
Times are medians, with their range. Results go to stdout as Markdown; benchmarks/README.md keeps the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed import REPO, huffpost_records, timed_worker

DAY = "2026-01-15"


def days_up_to(last: str, count: int) -> list[str]:
    end = dt.date.fromisoformat(last)
    return [(end - dt.timedelta(days=count - 1 - n)).isoformat() for n in range(count)]


def day_records(records: list[dict], days: list[str], n: int, items: int, carried: float = 0.0) -> list[dict]:
    """The n-th day's records: its own share of HuffPost (links unique to the day), then a share (`carried`) of the
    day before's again."""

    def own(k: int) -> list[dict]:
        start = (k * items) % len(records)
        rows = [records[(start + i) % len(records)] for i in range(items)]
        return [
            {**r, "date": f"{days[k]}T{6 + i % 12:02d}:{i % 60:02d}:00Z", "link": f"{r['link']}/{days[k]}"}
            for i, r in enumerate(rows)
        ]

    today = own(n)
    again = own(n - 1)[: round(items * carried)] if n else []  # the same stories as the day before, sent again
    return today[: items - len(again)] + [{**r, "date": f"{days[n]}T20:00:00Z"} for r in again]


def write_day(landing: Path, days: list[str], n: int, records: list[dict], items: int, carried: float) -> None:
    landing.mkdir(parents=True, exist_ok=True)
    with open(landing / f"news-{days[n]}.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in day_records(records, days, n, items, carried))


# --- the worker: one Dagster run in this process --------------------------------------------------------------


def worker(args) -> None:
    """Materialize raw_items (or every asset) for one day in this process; print its figures as JSON."""
    started = time.perf_counter()
    pauses: list[tuple[float, float, int]] = []  # the collector's pauses: wall time at start, seconds, generation

    def collected(phase: str, info: dict, begun: list = [0.0]) -> None:  # noqa: B006 (the pause's start)
        if phase == "start":
            begun[0] = time.time()
        else:
            pauses.append((begun[0], time.time() - begun[0], info["generation"]))

    gc.callbacks.append(collected)
    import dagster as dg

    from newsletter_pipeline.definitions import defs
    from newsletter_pipeline.defs.assets.items import raw_items
    from newsletter_pipeline.defs.resources import resources_from_env

    resources = resources_from_env(
        {
            "NEWSLETTER_DATA_DIR": args.data,
            "NEWSLETTER_EMBED_DEVICE": "cpu",
            "NEWSLETTER_CLUSTER_ACCELERATOR": "cpu",
            "NEWSLETTER_MODEL_CACHE_DIR": str(REPO / "data" / "cache" / "models"),
        }
    )
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        list(defs.assets) if args.whole else [raw_items],
        resources=resources,
        instance=instance,
        partition_key=args.day,
        raise_on_error=True,
        run_config={"ops": {"raw_items": {"config": {"parse_all": args.parse_all}}}},
    )
    steps: dict[str, dict[str, float]] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
            steps.setdefault(event.step_key, {})[event.event_type_value] = entry.timestamp
    step = steps["raw_items"]
    in_step = [
        (seconds, generation) for at, seconds, generation in pauses if step["STEP_START"] <= at <= step["STEP_SUCCESS"]
    ]
    metadata = next(m.metadata for m in result.asset_materializations_for_node("raw_items"))
    figures = {k: metadata[k].value for k in ("landing_files", "files_parsed", "records", "items") if k in metadata}
    print(
        json.dumps(
            {
                "seconds": round(time.perf_counter() - started, 3),
                "step_seconds": round(step["STEP_SUCCESS"] - step["STEP_START"], 4),
                # Python's garbage collector runs when allocations add up, wherever it falls: its full collections
                # (generation 2) take about 0.1 s in a Dagster process, and land in a step or not.
                "step_gc_seconds": round(sum(seconds for seconds, _ in in_step), 4),
                "step_full_collections": sum(generation == 2 for _, generation in in_step),
                **figures,
            }
        )
    )


def run_worker(data: Path, day: str, parse_all: bool, whole: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.history", "--worker", "--data", str(data), "--day", day]
    command += ["--parse-all"] if parse_all else []
    command += ["--whole"] if whole else []
    return timed_worker(command, f"{data}, {day}")


# --- the measurement --------------------------------------------------------------------------------------------


class History:
    """A data folder whose landing holds `count` days ending at DAY; the last day's file can be taken away and put
    back (new), and the index as an earlier day's run left it restored."""

    INDEX = Path("outputs") / "landing_index" / "files.parquet"

    def __init__(self, root: Path, count: int, records: list[dict], items: int, carried: float):
        self.root, self.days, self.records, self.items = root, days_up_to(DAY, count), records, items
        self.carried = carried
        shutil.rmtree(root, ignore_errors=True)
        for n in range(count - 1):
            write_day(root / "landing", self.days, n, records, items, carried)
        (root / "landing").mkdir(parents=True, exist_ok=True)
        self.saved_index = None
        if count > 1:  # an earlier day's run indexed the other files
            run_worker(root, self.days[-2], parse_all=False, whole=False)
            self.saved_index = root.parent / f"index-{count}.parquet"
            shutil.copy2(root / self.INDEX, self.saved_index)

    def new_day(self, index: bool = True) -> None:
        """The state before the day: no outputs but the earlier index, the day's file written now."""
        shutil.rmtree(self.root / "outputs", ignore_errors=True)
        if index and self.saved_index:
            (self.root / self.INDEX).parent.mkdir(parents=True)
            shutil.copy2(self.saved_index, self.root / self.INDEX)
        write_day(self.root / "landing", self.days, len(self.days) - 1, self.records, self.items, self.carried)


def measure(histories: dict[int, History], repeats: int, before_repeats: int, whole: bool) -> dict:
    """Cold and warm runs of the day, before and with the index, for each history; the order turns each round."""
    runs: dict[tuple, list[dict]] = {}
    for round_ in range(max(repeats, before_repeats)):
        order = [(count, True) for count in histories if round_ < before_repeats]
        order += [(count, False) for count in histories if round_ < repeats]
        for count, parse_all in order[round_ % len(order) :] + order[: round_ % len(order)]:
            history = histories[count]
            history.new_day()
            for state in ("cold", "warm"):
                figures = run_worker(history.root, DAY, parse_all, whole)
                runs.setdefault((count, parse_all, state), []).append(figures)
        print(f"round {round_ + 1} done", file=sys.stderr, flush=True)
    return runs


def first_runs(history: History, repeats: int) -> list[dict]:
    """The day with no index at all: every file parsed to make it."""
    runs = []
    for _ in range(repeats):
        history.new_day(index=False)
        runs.append(run_worker(history.root, DAY, parse_all=False, whole=False))
    return runs


def table(runs: dict, counts: list[int], key: str, label: str) -> list[str]:
    """Medians, with the range of the runs, and the ratio of the medians; for the step, the same without the garbage
    collector's pauses that fell in it."""

    def cell(count, parse_all, state, figure) -> tuple[float, str]:
        values = [figure(r) for r in runs[(count, parse_all, state)]]
        middle = statistics.median(values)
        return middle, f"{middle:.3f} ({min(values):.3f}-{max(values):.3f})"

    figures = [(label, lambda r: r[key])]
    if key == "step_seconds":
        figures.append(("without GC pauses", lambda r: r["step_seconds"] - r["step_gc_seconds"]))
    low, high = counts
    header = " | ".join(f"{name}: {low} day s | {high} days s | {high} / {low}" for name, _ in figures)
    lines = [f"| runs | {header} |", "|---|" + "---|---|---|" * len(figures)]
    for parse_all, mode in ((True, "before (parse every file)"), (False, "with the landing index")):
        for state in ("cold", "warm"):
            cells = []
            for _, figure in figures:
                (a, first), (b, second) = cell(low, parse_all, state, figure), cell(high, parse_all, state, figure)
                cells.append(f"{first} | {second} | {b / a:.2f}")
            n = len(runs[(low, parse_all, state)])
            gcs = "/".join(
                str(sum(r["step_full_collections"] > 0 for r in runs[(count, parse_all, state)])) for count in counts
            )
            note = f"{n} runs" + (f"; with a full GC: {gcs}" if key == "step_seconds" else "")
            lines.append(f"| {state}, {mode} ({note}) | {' | '.join(cells)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", default="1,365", help="two history lengths, comma-separated")
    parser.add_argument("--items", type=int, default=300, help="items a day")
    parser.add_argument("--repeats", type=int, default=9, help="runs of each kind with the index")
    parser.add_argument("--before-repeats", type=int, default=3, help="runs of each kind before the index")
    parser.add_argument(
        "--carried", type=float, default=0.0, help="share of each day's items that repeat the day before's (0.05: 5%%)"
    )
    parser.add_argument("--whole", action="store_true", help="also the whole day (every asset), fewer repeats")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data"), parser.add_argument("--day"), parser.add_argument("--parse-all", action="store_true")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    counts = [int(c) for c in args.days.split(",")]
    records = huffpost_records()
    print(
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"{args.items} items a day ({args.carried:.0%} of them the day before's again), one file a day, the day {DAY}; "
        f"medians of {args.repeats} runs ({args.before_repeats} before the index)\n"
    )
    with tempfile.TemporaryDirectory(prefix="history-") as folder:
        work = Path(folder)
        histories = {
            count: History(work / f"days-{count}", count, records, args.items, args.carried) for count in counts
        }
        runs = measure(histories, args.repeats, args.before_repeats, whole=False)
        sample = runs[(counts[1], False, "warm")][-1]
        print(
            f"raw_items with {counts[1]} days, warm: {sample['landing_files']} files listed, "
            f"{sample['files_parsed']} parsed; the day: {sample['records']} records, {sample['items']} items\n"
        )
        print("### raw_items step (its events)\n", *table(runs, counts, "step_seconds", "raw_items step"), "", sep="\n")
        print("### raw_items run, whole process\n", *table(runs, counts, "process_seconds", "process"), "", sep="\n")
        first = first_runs(histories[counts[1]], args.before_repeats)
        print(
            f"first run with {counts[1]} days and no index: step "
            f"{statistics.median(r['step_seconds'] for r in first):.2f} s, process "
            f"{statistics.median(r['process_seconds'] for r in first):.2f} s ({len(first)} runs)\n"
        )
        if args.whole:
            whole = measure(histories, max(1, args.repeats // 3), max(1, args.before_repeats // 3), whole=True)
            print("### whole day, every asset\n", *table(whole, counts, "process_seconds", "process"), "", sep="\n")
            print("### whole day: raw_items step\n", *table(whole, counts, "step_seconds", "step"), "", sep="\n")


if __name__ == "__main__":
    main()
