"""The landing index: what each landing file holds, so that a run parses only the files its days need.

A year of landing files would otherwise make every day parse the whole year. The index keeps, per file (by name and
stamp, `LandingFile.stamp`): the days of its items and of its quarantined records, the day and the hashed dedupe keys
(`dedupe.item_keys`) of each item, its record count and its records of no day. It lives beside the outputs, as one
Parquet file written atomically (`<output root>/landing_index/files.parquet`), with the fingerprint of what parsing
depends on (settings and code) in its metadata.

A run parses the files that are new or changed since the index was written (and updates it), then the files that hold
its days or an item dated outside the partitions, and the files of every item that shares a dedupe key with an item
of its days, or with such an item in turn, until none is added. `find_duplicates` decides an item by the earlier
items that share a key with it, and theirs in turn; a later day's items come after every item of the run's days and
decide nothing for them, so they are left out of that closure. The decisions for the run's days are then exactly
those of parsing every file. The records of no day of the files left out come from the index. The result is that of
`parse.parse_landing` over every file, for the run's days and for the records of no day.

Correctness never rests on the index: a missing, unreadable or foreign one (another fingerprint) means parsing every
file, and writing it anew. A stamp is trusted as the landing sensor trusts it: a file rewritten with the same size
and modification time (or ETag) is taken as unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import platform
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from newsletter_pipeline.items import parse
from newsletter_pipeline.items.dedupe import DUPLICATE_COLUMNS, item_keys
from newsletter_pipeline.landing.listing import LandingFile
from newsletter_pipeline.storage import ParquetStore, code_fingerprint, fingerprint

INDEX_TABLE, INDEX_NAME = "landing_index", "files"  # <output root>/landing_index/files.parquet
# What a file's index entry is made from besides the file and the settings: entries made by other code are not used.
_PARSE_CODE = (
    (
        "newsletter_pipeline.items.parse",
        "newsletter_pipeline.items.dedupe",
        __name__,
        "newsletter_pipeline.landing.listing",
        "newsletter_pipeline.landing.formats",
        "newsletter_pipeline.landing.readers",
        "newsletter_pipeline.landing.feeds",
        "newsletter_pipeline.landing.mail",
        "newsletter_pipeline.text",
    ),
    ("feedparser", "selectolax", "pandas", "pyarrow"),
)
_DAY, _COUNT, _ITEM, _KEY = np.dtype("<u2"), np.dtype("u1"), np.dtype("<u4"), np.dtype("<i8")
# One row per file. The index is handled as Arrow columns, never as Python objects per file: a year of files costs
# a run a few milliseconds, and no more garbage for Python's collector than a day does.
SMALL = pa.schema(
    [
        ("name", pa.string()),
        ("stamp", pa.string()),
        ("records", pa.int64()),  # records read (`Parsed.records`)
        ("rows", pa.int64()),  # items and quarantined records parse_file made: the balance of a full parse
        ("items", pa.int64()),
        ("item_days", pa.list_(pa.string())),  # every day of its items, those outside the partitions included
        ("reject_days", pa.list_(pa.string())),  # the days of its quarantined records that have one
        ("unassigned_positions", pa.list_(pa.int64())),  # its quarantined records of no day
        ("unassigned_reasons", pa.list_(pa.string())),
        ("warnings", pa.list_(pa.string())),
        # The keys of its items that another item holds too (or did when either was indexed: more only costs a little
        # reading), with the item's index among the file's items and its day (index into item_days); arrays as
        # little-endian bytes. All that choosing files needs: a run that finds nothing changed reads only these.
        ("linked_keys", pa.binary()),
        ("linked_items", pa.binary()),
        ("linked_days", pa.binary()),
    ]
)
# Per item, item after item: its day (index into item_days), its number of keys, and the int64 hashes of all its
# dedupe keys. Read only to update the index: to find what a new file's items share with the others.
LARGE = pa.schema([("item_day", pa.binary()), ("key_counts", pa.binary()), ("keys", pa.binary())])
FULL = pa.schema([*SMALL, *LARGE])
_BITMAP_BITS = 20  # a bitmap of the keys' low bits screens a year of keys in about a millisecond


@dataclass(frozen=True)
class Reading:
    """The landing files as a run needs them, and what it took.

    `parsed` equals `parse.parse_landing` over every file for the run's days (`parse.items_for_day`), for the
    records of no day (rejects whose day is None), for `records` and `warnings`; other days' rows may be missing.
    """

    parsed: parse.Parsed
    balanced: bool  # Parsed.balanced() of a parse of every file
    listed: int
    parsed_files: int  # files read by parse_file in this run
    reindexed: int  # files that were new or changed since the index was written (all of them when it was rebuilt)
    rebuilt: str | None = None  # why every file was parsed: no index, an unreadable one, one of other settings or code
    unsaved: str | None = None  # why the updated index could not be written (the run's result stands)

    @property
    def from_index(self) -> int:
        """Files known from the index alone, not read."""
        return self.listed - self.parsed_files


def index_fingerprint(column_map: dict[str, str] | None, date_format: str | None) -> str:
    """What every entry depends on besides its file: the parse settings, the parsing code and its libraries."""
    return fingerprint(column_map or {}, date_format, platform.python_version(), code_fingerprint(*_PARSE_CODE))


def _hash(key: tuple[str, ...]) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, key)).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def entry_of(file: LandingFile, parsed: parse.Parsed) -> dict:
    """The index row (FULL) of a file from its `parse.parse_file` result, linked to no other file yet (`link`).

    Args:
        file: the landing file, as listed (its stamp is recorded).
        parsed: what `parse.parse_file` made of it.
    """
    items, rejects = parsed.items, parsed.rejects
    columns = (items[c].tolist() for c in ("link", "source", "source_id", "day", "headline"))
    keys = [[_hash(key) for key in item_keys(*row)] for row in zip(*columns)]
    days = items["day"].tolist()
    item_days = sorted(set(days))
    code = {day: n for n, day in enumerate(item_days)}
    no_day = rejects["day"].isna()
    return {
        "name": file.name,
        "stamp": file.stamp,
        "records": parsed.records,
        "rows": len(items) + len(rejects),
        "items": len(items),
        "item_days": item_days,
        "reject_days": sorted(set(rejects.loc[~no_day, "day"])),
        "unassigned_positions": rejects.loc[no_day, "position"].tolist(),
        "unassigned_reasons": rejects.loc[no_day, "reason"].tolist(),
        "warnings": list(parsed.warnings),
        "linked_keys": b"",
        "linked_items": b"",
        "linked_days": b"",
        "item_day": np.array([code[day] for day in days], dtype=_DAY).tobytes(),
        "key_counts": np.array([len(k) for k in keys], dtype=_COUNT).tobytes(),
        "keys": np.array([h for k in keys for h in k], dtype=_KEY).tobytes(),
    }


def _values(column: pa.ChunkedArray | pa.Array, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A binary column of little-endian arrays as one array of all values (no copy), and where each row's values
    start (one more than the rows: the last is the end)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    _, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32)[array.offset : array.offset + len(array) + 1].astype(np.int64)
    if len(array) == 0 or offsets[-1] == offsets[0]:
        return np.zeros(0, dtype=dtype), np.zeros(len(array) + 1, dtype=np.int64)
    if ((offsets - offsets[0]) % dtype.itemsize).any():
        raise ValueError("an array of the landing index is not made of whole values")
    count = (offsets[-1] - offsets[0]) // dtype.itemsize
    values = np.frombuffer(data, dtype=dtype, count=count, offset=int(offsets[0]))  # Arrow aligns its buffers
    return values, (offsets - offsets[0]) // dtype.itemsize


def _flat(column: pa.ChunkedArray | pa.Array, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A binary column of little-endian arrays as one array of all values, and the row of each value."""
    values, starts = _values(column, dtype)
    return values, np.repeat(np.arange(len(starts) - 1), np.diff(starts))


