"""The dashboard in a real browser: ``mlflow ui`` on a tiny sweep's store, and the
sweep's report.html, opened in headless Chromium driven by selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them)
and selenium (the ``test`` extra); skipped where they are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
GENAI_OVERVIEW = "No data available for the selected time range"
"""What MLflow's GenAI overview of traces shows for an experiment without traces."""
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A three-job sweep with its report, run as a user would, in a fresh dir."""
    from mlflow.tracking import MlflowClient

    from depthlab import tracking

    cwd = tmp_path_factory.mktemp("dashboard")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    sweep = ("depth=2..4", "probe.networks=4", "probe.inputs=2", "report=true")
    subprocess.run(
        [sys.executable, "-m", "depthlab", *sweep],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    uri = f"sqlite:///{cwd / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("depthlab")
    parent = tracking.latest_sweep_id(uri, "depthlab")
    children = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.{tracking.PARENT_TAG} = '{parent}'",
    )
    (report,) = cwd.glob("multirun/*/*/report.html")
    return {
        "uri": uri,
        "experiment": experiment,
        "parent_name": client.get_run(parent).info.run_name,
        "child_names": sorted(run.info.run_name for run in children),
        "report": report,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_ui(sweep: dict[str, Any]) -> Iterator[str]:
    """``mlflow ui`` on the sweep's store; its process group is always stopped."""
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow)] if mlflow.exists() else [sys.executable, "-m", "mlflow"]
    where = ("--host", "127.0.0.1", "--port", str(port))
    server = subprocess.Popen(
        [*command, "ui", "--backend-store-uri", sweep["uri"], *where],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow ui did not start on {base}") from None
                time.sleep(0.25)
        yield base
    finally:
        with_group(server, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with_group(server, signal.SIGKILL)
            server.wait(timeout=15)


def with_group(process: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group of ``process`` (its workers included)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium with a fresh profile, console messages recorded."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT).until(condition, message=what)


def _body(driver: Any) -> str:
    return str(driver.execute_script("return document.body.innerText"))


def test_experiment_is_tagged_for_model_training(sweep: dict[str, Any]) -> None:
    from depthlab.tracking import EXPERIMENT_KIND

    key, value = EXPERIMENT_KIND
    assert sweep["experiment"].tags.get(key) == value == "custom_model_development"


def test_dashboard_lists_the_sweeps_runs_by_name(
    sweep: dict[str, Any], mlflow_ui: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    from depthlab.tracking import dashboard_url

    parent = sweep["parent_name"]
    browser.get(dashboard_url(mlflow_ui, sweep["experiment"].experiment_id))
    _wait(browser, lambda d: "Run Name" in _body(d), "the runs table")
    # The parent row (its name may be cut short by the column width).
    row = _wait(
        browser,
        lambda d: next(
            (
                r
                for r in d.find_elements(By.CSS_SELECTOR, ".ag-row")
                if parent[:12] in r.text
            ),
            False,
        ),
        f"the sweep's parent run {parent!r}",
    )
    # The child runs are nested under it: expand it as a user would.
    row.find_element(By.CSS_SELECTOR, "button").click()
    _wait(
        browser,
        lambda d: all(name in _body(d) for name in sweep["child_names"]),
        f"the child runs {sweep['child_names']}",
    )
    text = _body(browser)
    assert "/runs" in browser.current_url
    assert GENAI_OVERVIEW not in text
    assert len(sweep["child_names"]) == 3


def test_report_figures_load_without_console_errors(
    sweep: dict[str, Any], browser: Any
) -> None:
    report = Path(sweep["report"])
    pngs = sorted(report.parent.glob("*.png"))
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(report.as_uri())
    _wait(
        browser,
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every(i => i.complete)"
        ),
        "the report's images",
    )
    widths = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.naturalWidth])"
    )
    assert len(widths) == len(pngs) >= 4
    assert all(width > 0 for _, width in widths), widths
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
