"""An in-memory fake of the Google Sheets API v4, mounted on a requests.Session.

gspread's own request code runs end to end against it: URLs, query parameters, JSON bodies and
responses follow the real API's shapes, and errors come back as the API's JSON error objects, so
gspread raises the same APIError it would in production. Only what gspread 6.2.1 needs for
open_by_key, worksheet, add_worksheet, get_all_values, resize, update (RAW), clear and batch_clear,
and the lower-level spreadsheets.batchUpdate (addSheet, updateSheetProperties), values:batchGet and
values:batchUpdate (RAW) that the export calls, is implemented; anything else answers 404 or 400 so a
test notices instead of passing silently. The API's limits answer 400 as Google does: 10 million cells a
spreadsheet, a 10 MiB request body, 50,000 characters a cell.

Faults: `inject` answers an HTTP error (429, 500, 503...) or raises a requests exception (Timeout,
ConnectionError) instead of serving a request, or after serving it (`applied=True`: the change is
made, the answer is lost, as when a response times out on its way back).
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import gspread
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

MAX_CELLS = 10_000_000  # the real per-spreadsheet limit
MAX_BODY_BYTES = 10 * 1024 * 1024  # the API refuses larger request payloads ("Request payload size exceeds the limit")
# The real per-cell limit. Counted in UTF-16 code units (Sheets' strings are Java's and JavaScript's), the stricter
# reading: an astral character such as an emoji counts twice.
MAX_CELL_CHARS = 50_000
_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_RENDER_OPTIONS = {"FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def column_letters(n: int) -> str:
    """1 -> A, 27 -> AA: gspread's own A1 code, not the exporter's, so a bug there cannot hide in both."""
    return gspread.utils.rowcol_to_a1(1, n)[:-1]


def column_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def formatted(value: Any) -> str:
    """A cell as values.get renders it by default (FORMATTED_VALUE, automatic number format, en_US).

    Numbers written RAW stay numbers in the sheet but come back as text: 3 and 3.0 as "3", 0.25 as
    "0.25". (The automatic format rounds long fractions for display; 15 significant digits here.)
    """
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.15g}".replace("e", "E")
    return str(value)


def _unformatted(value: Any) -> Any:
    # JSON has one number type; the API writes whole doubles without a fraction.
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else value


@dataclass
class Sheet:
    sheet_id: int
    title: str
    rows: int
    cols: int
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)  # (row, col), 0-based -> str | float | bool
    hidden: bool = False
    frozen_rows: int = 0
    frozen_cols: int = 0

    def properties(self, index: int) -> dict:
        grid = {"rowCount": self.rows, "columnCount": self.cols}
        grid |= {"frozenRowCount": self.frozen_rows} if self.frozen_rows else {}
        grid |= {"frozenColumnCount": self.frozen_cols} if self.frozen_cols else {}
        props = {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": grid,
        }
        return props | ({"hidden": True} if self.hidden else {})

    def shrink(self) -> None:
        """Cells outside the grid are gone, as when rows or columns are deleted."""
        self.cells = {(r, c): v for (r, c), v in self.cells.items() if r < self.rows and c < self.cols}


@dataclass
class Book:
    title: str
    sheets: list[Sheet]


class GridRange(NamedTuple):
    sheet: Sheet
    r0: int  # 0-based, end exclusive; an end of None runs to the grid's edge
    c0: int
    r1: int | None
    c1: int | None
    single_cell: bool  # "A1": an anchor that values may extend from


class Logged(NamedTuple):
    method: str
    path: str  # decoded, e.g. /v4/spreadsheets/k/values/'items'
    params: dict[str, list[str]]
    status: int  # 0 when no answer came back (an injected exception before serving)
    timeout: Any
    size: int = 0  # bytes of the request body
    body: dict | None = None  # the request's JSON body, parsed
    error: str | None = None  # the name of an injected exception, when one was raised


@dataclass
class Fault:
    status: int | None
    method: str | None
    path: str | None  # substring of the decoded path
    call: Callable[[], Any] | None
    times: int
    raises: BaseException | type[BaseException] | None = None
    applied: bool = False
    body_contains: str | None = None

    def matches(self, method: str, path: str, body: bytes) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path is None or self.path in path)
            and (self.body_contains is None or self.body_contains.encode() in body)
        )


class FakeSheets:
    """Spreadsheets in memory, served to gspread through FakeSheetsAdapter."""

    def __init__(self, seed: int = 0):
        self.books: dict[str, Book] = {}
        self.log: list[Logged] = []
        self.faults: list[Fault] = []
        self._random = random.Random(seed)  # sheet ids look like the real, random ones, yet repeat per run

    # --- for tests -------------------------------------------------------------------------------

    def create_spreadsheet(self, key: str, title: str = "Untitled spreadsheet") -> None:
        """A new spreadsheet has one 1000 x 26 tab, Sheet1, with id 0, as in Google Sheets."""
        self.books[key] = Book(title, [Sheet(0, "Sheet1", 1000, 26)])

    def sheet(self, key: str, title: str) -> Sheet:
        return next(s for s in self.books[key].sheets if s.title == title)

    def values(self, key: str, title: str) -> list[list]:
        """A tab's cells as stored (numbers stay numbers), trimmed like the API trims them."""
        sheet = self.sheet(key, title)
        return _trim(
            [[_unformatted(sheet.cells.get((r, c), "")) for c in range(sheet.cols)] for r in range(sheet.rows)]
        )

    def inject(
        self,
        status: int | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        call: Callable[[], Any] | None = None,
        times: int = 1,
        raises: BaseException | type[BaseException] | None = None,
        applied: bool = False,
        body_contains: str | None = None,
    ) -> None:
        """For the next `times` requests that match (method, path substring), run `call` first if given
        (e.g. another writer's export, to interleave two runs), then answer `status` instead of
        serving the request if a status is given (e.g. 429, 500, 503), or raise `raises` from the
        transport (e.g. requests.exceptions.ReadTimeout, ConnectionError) as requests would. With
        `applied`, the request is served first and only its answer is replaced or lost. `body_contains`
        narrows the match to requests whose JSON body holds that text (e.g. a tab's quoted name)."""
        self.faults.append(Fault(status, method, path, call, times, raises, applied, body_contains))

    def requests_to(self, method: str, path_part: str) -> list[Logged]:
        """The logged requests of one kind, e.g. ("POST", "values:batchUpdate")."""
        return [e for e in self.log if e.method == method and path_part in e.path]

    # --- HTTP ------------------------------------------------------------------------------------

    def handle(self, method: str, url: str, body: bytes | str | None, timeout: Any) -> tuple[int, dict]:
        """The answer to one request; raises an injected transport exception instead when one is due."""
        parts = urlsplit(url)
        path = unquote(parts.path)
        params = parse_qs(parts.query, keep_blank_values=True)
        raw = body.encode() if isinstance(body, str) else (body or b"")
        fault = self._fault(method, path, raw)
        status, payload = 0, {}
        if fault and fault.status and not fault.applied:
            status, payload = fault.status, _error(fault.status, "injected fault")
        elif not (fault and fault.raises and not fault.applied):
            status, payload = self._answer(method, parts.netloc, parts.path, params, raw)
            if fault and fault.status:
                status, payload = fault.status, _error(fault.status, "injected fault")
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        error = None if not (fault and fault.raises) else getattr(fault.raises, "__name__", type(fault.raises).__name__)
        self.log.append(Logged(method, path, params, status, timeout, len(raw), parsed, error))
        if fault and fault.raises:
            raise fault.raises
        return status, payload

    def _fault(self, method: str, path: str, body: bytes) -> Fault | None:
        due = None
        for fault in self.faults:
            if fault.times > 0 and fault.matches(method, path, body):
                fault.times -= 1
                if fault.call:
                    fault.call()
                due = fault if (fault.status or fault.raises) else None
                break
        self.faults = [f for f in self.faults if f.times > 0]
        return due

    def _answer(self, method, host, raw_path, params, body: bytes) -> tuple[int, dict]:
        if len(body) > MAX_BODY_BYTES:
            return 400, _error(400, f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes.")
        try:
            data = json.loads(body) if body else {}
            return 200, self._route(method, host, raw_path, params, data)
        except ApiError as e:
            return e.status, _error(e.status, e.message)

    def _route(self, method: str, host: str, raw_path: str, params: dict, data: dict) -> dict:
        # Match on the encoded path: gspread percent-encodes ranges, so a literal ':' or '/' is syntax.
        routes = [
            ("GET", r"/v4/spreadsheets/([^/:]+)", self._get_spreadsheet),
            ("POST", r"/v4/spreadsheets/([^/:]+):batchUpdate", self._batch_update),
            ("GET", r"/v4/spreadsheets/([^/:]+)/values/([^/:]+)", self._values_get),
            ("PUT", r"/v4/spreadsheets/([^/:]+)/values/([^/:]+)", self._values_update),
            ("POST", r"/v4/spreadsheets/([^/:]+)/values/([^/:]+):clear", self._values_clear),
            ("POST", r"/v4/spreadsheets/([^/:]+)/values:batchClear", self._values_batch_clear),
            ("GET", r"/v4/spreadsheets/([^/:]+)/values:batchGet", self._values_batch_get),
            ("POST", r"/v4/spreadsheets/([^/:]+)/values:batchUpdate", self._values_batch_update),
        ]
        if host == "sheets.googleapis.com":
            for verb, pattern, handler in routes:
                match = re.fullmatch(pattern, raw_path)
                if match and method == verb:
                    key, *rest = (unquote(g) for g in match.groups())
                    if key not in self.books:
                        raise ApiError(404, "Requested entity was not found.")
                    return handler(self.books[key], key, *rest, params=params, data=data)
        raise ApiError(404, f"The fake Sheets API does not implement {method} {host}{unquote(raw_path)}")

    # --- spreadsheets ----------------------------------------------------------------------------

    def _get_spreadsheet(self, book: Book, key: str, *, params: dict, data: dict) -> dict:
        _allow(params, includeGridData=["false"])
        return {
            "spreadsheetId": key,
            "properties": {"title": book.title, "locale": "en_US", "autoRecalc": "ON_CHANGE", "timeZone": "Etc/GMT"},
            "sheets": [{"properties": s.properties(i)} for i, s in enumerate(book.sheets)],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{key}/edit",
        }

    def _batch_update(self, book: Book, key: str, *, params: dict, data: dict) -> dict:
        _allow(params)
        requests_ = data.get("requests") or []
        if not requests_:
            raise ApiError(400, "Must specify at least one request.")
        # All or nothing, like the real batchUpdate: apply to a copy, keep it only if every request succeeds.
        draft = copy.deepcopy(book)
        replies = []
        for n, request in enumerate(requests_):
            if len(request) != 1:
                raise ApiError(400, f"Invalid requests[{n}]: exactly one kind of request must be set.")
            ((kind, body),) = request.items()
            if kind == "addSheet":
                replies.append({"addSheet": {"properties": self._add_sheet(draft, n, body.get("properties", {}))}})
            elif kind == "updateSheetProperties":
                _update_sheet_properties(draft, n, body)
                replies.append({})
            else:
                raise ApiError(
                    400,
                    f"Invalid JSON payload received. Unknown name \"{kind}\" at 'requests[{n}]': the fake does not implement it.",
                )
        self.books[key] = draft
        return {"spreadsheetId": key, "replies": replies}

    def _add_sheet(self, book: Book, n: int, props: dict) -> dict:
        title = props.get("title") or f"Sheet{len(book.sheets) + 1}"
        if any(s.title.lower() == title.lower() for s in book.sheets):
            raise ApiError(
                400,
                f'Invalid requests[{n}].addSheet: A sheet with the name "{title}" already exists. Please enter another name.',
            )
        grid = props.get("gridProperties", {})
        sheet_id = props.get("sheetId", self._random.randrange(1, 2**31))
        if any(s.sheet_id == sheet_id for s in book.sheets):
            raise ApiError(400, f"Invalid requests[{n}].addSheet: Sheet with id {sheet_id} already exists.")
        sheet = Sheet(sheet_id, title, grid.get("rowCount", 1000), grid.get("columnCount", 26))
        book.sheets.insert(props.get("index", len(book.sheets)), sheet)
        _check_size(book, sheet, n, "addSheet")
        return sheet.properties(book.sheets.index(sheet))

    # --- values ----------------------------------------------------------------------------------

    def _values_get(self, book: Book, key: str, a1: str, *, params: dict, data: dict) -> dict:
        _allow(
            params,
            majorDimension=["ROWS", "COLUMNS"],
            valueRenderOption=_RENDER_OPTIONS,
            dateTimeRenderOption=["SERIAL_NUMBER", "FORMATTED_STRING"],
        )
        return _read(book, a1, params)

    def _values_batch_get(self, book: Book, key: str, *, params: dict, data: dict) -> dict:
        ranges = params.get("ranges", [])
        _allow(
            {k: v for k, v in params.items() if k != "ranges"},
            majorDimension=["ROWS", "COLUMNS"],
            valueRenderOption=_RENDER_OPTIONS,
            dateTimeRenderOption=["SERIAL_NUMBER", "FORMATTED_STRING"],
        )
        return {"spreadsheetId": key, "valueRanges": [_read(book, a1, params) for a1 in ranges]}

    def _values_update(self, book: Book, key: str, a1: str, *, params: dict, data: dict) -> dict:
        _allow(
            params,
            valueInputOption=["RAW", "USER_ENTERED", "INPUT_VALUE_OPTION_UNSPECIFIED"],
            includeValuesInResponse=["false"],
        )
        _check_input_option(params.get("valueInputOption", ["INPUT_VALUE_OPTION_UNSPECIFIED"])[0])
        write = _plan_write(book, a1, data.get("values") or [], data.get("majorDimension"), "")
        return {"spreadsheetId": key} | write.apply()

    def _values_batch_update(self, book: Book, key: str, *, params: dict, data: dict) -> dict:
        _allow(params)
        unknown = set(data) - {"valueInputOption", "data", "includeValuesInResponse"}
        if unknown or data.get("includeValuesInResponse"):
            raise ApiError(
                400, f"The fake does not implement the fields {sorted(unknown) or ['includeValuesInResponse']}"
            )
        _check_input_option(data.get("valueInputOption") or "INPUT_VALUE_OPTION_UNSPECIFIED")
        ranges = data.get("data") or []
        # Every range is checked before any cell changes: one bad range fails the whole request.
        writes = [
            _plan_write(book, r.get("range", ""), r.get("values") or [], r.get("majorDimension"), f"data[{n}].")
            for n, r in enumerate(ranges)
        ]
        responses = [{"spreadsheetId": key} | write.apply() for write in writes]
        return {
            "spreadsheetId": key,
            "totalUpdatedRows": sum(r.get("updatedRows", 0) for r in responses),
            "totalUpdatedColumns": max((r.get("updatedColumns", 0) for r in responses), default=0),
            "totalUpdatedCells": sum(r.get("updatedCells", 0) for r in responses),
            "totalUpdatedSheets": len({w.sheet.sheet_id for w in writes if w.values}),
            "responses": responses,
        }

    def _clear(self, book: Book, a1: str) -> str:
        rng = _parse_range(book, a1)
        r1, c1 = _bounded_end(rng)
        rng.sheet.cells = {
            (r, c): v for (r, c), v in rng.sheet.cells.items() if not (rng.r0 <= r < r1 and rng.c0 <= c < c1)
        }
        return _a1(rng.sheet, rng.r0, rng.c0, r1, c1)

    def _values_clear(self, book: Book, key: str, a1: str, *, params: dict, data: dict) -> dict:
        _allow(params)
        return {"spreadsheetId": key, "clearedRange": self._clear(book, a1)}

    def _values_batch_clear(self, book: Book, key: str, *, params: dict, data: dict) -> dict:
        _allow(params)
        ranges = data.get("ranges") or []
        for a1 in ranges:
            _parse_range(book, a1)  # all ranges valid, or nothing is cleared
        return {"spreadsheetId": key, "clearedRanges": [self._clear(book, a1) for a1 in ranges]}


def _check_input_option(option: str) -> None:
    if option == "INPUT_VALUE_OPTION_UNSPECIFIED":
        raise ApiError(400, "'valueInputOption' is required but not specified")
    if option != "RAW":
        raise ApiError(400, f"valueInputOption {option} is not implemented by the fake")


def _read(book: Book, a1: str, params: dict) -> dict:
    """One range as values.get answers it."""
    rng = _parse_range(book, a1)
    r1, c1 = _bounded_end(rng)
    render = formatted if params.get("valueRenderOption", ["FORMATTED_VALUE"])[0] == "FORMATTED_VALUE" else _unformatted
    rows = [
        [render(rng.sheet.cells[r, c]) if (r, c) in rng.sheet.cells else "" for c in range(rng.c0, c1)]
        for r in range(rng.r0, r1)
    ]
    if params.get("majorDimension") == ["COLUMNS"]:
        rows = [list(col) for col in zip(*rows, strict=True)]
    response = {
        "range": _a1(rng.sheet, rng.r0, rng.c0, r1, c1),
        "majorDimension": params.get("majorDimension", ["ROWS"])[0],
    }
    values = _trim(rows)
    return response | ({"values": values} if values else {})  # the API leaves out "values" when all are empty


@dataclass
class _Write:
    sheet: Sheet
    r0: int
    c0: int
    end_r: int
    end_c: int
    values: list[list]

    def apply(self) -> dict:
        sheet = self.sheet
        for i, row in enumerate(self.values):
            for j, value in enumerate(row):
                if value is None:
                    continue  # null leaves the cell as it is
                if value == "":
                    sheet.cells.pop((self.r0 + i, self.c0 + j), None)
                else:
                    # Sheets stores numbers as doubles; RAW keeps strings as text, even "3" or "=1+1".
                    sheet.cells[self.r0 + i, self.c0 + j] = value if isinstance(value, (str, bool)) else float(value)
        written = {"updatedRange": _a1(sheet, self.r0, self.c0, self.end_r, self.end_c)}
        height, width = len(self.values), max(map(len, self.values), default=0)
        return written | (
            {"updatedRows": height, "updatedColumns": width, "updatedCells": sum(map(len, self.values))}
            if height
            else {}
        )


def _plan_write(book: Book, a1: str, values: list, major: str | None, where: str) -> _Write:
    """A values write, checked in full (range, grid, every value) before any cell changes."""
    rng = _parse_range(book, a1)
    if (major or "ROWS") == "COLUMNS":
        values = [[col[i] if i < len(col) else None for col in values] for i in range(max(map(len, values), default=0))]
    height, width = len(values), max(map(len, values), default=0)
    if not rng.single_cell:
        # Values must fit an explicit range (an open end runs to the grid's edge).
        r1, c1 = _bounded_end(rng)
        if rng.r0 + height > r1:
            raise ApiError(
                400,
                f"Requested writing within range [{_a1(rng.sheet, rng.r0, rng.c0, r1, c1, quote=True)}], but tried writing to row [{r1 + 1}]",
            )
        if rng.c0 + width > c1:
            raise ApiError(
                400,
                f"Requested writing within range [{_a1(rng.sheet, rng.r0, rng.c0, r1, c1, quote=True)}], but tried writing to column [{column_letters(c1 + 1)}]",
            )
    sheet, end_r, end_c = rng.sheet, rng.r0 + max(height, 1), rng.c0 + max(width, 1)
    if end_r > sheet.rows or end_c > sheet.cols:
        # values.update never grows the grid (values.append does); callers resize first.
        raise ApiError(
            400,
            f"Range ({_a1(sheet, rng.r0, rng.c0, end_r, end_c, quote=True)}) exceeds grid limits. Max rows: {sheet.rows}, max columns: {sheet.cols}",
        )
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise ApiError(400, f"Invalid {where}values[{i}][{j}]: {json.dumps(value)}")
            if isinstance(value, str) and len(value.encode("utf-16-le", "surrogatepass")) > 2 * MAX_CELL_CHARS:
                # The whole request fails, no cell changes: Google's answer, word for word.
                raise ApiError(
                    400, f"Your input contains more than the maximum of {MAX_CELL_CHARS} characters in a single cell."
                )
    return _Write(sheet, rng.r0, rng.c0, end_r, end_c, values)


def _error(status: int, message: str) -> dict:
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, HTTPStatus(status).name)}}