def _list_flat(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """A list column as its values, the row of each, and the index of each row's first value."""
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy()
    return array.flatten(), np.repeat(np.arange(len(array)), np.diff(offsets)), offsets[:-1] - offsets[0]


@contextlib.contextmanager
def _opened(store: ParquetStore) -> Iterator[tuple[pq.ParquetFile | None, str | None]]:
    """The stored index opened once (a run may read it twice: what choosing files needs, then the keys), or None and
    why not."""
    if not store.exists(INDEX_TABLE, INDEX_NAME):
        yield None, "no landing index yet"
        return
    fs, base = store.resolved  # read as ParquetStore.write wrote it, through the file itself: lighter than a dataset
    try:
        source = fs.open_input_file(f"{base}/{INDEX_TABLE}/{INDEX_NAME}.parquet")
    except OSError as error:
        yield None, _unreadable(error)
        return
    with source:
        try:
            parquet = pq.ParquetFile(source)
        except (OSError, ValueError, pa.ArrowException) as error:
            yield None, _unreadable(error)
            return
        yield parquet, None


def _unreadable(error: Exception) -> str:
    return f"the landing index cannot be read ({type(error).__name__}: {str(error)[:200]})"


def _read(opened: tuple[pq.ParquetFile | None, str | None], inputs: str, schema: pa.Schema) -> tuple:
    """The index's columns of `schema`, or None and the reason it cannot be used."""
    parquet, why = opened
    if parquet is None:
        return None, why
    try:
        if (parquet.schema_arrow.metadata or {}).get(b"inputs", b"").decode() != inputs:
            return None, "the landing index was made with other settings or code"
        table = parquet.read(columns=schema.names).select(schema.names).cast(schema)
        _check(table)
        return table, None
    except (OSError, ValueError, KeyError, TypeError, IndexError, pa.ArrowException) as error:  # ArrowInvalid
        return None, _unreadable(error)


def load_index(store: ParquetStore, inputs: str, complete: bool = False) -> tuple[pa.Table | None, str | None]:
    """The stored index (rows in stored order), or None and the reason it cannot be used.

    Args:
        store: the outputs store that holds the index.
        inputs: `index_fingerprint` of this run: an index made with another is not used.
        complete: read every item's day and keys too (FULL, to update the index), not only what choosing files
            needs (SMALL).
    """
    with _opened(store) as opened:
        return _read(opened, inputs, FULL if complete else SMALL)


def _sizes(column: pa.ChunkedArray, dtype: np.dtype) -> np.ndarray:
    """The number of values of each row of a binary column of little-endian arrays."""
    array = column.combine_chunks()
    sizes = np.diff(np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1])
    if (sizes % dtype.itemsize).any():
        raise ValueError("an array of the landing index is not made of whole values")
    return sizes // dtype.itemsize


