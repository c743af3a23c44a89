"""The UI in a real browser: headless Chromium launches one day from the asset graph, then finds its checks and plot."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from newsletter_pipeline.defs import checks
from newsletter_pipeline_tests import conftest
from newsletter_pipeline_tests.conftest import REPO, SAMPLE, free_port

DAY = "2026-11-18"
CHROMIUM = [Path("/usr/bin/chromium"), Path("/usr/lib/chromium/chromium")]
# The machine has no network: nothing in the background may try to reach it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
# The first run on a machine loads the model and compiles numba code; two CPU cores make that minutes.
RUN_TIMEOUT_S = 900
LOCATION_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name"
    " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)
RUNS_QUERY = (
    "query ($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags})"
    " { ... on Runs { results { runId status tags { key value } } } } }"
)
RUN_ERRORS_QUERY = (
    "query ($id: ID!) { logsForRun(runId: $id)"
    " { ... on EventConnection { events { ... on MessageEvent { message level } } } } }"
)


def unavailable(reason: str) -> None:
    conftest.unavailable(
        reason, "CI must run the UI test (.ci/run installs chromium, `pip install -e .[test]` playwright)"
    )


def artifacts_dir() -> Path:
    path = Path(os.environ.get("NEWSLETTER_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def graphql(url: str, query: str, **variables) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_for_location(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 180):
    """Wait until the webserver answers and the project's code location has loaded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster-webserver exited with {server.returncode}:\n{log.read_text()[-3000:]}"
        try:
            entries = graphql(url, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
        except OSError:
            entries = []
        loaded = [
            e["locationOrLoadError"] for e in entries if e["name"] == "newsletter_pipeline" and e["locationOrLoadError"]
        ]
        if loaded:
            assert loaded[0]["__typename"] == "RepositoryLocation", (
                f"the code location failed to load: {loaded[0].get('message')}"
            )
            return
        time.sleep(1)
    pytest.fail(f"the code location did not load within {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen):
    """Stop the webserver's whole process group: the webserver, its code server and any run they started."""
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def webserver(tmp_path) -> tuple[str, Path]:
    """dagster-webserver on 127.0.0.1 with the project's workspace, a fresh instance and the sample in a temporary landing folder."""
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copy(
        REPO / "dagster.yaml", home / "dagster.yaml"
    )  # DefaultRunCoordinator: UI launches start without the daemon
    shutil.copytree(SAMPLE, data / "landing")
    env = {**os.environ, "DAGSTER_HOME": str(home), "NEWSLETTER_DATA_DIR": str(data)}
    url, log = f"http://127.0.0.1:{free_port()}", tmp_path / "webserver.log"
    command = [
        str(Path(sys.executable).with_name("dagster-webserver")),
        "-h",
        "127.0.0.1",
        "-p",
        url.rsplit(":", 1)[1],
        "-w",
        str(REPO / "workspace.yaml"),
    ]
    with log.open("w") as out:
        # A session of its own: stop() ends its process group.
        server = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_location(url, server, log)
        yield url, data
    finally:
        stop(server)


def find_chromium() -> Path:
    """Debian's chromium, with playwright to drive it; skip without them (fail in CI)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("playwright is not installed (pip install -e .[test])")
    executable = next((path for path in CHROMIUM if path.exists()), None)
    if executable is None:
        unavailable(f"chromium is not installed (looked for {', '.join(map(str, CHROMIUM))}; apt-get install chromium)")
    return executable


@contextmanager
def browser(executable: Path, profile: Path):
    """A page of headless Chromium with a fresh profile, closed on the way out whatever happens."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(executable),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()


def wait_for_run(url: str, timeout_s: float = RUN_TIMEOUT_S) -> dict:
    """The run of DAY, once it has finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = graphql(url, RUNS_QUERY, tags=[{"key": "dagster/partition", "value": DAY}])["runsOrError"]["results"]
        if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            assert len(runs) == 1, runs
            return runs[0]
        time.sleep(2)
    pytest.fail(f"the run of {DAY} did not finish within {timeout_s} s")


def run_errors(url: str, run_id: str) -> list[str]:
    events = graphql(url, RUN_ERRORS_QUERY, id=run_id)["logsForRun"]["events"]
    return [e["message"] for e in events if e.get("level") == "ERROR"]


def field(page, label: str):
    """The value shown under a label of the check's latest execution."""
    return page.get_by_text(label, exact=True).locator("xpath=following-sibling::*[1]")


@pytest.fixture
def chromium() -> Path:
    return find_chromium()


def test_a_missing_browser_skips_but_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", [tmp_path / "chromium"])
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        find_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the UI test"):
        find_chromium()


@pytest.mark.slow
def test_ui_materializes_a_day_and_shows_its_checks_and_plot(chromium, webserver, tmp_path):
    # chromium comes first: without a browser the test skips before the webserver starts.
    url, data = webserver
    artifacts = artifacts_dir()
    for stale in artifacts.glob("ui-*.png"):
        stale.unlink()

    with browser(chromium, tmp_path / "chromium-profile") as page:
        from playwright.sync_api import expect

        try:
            # The asset graph, from the navigation.
            page.goto(url)
            page.get_by_role("link", name="Lineage").click()
            expect(page.get_by_text("Global asset lineage")).to_be_visible()
            for asset in ("raw_items", "item_embeddings", "umap_coordinates", "clusters", "stories", "sheet_export"):
                expect(page.get_by_text(asset, exact=True).first).to_be_visible()

            # Materialize all -> one day -> launch.
            page.get_by_role("button", name="Materialize all").click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Partition selection")).to_be_visible()
            # The dialog offers the last 90 days; DAY, in the past, falls out of them sooner or later.
            dialog.get_by_text("Show all partitions").click()
            expect(dialog.get_by_text("All time", exact=True)).to_be_visible()
            days = dialog.get_by_role("textbox")
            days.fill(DAY)
            days.press("Enter")
            expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
            dialog.get_by_role("button", name="Launch 1 run").click()
            expect(dialog).to_be_hidden(timeout=120_000)

            run = wait_for_run(url)
            assert run["status"] == "SUCCESS", (
                f"run {run['runId']} ended {run['status']}: {run_errors(url, run['runId'])}"
            )
            assert {"key": "dagster/from_ui", "value": "true"} in run[
                "tags"
            ]  # launched by the browser, not by this test
            assert (data / "outputs" / "clusters" / f"{DAY}.parquet").exists()

            # Every check of the day, each on its own page: passed, for DAY.
            for check in checks.ALL:
                page.goto(f"{url}/assets/{check.asset}?view=checks&checkDetail={check.name}")
                expect(page.get_by_text(check.spec().description, exact=True)).to_be_visible()
                expect(field(page, "Evaluation result")).to_have_text("Passed")
                expect(field(page, "Partition")).to_have_text(DAY)
                # The result's description names its day.
                expect(page.get_by_text(re.compile(rf"^{DAY}: "))).to_be_visible()
                # The check list beside it: every check of the asset has succeeded.
                expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(checks.of_asset(check.asset)))
            page.screenshot(path=artifacts / "ui-checks.png", full_page=True)

            # The day's materialization of clusters: its plot metadata renders as a PNG image.
            page.goto(f"{url}/assets/clusters?view=partitions&partition={DAY}")
            expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
            plot_row = page.get_by_role("row").filter(has=page.get_by_text("plot", exact=True))
            plot_row.get_by_text("[Show Markdown]").click()
            image = page.get_by_role("dialog").get_by_role("img", name=f"clusters of {DAY}")
            expect(image).to_be_visible()
            expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
            assert image.evaluate("img => img.complete && img.naturalWidth") > 100  # decoded, not a broken image
            page.screenshot(path=artifacts / "ui-plot.png", full_page=True)
        except BaseException:
            with suppress(Exception):  # a page that is gone must not hide the failure
                page.screenshot(path=artifacts / "ui-failure.png", full_page=True)
            raise