def _allow(params: dict, **allowed) -> None:
    """Reject parameters the fake does not model, so a changed request shows up as a failure."""
    for name, values in params.items():
        if name not in allowed or any(v not in allowed[name] for v in values):
            raise ApiError(400, f"The fake does not implement the parameter {name}={values}")


def _update_sheet_properties(book: Book, n: int, body: dict) -> None:
    props, fields = body.get("properties", {}), body.get("fields", "")
    sheet = next((s for s in book.sheets if s.sheet_id == props.get("sheetId", 0)), None)
    if sheet is None:
        raise ApiError(400, f"Invalid requests[{n}].updateSheetProperties: No grid with id: {props.get('sheetId', 0)}")
    if not fields:
        raise ApiError(
            400, f"Invalid requests[{n}].updateSheetProperties: You must specify at least one field to update."
        )
    setters = {
        "title": "title",
        "hidden": "hidden",
        "gridProperties.rowCount": "rows",
        "gridProperties.columnCount": "cols",
        "gridProperties.frozenRowCount": "frozen_rows",
        "gridProperties.frozenColumnCount": "frozen_cols",
    }
    for mask in fields.split(","):
        path = mask.strip().replace("/", ".")  # gspread writes masks as gridProperties/rowCount
        if path not in setters:
            raise ApiError(
                400, f"Invalid requests[{n}].updateSheetProperties: the fake does not implement the field {mask!r}"
            )
        value = props
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        setattr(sheet, setters[path], value if value is not None else type(getattr(sheet, setters[path]))())
    if sheet.rows < 1 or sheet.cols < 1:
        raise ApiError(
            400, f"Invalid requests[{n}].updateSheetProperties: a sheet must keep at least one row and one column."
        )
    if sheet.frozen_rows >= sheet.rows or sheet.frozen_cols >= sheet.cols:
        raise ApiError(
            400, f"Invalid requests[{n}].updateSheetProperties: You can't freeze all visible rows on the sheet."
        )
    _check_size(book, sheet, n, "updateSheetProperties")
    sheet.shrink()


