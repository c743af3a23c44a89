"""Alert messages for failed runs and failed checks, and their delivery to a Slack-compatible webhook.

Pure functions: the sensors in defs/alerts.py find the failures and call these. The webhook URL is a
credential (a Slack incoming-webhook URL lets anyone post to the channel), so it never appears in a
message, an exception or a repr.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

WEBHOOK_VAR, UI_VAR, TIMEOUT_VAR = "NEWSLETTER_ALERT_WEBHOOK_URL", "NEWSLETTER_UI_URL", "NEWSLETTER_ALERT_TIMEOUT"
DEFAULT_UI_URL = "http://127.0.0.1:3000"
DEFAULT_TIMEOUT = 10.0
# Slack cuts a section's text at 3,000 characters; error texts and figures are cut well before.
MAX_DETAIL = 600


class AlertDeliveryError(Exception):
    """A post that did not reach the receiver, or that it refused; the message never holds the URL."""


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and how runs are linked."""

    webhook_url: str | None = field(default=None, repr=False)
    ui_url: str = DEFAULT_UI_URL
    timeout_seconds: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        """The settings from the environment; raises ValueError naming the setting when one is invalid."""
        env = os.environ if env is None else env
        problems = settings_problems(env)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(
            webhook_url=env.get(WEBHOOK_VAR) or None,
            ui_url=(env.get(UI_VAR) or DEFAULT_UI_URL).rstrip("/"),
            timeout_seconds=float(env.get(TIMEOUT_VAR) or DEFAULT_TIMEOUT),
        )


def _is_http_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def settings_problems(env: Mapping[str, str]) -> list[str]:
    """One line per invalid alert setting, naming it and what to set; the webhook URL is never quoted."""
    problems = []
    if env.get(WEBHOOK_VAR) and not _is_http_url(env[WEBHOOK_VAR]):
        problems.append(f"{WEBHOOK_VAR} is not an http(s) URL: set it to the webhook's URL (e.g. a Slack incoming webhook), or unset it to send no alerts")
    if env.get(UI_VAR) and not _is_http_url(env[UI_VAR]):
        problems.append(f"{UI_VAR}={env[UI_VAR]!r} is not an http(s) URL: set it to the Dagster UI's address, e.g. {DEFAULT_UI_URL}")
    try:
        if float(env.get(TIMEOUT_VAR) or DEFAULT_TIMEOUT) <= 0:
            raise ValueError
    except ValueError:
        problems.append(f"{TIMEOUT_VAR}={env.get(TIMEOUT_VAR)!r} is not a positive number of seconds")
    return problems


def run_url(ui_url: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def _escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int = MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message(headline: str, details: list[str], url: str) -> dict:
    """`text` for notifications and plain receivers; `blocks` for Slack's layout, with the link as a button-like link."""
    text = "\n".join([headline, *details, f"Run: {url}"])
    body = "\n".join([f"*{_escape(headline)}*", *(_escape(d) for d in details), f"<{url}|Open the run in Dagster>"])
    return {"text": _escape(text), "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": body}}]}


def run_failure_message(ui_url: str, run_id: str, job: str, day: str | None, failures: list[str]) -> dict:
    """A failed run: its job, day, what failed (a line per failed step) and a link to it."""
    details = [f"Day: {day or 'none (not a partitioned run)'}", *(f"Failed: {_cut(f)}" for f in failures or ["the run (no step failed)"])]
    return _message(f"Run failed: {job}", details, run_url(ui_url, run_id))


def check_failure_message(ui_url: str, run_id: str, job: str, day: str | None, asset: str, check: str, severity: str,
                          description: str | None, figures: Mapping[str, object]) -> dict:
    """A failed check: which one, on which asset and day, its severity, what it measured, and a link to its run."""
    details = [f"Asset: {asset}  Day: {day or 'none'}  Severity: {severity}  Job: {job}"]
    if description:
        details.append(_cut(description))
    if figures:
        details.append(_cut("Figures: " + ", ".join(f"{k}={v}" for k, v in figures.items())))
    return _message(f"Check failed: {asset} {check} ({severity})", details, run_url(ui_url, run_id))


def post(url: str, payload: dict, timeout: float) -> None:
    """POST the payload as JSON; raises AlertDeliveryError unless the receiver answers 2xx within `timeout` seconds."""
    if not _is_http_url(url):
        raise AlertDeliveryError(f"{WEBHOOK_VAR} is not an http(s) URL")
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    # The exceptions of urllib may quote the URL: only their kind and status go into ours, without the chain.
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return
    except urllib.error.HTTPError as error:
        reason = f"the webhook answered HTTP {error.code}"
    except (OSError, http.client.HTTPException, ValueError) as error:
        cause = error.reason if isinstance(error, urllib.error.URLError) else error
        if isinstance(cause, TimeoutError):
            reason = f"the webhook did not answer within {timeout:g} s"
        else:
            reason = f"the webhook is unreachable ({type(cause).__name__}{': ' + cause.strerror if getattr(cause, 'strerror', None) else ''})"
    raise AlertDeliveryError(reason) from None
