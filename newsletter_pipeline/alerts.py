"""Alert messages for failed runs and failed checks, and their delivery to a Slack-compatible webhook.

Pure functions: the sensors in defs/alerts.py find the failures and call these. The webhook URL is a
credential (a Slack incoming-webhook URL lets anyone post to the channel), so it never appears in a
message, an exception or a repr.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from newsletter_pipeline.config import BY_NAME, http_url, load_config

WEBHOOK_VAR, UI_VAR, TIMEOUT_VAR = "NEWSLETTER_ALERT_WEBHOOK_URL", "NEWSLETTER_UI_URL", "NEWSLETTER_ALERT_TIMEOUT"
# Slack cuts a section's text at 3,000 characters; error texts and figures are cut well before.
MAX_DETAIL = 600


class AlertDeliveryError(Exception):
    """A post that did not reach the receiver, or that it refused; the message never holds the URL."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.status = status

    @property
    def rejects_message(self) -> bool:
        """The receiver refused this message itself (malformed, too large), so sending it again will not help. A refused
        URL (401, 403, 404, 410: a revoked webhook) is not the message's fault: alerts wait until the URL is fixed."""
        return self.status in (400, 413, 415, 422)


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and how runs are linked."""

    webhook_url: str | None = field(default=None, repr=False)
    ui_url: str = BY_NAME[UI_VAR].default
    timeout_seconds: float = float(BY_NAME[TIMEOUT_VAR].default)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        """The settings from the environment (checked by config.py); raises ConfigError naming an invalid one."""
        config = load_config(env)
        return cls(
            webhook_url=config.get(WEBHOOK_VAR),
            ui_url=config.get(UI_VAR).rstrip("/"),
            timeout_seconds=config.number(TIMEOUT_VAR),
        )


def _is_http_url(value: str) -> bool:
    return http_url(value) is None


def run_url(ui_url: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def _escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int = MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message(headline: str, details: list[str], url: str) -> dict:
    """`text` for notifications and plain receivers; `blocks` for Slack's layout, the link as a button-like
    link."""
    text = "\n".join([headline, *details, f"Run: {url}"])
    body = "\n".join([f"*{_escape(headline)}*", *(_escape(d) for d in details), f"<{url}|Open the run in Dagster>"])
    return {"text": _escape(text), "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": body}}]}


def run_failure_message(ui_url: str, run_id: str, job: str, day: str | None, failures: list[str]) -> dict:
    """A failed run: its job, day, what failed (a line per failed step) and a link to it."""
    details = [
        f"Day: {day or 'none (not a partitioned run)'}",
        *(f"Failed: {_cut(f)}" for f in failures or ["the run (no step failed)"]),
    ]
    return _message(f"Run failed: {job}", details, run_url(ui_url, run_id))


def check_failure_message(
    ui_url: str,
    run_id: str,
    job: str,
    day: str | None,
    asset: str,
    check: str,
    severity: str,
    description: str | None,
    figures: Mapping[str, object],
) -> dict:
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
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    # The exceptions of urllib may quote the URL: only their kind and status go into ours, without the chain.
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return
    except urllib.error.HTTPError as error:
        raise AlertDeliveryError(f"the webhook answered HTTP {error.code}", error.code) from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        cause = error.reason if isinstance(error, urllib.error.URLError) else error
        if isinstance(cause, TimeoutError):
            reason = f"the webhook did not answer within {timeout:g} s"
        else:
            detail = f": {cause.strerror}" if getattr(cause, "strerror", None) else ""
            reason = f"the webhook is unreachable ({type(cause).__name__}{detail})"
    raise AlertDeliveryError(reason) from None