def _check(table: pa.Table) -> None:
    """Raise ValueError when the index's parts do not fit together (it was damaged)."""
    items = table["items"].to_numpy()
    days = pc.list_value_length(table["item_days"]).to_numpy(zero_copy_only=False)
    sizes = [_sizes(table[name], dtype) for name, dtype in (("linked_keys", _KEY), ("linked_items", _ITEM))]
    linked_days, rows = _flat(table["linked_days"], _DAY)
    fits = all(np.array_equal(size, np.bincount(rows, minlength=len(items))) for size in sizes)
    fits = fits and bool(
        (linked_days < days[rows]).all() and (_flat(table["linked_items"], _ITEM)[0] < items[rows]).all()
    )
    if "keys" in table.column_names and fits:
        counts, starts = _values(table["key_counts"], _COUNT)
        fits = np.array_equal(_sizes(table["item_day"], _DAY), items) and np.array_equal(np.diff(starts), items)
        total = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        fits = fits and np.array_equal(total[starts[1:]] - total[starts[:-1]], _sizes(table["keys"], _KEY))
    if not fits:
        raise ValueError("its parts do not add up")


def save_index(store: ParquetStore, inputs: str, table: pa.Table) -> None:
    """Write a complete index (FULL; one row per name, the first kept) atomically: a run killed meanwhile leaves the
    previous one.

    Args:
        store: the outputs store that holds the index.
        inputs: `index_fingerprint` of the settings and code the rows were made with.
        table: the rows.
    """
    first = {}
    for row, name in enumerate(table["name"].to_pylist()):
        first.setdefault(name, row)
    table = table.take(pa.array(list(first.values()), pa.int64())) if len(first) < table.num_rows else table
    store.write(INDEX_TABLE, INDEX_NAME, table.select(FULL.names).cast(FULL), {"inputs": inputs})