def _check_size(book: Book, sheet: Sheet, n: int, kind: str) -> None:
    if sum(s.rows * s.cols for s in book.sheets) > MAX_CELLS:
        raise ApiError(
            400,
            f"Invalid requests[{n}].{kind}: This action would increase the number of cells in the workbook above the limit of {MAX_CELLS} cells.",
        )


_CELL = re.compile(r"([A-Za-z]*)(\d*)")


def _parse_range(book: Book, a1: str) -> GridRange:
    """'Sheet name'!A1:B2, Sheet1!A:B, 'Sheet'' name', A1 (on the first sheet), 2:5, A2:C."""
    bad = ApiError(400, f"Unable to parse range: {a1}")
    if a1.startswith("'"):
        match = re.fullmatch(r"'((?:[^']|'')*)'(?:!(.*))?", a1)
        if not match:
            raise bad
        title, cells = match.group(1).replace("''", "'"), match.group(2)
    elif "!" in a1:
        title, cells = a1.split("!", 1)
    elif any(s.title == a1 for s in book.sheets):
        title, cells = a1, None
    else:
        title, cells = book.sheets[0].title, a1
    sheet = next((s for s in book.sheets if s.title == title), None)
    if sheet is None or cells == "":
        raise bad
    if cells is None:
        return GridRange(sheet, 0, 0, None, None, False)
    ends = cells.split(":")
    if len(ends) > 2 or not all(e and _CELL.fullmatch(e) for e in ends):
        raise bad
    (col0, row0), (col1, row1) = (_CELL.fullmatch(e).groups() for e in (ends[0], ends[-1]))
    if len(ends) == 1 and not (col0 and row0):
        raise bad
    if row0 and int(row0) < 1 or row1 and int(row1) < 1:
        raise bad
    return GridRange(
        sheet,
        int(row0) - 1 if row0 else 0,
        column_number(col0.upper()) - 1 if col0 else 0,
        int(row1) if row1 else None,
        column_number(col1.upper()) if col1 else None,
        len(ends) == 1,
    )


