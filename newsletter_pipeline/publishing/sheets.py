"""The Google Sheets client: credentials from the environment, bounded retries, and request-sized writes.

Layout (which tabs, which rows) lives in `export`; this module knows how to talk to the API safely:

- `load_credentials` turns GOOGLE_SERVICE_ACCOUNT_FILE or GOOGLE_SERVICE_ACCOUNT_JSON into service-account
  credentials, or raises `SheetsConfigError` naming what to set. No message ever contains the key.
- `install_retries` puts `RetryingHTTPClient` under a gspread client: every request gets a timeout and is
  retried a bounded number of times, with full-jitter exponential backoff, on 429, 5xx, timeouts and
  connection errors; then `SheetsUnavailable` names the operation and the last HTTP status. (gspread's
  own BackOffHTTPClient retries forever, and not on timeouts.)
- `value_requests` cuts a tab's rows into values:batchUpdate bodies of at most `MAX_REQUEST_BYTES`.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import google.auth.exceptions
import gspread
import requests
import tenacity
from gspread.exceptions import APIError
from gspread.http_client import HTTPClient

SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]  # Sheets only: the export never needs Drive
MAX_REQUEST_BYTES = 2_000_000  # Google's recommended ceiling for one request's body ("2 MB")
SPREADSHEET_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a key alone, not the URL around it (config checks it too)
FILE_VAR, JSON_VAR, KEY_VAR = "GOOGLE_SERVICE_ACCOUNT_FILE", "GOOGLE_SERVICE_ACCOUNT_JSON", "NEWSLETTER_SPREADSHEET_KEY"
_REQUIRED_KEY_FIELDS = ("client_email", "private_key", "token_uri")


class SheetsConfigError(ValueError):
    """Google Sheets is misconfigured: the message says which variable to set or fix (never its value)."""


class SheetsUnavailable(RuntimeError):
    """A request still failed after the last attempt (429, 5xx, timeout or connection error)."""

    def __init__(self, operation: str, attempts: int, failures: list[str], status: int | None, advice: str = ""):
        self.operation, self.attempts, self.failures, self.status, self.advice = (
            operation,
            attempts,
            failures,
            status,
            advice,
        )
        last = f"HTTP {status}" if status else failures[-1]
        super().__init__(
            f"Google Sheets {operation} failed {attempts} times (answers: {', '.join(failures)}); "
            f"gave up after the last attempt, which ended in {last}" + (f". {advice}" if advice else "")
        )

    def with_advice(self, advice: str) -> SheetsUnavailable:
        """The same failure, with what it left behind and what to do."""
        return SheetsUnavailable(self.operation, self.attempts, self.failures, self.status, advice)


# --- credentials ---------------------------------------------------------------------------------------


def load_credentials(*, file: str | None = None, json_text: str | None = None):
    """Service-account credentials from a key file's path or the key's JSON; the JSON wins when both are set."""
    from google.oauth2.service_account import Credentials

    if json_text:
        source = JSON_VAR
        try:
            info = json.loads(json_text)
        except ValueError:
            info = None
        if not isinstance(info, dict):  # never echo the value: it is a secret
            raise SheetsConfigError(
                f"{JSON_VAR} is not a JSON object; set it to the content of a service-account key file "
                f"(or unset it and set {FILE_VAR} to the file's path)"
            )
    elif file:
        source = FILE_VAR
        path = Path(file).expanduser()
        if not path.is_file():
            raise SheetsConfigError(
                f"{FILE_VAR} names {path}, which is not a readable file; set it to the path of a service-account key "
                "file"
            )
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict):
            raise SheetsConfigError(
                f"{FILE_VAR} names {path}, which does not hold a JSON object; set it to a service-account key file"
            )
    else:
        raise SheetsConfigError(
            f"{KEY_VAR} is set but no credentials are: set {FILE_VAR} (the path of a service-account key file) "
            f"or {JSON_VAR} (its content)"
        )
    kind = info.get("type")
    if kind != "service_account":
        shown = (
            repr(kind) if kind is None or isinstance(kind, str) and re.fullmatch(r"[a-z_]{1,40}", kind) else "unknown"
        )
        raise SheetsConfigError(
            f"{source} holds a key of type {shown}, not a service-account key; create a JSON key for a service account "
            f"(Google Cloud console: IAM > Service accounts > Keys) and set {source} to it"
        )
    missing = [name for name in _REQUIRED_KEY_FIELDS if not isinstance(info.get(name), str) or not info.get(name)]
    if missing:
        raise SheetsConfigError(
            f"{source} is missing the service-account key fields {', '.join(missing)}; set it to the whole key file "
            "as Google issued it"
        )
    try:
        return Credentials.from_service_account_info(info, scopes=SCOPES)
    except Exception as e:  # the key's parser may quote the key: keep only what kind of failure it was
        failure = type(e).__name__
    # Raised outside the except block, so no exception that saw the key rides along as __context__.
    raise SheetsConfigError(
        f"{source} holds a service-account key that does not load ({failure}): "
        "its private_key is malformed; download a new key and set it again"
    )


def check_spreadsheet_key(key: str) -> None:
    """Raise SheetsConfigError, naming the variable, when `key` is not a spreadsheet key alone."""
    if not SPREADSHEET_KEY.fullmatch(key):
        raise SheetsConfigError(
            f"{KEY_VAR} must be the spreadsheet's key alone (letters, digits, - and _: the part of "
            "its URL after /d/), not a URL or a name"
        )


def authorized_client(credentials) -> gspread.Client:
    """A gspread client on an authorized requests session (tests replace this with a client on the fake)."""
    return gspread.Client(auth=credentials)


# --- retries -----------------------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    """How long to wait for an answer, and how often and how patiently to retry.

    Attempt n (1-based) that fails with 429, 5xx, a timeout or a connection error is followed by a sleep
    drawn uniformly from [0, min(max_delay, base_delay * 2**(n-1))] ("full jitter"); a Retry-After header
    raises the sleep to what it asks (up to max_delay). After `max_attempts` attempts, SheetsUnavailable.
    """

    # No defaults here: the settings declare them (NEWSLETTER_SHEETS_*), and SheetsResource passes them in.
    max_attempts: int
    base_delay: float
    max_delay: float
    timeout: float
    sleep: Callable[[float], Any] = time.sleep
    random: random.Random = field(default_factory=random.Random)

    def __post_init__(self):
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or not self.timeout > 0:
            raise SheetsConfigError(
                "Sheets retry settings need max_attempts >= 1, base and max delay >= 0 and a timeout > 0 "
                f"(got max_attempts={self.max_attempts}, base_delay={self.base_delay}, "
                f"max_delay={self.max_delay}, timeout={self.timeout})"
            )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try `attempt` + 1: full-jitter exponential backoff, at least the server's
        Retry-After."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        wait = self.random.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


_TRANSIENT = (
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    google.auth.exceptions.TransportError,
)


def retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth another try: rate limits (429) and server errors."""
    return status == 429 or status >= 500