def _holding(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Which of `keys` are among `wanted`: a bitmap of low bits screens them, an exact test settles the few it
    lets through (np.isin alone sorts a year of keys each time)."""
    mask = (1 << _BITMAP_BITS) - 1
    bitmap = np.zeros(1 << _BITMAP_BITS, dtype=bool)
    bitmap[wanted & mask] = True
    candidates = np.flatnonzero(bitmap[keys & mask])
    held = np.zeros(len(keys), dtype=bool)
    held[candidates[np.isin(keys[candidates], wanted)]] = True
    return held


def link(table: pa.Table, fresh: Iterable[int]) -> pa.Table:
    """The index (FULL) with the keys of the `fresh` rows (new or changed files) that other items hold marked as
    linked, on both sides; the other rows' earlier links stay.

    Args:
        table: every listed file's row, with its keys.
        fresh: the rows made in this run.
    """
    fresh = sorted(set(fresh))
    keys, starts = _values(table["keys"], _KEY)
    if not fresh or not len(keys):
        return table
    new = np.zeros(len(keys), dtype=bool)
    for row in fresh:
        new[starts[row] : starts[row + 1]] = True
    _, inverse, times = np.unique(keys[new], return_inverse=True, return_counts=True)
    linked = np.zeros(len(keys), dtype=bool)
    linked[np.flatnonzero(new)[times[inverse] > 1]] = True  # held by two new items
    if not new.all():
        hits = _holding(keys, np.unique(keys[new])) & ~new  # old keys a new item holds
        linked |= hits
        linked[np.flatnonzero(new)[_holding(keys[new], np.unique(keys[hits]))]] = True
    marked = np.flatnonzero(linked)  # in row order, as the keys are
    key_rows = np.searchsorted(starts, marked, side="right") - 1
    counts, _ = _values(table["key_counts"], _COUNT)
    items = table["items"].to_numpy()
    first_item = np.concatenate([[0], np.cumsum(items)])
    item_of_key = np.searchsorted(np.cumsum(counts), marked, side="right")  # items numbered across rows
    item_day, _ = _values(table["item_day"], _DAY)
    columns = {name: table[name].to_pylist() for name in ("linked_keys", "linked_items", "linked_days")}
    rows, firsts = np.unique(key_rows, return_index=True)
    for row, chosen in zip(rows.tolist(), np.split(np.arange(len(marked)), firsts[1:])):
        pairs = set(zip((item_of_key[chosen] - first_item[row]).tolist(), keys[marked[chosen]].tolist()))
        pairs |= set(
            zip(
                np.frombuffer(columns["linked_items"][row], dtype=_ITEM).tolist(),
                np.frombuffer(columns["linked_keys"][row], dtype=_KEY).tolist(),
            )
        )
        ordered = sorted(pairs)
        row_items = np.array([item for item, _ in ordered], dtype=_ITEM)
        columns["linked_items"][row] = row_items.tobytes()
        columns["linked_keys"][row] = np.array([key for _, key in ordered], dtype=_KEY).tobytes()
        columns["linked_days"][row] = item_day[first_item[row] + row_items.astype(np.int64)].astype(_DAY).tobytes()
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.binary()))
    return table


def _outside(day: str, first_day: str | None, last_day: str | None) -> bool:
    return bool(first_day and day < first_day) or bool(last_day and day > last_day)


def _day_flags(values: pa.Array, wanted: Sequence[str], first_day: str | None, last_day: str | None) -> tuple:
    """For each day of a list column's values: whether it is a run day, outside the partitions, after the last run
    day."""
    run_day = pc.is_in(values, value_set=pa.array(sorted(wanted), pa.string())).to_numpy(zero_copy_only=False)
    outside = np.zeros(len(values), dtype=bool)
    if first_day:
        outside |= pc.less(values, first_day).to_numpy(zero_copy_only=False)
    if last_day:
        outside |= pc.greater(values, last_day).to_numpy(zero_copy_only=False)
    later = pc.greater(values, max(wanted)).to_numpy(zero_copy_only=False) if wanted else np.ones(len(values), bool)
    return run_day, outside, later


def select(table: pa.Table, days: Iterable[str], first_day: str | None, last_day: str | None) -> np.ndarray:
    """Which files (rows of the index, SMALL or FULL) a run of `days` must parse: those that hold one of its days or
    an item dated outside the partitions, and those of every item that shares a dedupe key with an item of its days,
    or with such an item in turn, until none is added. Items dated outside the partitions or after the run's last
    day decide nothing for its days and are left out of that closure.

    Args:
        table: the index rows of the listed files.
        days: the run's days.
        first_day: the first day of the partitions (items before it are quarantined with no day).
        last_day: the last day of the partitions.
    """
    wanted, rows = sorted(set(days)), table.num_rows
    item_days, day_rows, first_day_of_row = _list_flat(table["item_days"])
    run_day, outside, later = _day_flags(item_days, wanted, first_day, last_day)
    reject_days, reject_rows, _ = _list_flat(table["reject_days"])
    chosen = np.bincount(day_rows[run_day | outside], minlength=rows) > 0
    chosen |= np.bincount(reject_rows[_day_flags(reject_days, wanted, None, None)[0]], minlength=rows) > 0
    keys, key_rows = _flat(table["linked_keys"], _KEY)
    if not wanted or chosen.all() or not len(keys):
        return chosen
    # Each linked key with its item (numbered across rows) and its item's day (an index into item_days' values).
    day = first_day_of_row[key_rows] + _flat(table["linked_days"], _DAY)[0].astype(np.int64)
    first_item = np.cumsum(np.concatenate([[0], table["items"].to_numpy()[:-1]]))
    item = first_item[key_rows] + _flat(table["linked_items"], _ITEM)[0].astype(np.int64)
    deciding = ~(outside | later)[day]
    key_rows, item, keys, seed = key_rows[deciding], item[deciding], keys[deciding], run_day[day][deciding]
    taken = new = np.unique(item[seed])
    while len(new):
        reached = np.isin(keys, keys[np.isin(item, new)]) & ~np.isin(item, taken)
        new = np.unique(item[reached])
        taken = np.union1d(taken, new)
    chosen[np.unique(key_rows[np.isin(item, taken)])] = True
    return chosen


_EMPTY = {
    "items": parse._frame([], parse.ITEM_COLUMNS),
    "rejects": parse._frame([], parse.REJECT_COLUMNS),
    "duplicates": parse._frame([], DUPLICATE_COLUMNS),
}


def _stand_in(row: dict) -> parse.Parsed:
    """A file the run does not read, as far as the run's result shows it: its records of no day and its warnings."""
    rejects = _EMPTY["rejects"]
    if row["unassigned_positions"]:
        rejects = parse._frame(
            [
                {"file": row["name"], "position": position, "day": None, "reason": reason}
                for position, reason in zip(row["unassigned_positions"], row["unassigned_reasons"])
            ],
            parse.REJECT_COLUMNS,
        )
        if row["reject_days"]:  # parse_file's frame held days too: its missing ones are NaN, not None
            rejects["day"] = rejects["day"].astype("str")
    return parse.Parsed(_EMPTY["items"], rejects, _EMPTY["duplicates"], row["records"], tuple(row["warnings"]))


def read_landing(
    files: Iterable[LandingFile],
    store: ParquetStore,
    days: Iterable[str],
    column_map: dict[str, str] | None = None,
    first_day: str | None = None,
    last_day: str | None = None,
    date_format: str | None = None,
    use_index: bool = True,
) -> Reading:
    """The landing files' items, duplicates and quarantined records for a run of `days`, parsing only the files it
    needs; the index is brought up to date on the way.

    Args:
        files: the listed landing files, in listing order.
        store: the outputs store that holds the index.
        days: the run's days.
        column_map: as for `parse.parse_landing`.
        first_day: as for `parse.parse_landing`.
        last_day: as for `parse.parse_landing`.
        date_format: as for `parse.parse_landing`.
        use_index: False parses every file, as before the index, which is neither read nor written.
    """
    files = list(files)
    if not use_index:
        parsed = parse.parse_landing(files, column_map, first_day, last_day, date_format)
        return Reading(parsed, parsed.balanced(), len(files), len(files), 0)
    inputs = index_fingerprint(column_map, date_format)
    names = {file.name for file in files}

    def known(stored: pa.Table | None) -> tuple[dict[str, int], list[str | None]]:  # name -> row, and row -> stamp
        if stored is None:
            return {}, []
        return dict(zip(stored["name"].to_pylist(), range(stored.num_rows))), stored["stamp"].to_pylist()

    def changed(file: LandingFile) -> bool:  # an unknown stamp is always read again
        return file.stamp is None or file.name not in rows or stamps[rows[file.name]] != file.stamp

    with _opened(store) as opened:
        stored, rebuilt = _read(opened, inputs, SMALL)
        rows, stamps = known(stored)
        if stored is not None and (any(changed(file) for file in files) or set(rows) - names):
            stored, rebuilt = _read(opened, inputs, FULL)  # the keys of every file, to link new ones to
            rows, stamps = known(stored)
    fresh: dict[int, parse.Parsed] = {}  # position in the listing -> parse_file's result
    made, order = [], []
    for position, file in enumerate(files):
        if changed(file):
            fresh[position] = parse.parse_file(file, column_map, date_format)
            made.append(entry_of(file, fresh[position]))
            order.append((stored.num_rows if stored is not None else 0) + len(made) - 1)
        else:
            order.append(rows[file.name])
    unsaved = None
    if fresh or set(rows) - names:
        table = pa.concat_tables([t for t in (stored, pa.Table.from_pylist(made, schema=FULL)) if t is not None])
        table = link(table.take(pa.array(order, pa.int64())), fresh)
        try:
            save_index(store, inputs, table)
        except (OSError, pa.ArrowException) as error:  # the next run parses these files again; this one stands
            unsaved = f"{type(error).__name__}: {str(error)[:200]}"
    else:
        table = stored.take(pa.array(order, pa.int64())) if stored is not None else FULL.empty_table()
    chosen = select(table, days, first_day, last_day)
    # Files not read whose records of no day or warnings the result shows.
    shown = (pc.list_value_length(table["unassigned_positions"]).to_numpy(zero_copy_only=False) > 0) | (
        pc.list_value_length(table["warnings"]).to_numpy(zero_copy_only=False) > 0
    )
    stand_ins = np.flatnonzero(shown & ~chosen)
    stand_in_rows = dict(zip(stand_ins.tolist(), table.take(stand_ins).to_pylist())) if len(stand_ins) else {}
    parts = []
    for position, file in enumerate(files):
        if chosen[position]:
            if position not in fresh:
                fresh[position] = parse.parse_file(file, column_map, date_format)
            parts.append(fresh[position])
        elif position in stand_in_rows:
            parts.append(_stand_in(stand_in_rows[position]))
    records = int(pc.sum(table["records"]).as_py() or 0)
    parsed = dataclasses.replace(parse.combine(parts, first_day, last_day), records=records)
    balanced = records == int(pc.sum(table["rows"]).as_py() or 0)
    return Reading(parsed, balanced, len(files), len(fresh), len(made), rebuilt, unsaved)