def _bounded_end(rng: GridRange) -> tuple[int, int]:
    """The range's end, clipped to the grid when open; an explicit end past the grid is an error, as in the API."""
    sheet = rng.sheet
    r1 = rng.r0 + 1 if rng.single_cell else sheet.rows if rng.r1 is None else rng.r1
    c1 = rng.c0 + 1 if rng.single_cell else sheet.cols if rng.c1 is None else rng.c1
    if r1 > sheet.rows or c1 > sheet.cols:
        raise ApiError(
            400,
            f"Range ({_a1(sheet, rng.r0, rng.c0, r1, c1, quote=True)}) exceeds grid limits. Max rows: {sheet.rows}, max columns: {sheet.cols}",
        )
    return r1, c1


def _a1(sheet: Sheet, r0: int, c0: int, r1: int, c1: int, quote: bool = False) -> str:
    """A range as the API writes it in responses: the sheet name quoted only when it must be."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sheet.title) and not re.fullmatch(
        r"[A-Za-z]{1,3}\d+|R\d*C\d*", sheet.title, re.I
    )
    name = sheet.title if plain and not quote else "'{}'".format(sheet.title.replace("'", "''"))
    start, end = f"{column_letters(c0 + 1)}{r0 + 1}", f"{column_letters(c1)}{r1}"
    return f"{name}!{start}" if start == end else f"{name}!{start}:{end}"


def _trim(rows: list[list]) -> list[list]:
    """The API leaves out trailing empty cells of a row and trailing empty rows."""
    rows = [row[: max((i + 1 for i, v in enumerate(row) if v != ""), default=0)] for row in rows]
    while rows and not rows[-1]:
        rows.pop()
    return rows


class FakeSheetsAdapter(BaseAdapter):
    """Answers every request from the fake; nothing reaches the network."""

    def __init__(self, fake: FakeSheets):
        super().__init__()
        self.fake = fake

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        status, payload = self.fake.handle(request.method, request.url, request.body, timeout)
        response = requests.Response()
        response.status_code = status
        response.reason = HTTPStatus(status).phrase
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=UTF-8"})
        response._content = json.dumps(payload, allow_nan=False).encode()
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


def make_client(fake: FakeSheets) -> gspread.Client:
    """A real gspread client whose session talks to the fake (auth=None: gspread then uses the session as given)."""
    session = requests.Session()
    adapter = FakeSheetsAdapter(fake)
    # Mount for every URL, not just sheets.googleapis.com: a Drive or other call must reach the
    # fake (and fail there, visibly) rather than the network.
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return gspread.Client(auth=None, session=session)