class RetryingHTTPClient(HTTPClient):
    """gspread's HTTPClient with a request timeout and bounded, jittered retries."""

    def __init__(self, auth, session=None, *, policy: RetryPolicy):
        super().__init__(auth, session)
        self.policy = policy
        self.timeout = self.policy.timeout

    def request(
        self, method, endpoint, params=None, data=None, json=None, files=None, headers=None
    ):  # gspread's signature
        """gspread's request, tried again on a retryable status or a network error, within the policy's bounds."""
        policy, failures = self.policy, []

        def record(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception()
            failures.append(str(error.response.status_code) if isinstance(error, APIError) else type(error).__name__)

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception()
            return policy.delay(
                state.attempt_number, _retry_after(error.response) if isinstance(error, APIError) else None
            )

        def give_up(state: tenacity.RetryCallState):
            error = state.outcome.exception()
            status = error.response.status_code if isinstance(error, APIError) else None
            raise SheetsUnavailable(describe(method, endpoint, json), state.attempt_number, failures, status) from error

        retrying = tenacity.Retrying(
            # 400, 403, 404...: retrying cannot help, and gspread's own handling (e.g. SpreadsheetNotFound) applies.
            retry=tenacity.retry_if_exception(_transient),
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=wait,
            sleep=policy.sleep,
            after=record,
            retry_error_callback=give_up,
            reraise=True,
        )
        return retrying(
            super().request, method, endpoint, params=params, data=data, json=json, files=files, headers=headers
        )


def _transient(error: BaseException) -> bool:
    """A failure another attempt may not meet: a retryable status, a timeout or a broken connection."""
    return isinstance(error, _TRANSIENT) or (
        isinstance(error, APIError) and retryable_status(error.response.status_code)
    )


def _retry_after(response) -> float | None:
    value = (response.headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def install_retries(client: gspread.Client, policy: RetryPolicy) -> gspread.Client:
    """Swap the client's HTTP layer for a RetryingHTTPClient on the same session (and credentials)."""
    old = client.http_client
    new = RetryingHTTPClient(None, session=old.session, policy=policy)
    if hasattr(old, "auth"):
        new.auth = old.auth
    client.http_client = new
    return client


_OPERATIONS = [
    (r"/v4/spreadsheets/[^/:]+", "spreadsheets.get"),
    (r"/v4/spreadsheets/[^/:]+:batchUpdate", "spreadsheets.batchUpdate"),
    (r"/v4/spreadsheets/[^/:]+/values:(batchGet|batchUpdate|batchClear)", "values.{0}"),
    (r"/v4/spreadsheets/[^/:]+/values/([^/:]+):(append|clear)", "values.{1} of {0}"),
    (r"/v4/spreadsheets/[^/:]+/values/([^/:]+)", None),
]


def describe(method: str, endpoint: str, body: Any = None) -> str:
    """The API operation a request performs, e.g. "values.batchUpdate of 'items 2026-11'!A2:J40",
    without the spreadsheet key or anything from the credentials."""
    parts = urlsplit(endpoint)
    for pattern, name in _OPERATIONS:
        match = re.fullmatch(pattern, parts.path)
        if not match:
            continue
        groups = [unquote(g) for g in match.groups()]
        if name is None:
            name = {"GET": "values.get", "PUT": "values.update"}.get(
                method.upper(), f"values {method.upper()}"
            ) + f" of {groups[0]}"
        else:
            name = name.format(*groups)
        if isinstance(body, dict) and name == "values.batchUpdate":
            ranges = [d.get("range") for d in body.get("data") or [] if isinstance(d, dict)]
            name += f" of {', '.join(map(str, ranges))}" if ranges else ""
        elif isinstance(body, dict) and name == "spreadsheets.batchUpdate":
            kinds = sorted({kind for r in body.get("requests") or [] if isinstance(r, dict) for kind in r})
            name += f" ({', '.join(kinds)})" if kinds else ""
        return name
    return f"{method.upper()} {parts.netloc}"


# --- request-sized writes ----------------------------------------------------------------------------


def column_letters(n: int) -> str:
    """1 -> A, 27 -> AA."""
    letters = ""
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def quoted(title: str) -> str:
    """A tab title as an A1 range prefix: 'Title'!, with quotes doubled."""
    return "'{}'!".format(title.replace("'", "''"))


def a1_rows(title: str, first_row: int, n_rows: int, width: int) -> str:
    """'title'!A<first>:<last column><last row>, rows 1-based."""
    return f"{quoted(title)}A{first_row}:{column_letters(width)}{first_row + n_rows - 1}"


def body_bytes(body: Any) -> int:
    """The size of a JSON body as requests sends it (json.dumps defaults: ASCII escapes, ', ' separators)."""
    return len(json.dumps(body, allow_nan=False).encode())


def value_requests(
    title: str, first_row: int, rows: Sequence[list], width: int, limit: int = MAX_REQUEST_BYTES
) -> Iterator[dict]:
    """values:batchUpdate bodies (RAW) writing `rows` from `first_row` (1-based) down, each at most `limit`
    bytes: one body when they fit, else consecutive ranges, one body per chunk, top to bottom."""
    overhead = body_bytes(_body(a1_rows(title, 10**7, 10**7, width), [])) + 2  # the longest range this sheet can have
    start, size, chunk = first_row, overhead, []
    for row in rows:
        row_size = body_bytes(row) + 2  # ", " between rows
        if row_size + overhead > limit:
            raise ValueError(
                f"row {start + len(chunk)} of tab {title!r} alone takes {row_size} bytes of JSON, "
                f"more than the {limit}-byte request limit"
            )
        if chunk and size + row_size > limit:
            yield _body(a1_rows(title, start, len(chunk), width), chunk)
            start, size, chunk = start + len(chunk), overhead, []
        chunk.append(row)
        size += row_size
    if chunk:
        yield _body(a1_rows(title, start, len(chunk), width), chunk)


def _body(a1: str, rows: list[list]) -> dict:
    return {"valueInputOption": "RAW", "data": [{"range": a1, "majorDimension": "ROWS", "values": rows}]}
