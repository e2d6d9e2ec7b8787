"""The Prefect UI as a person meets it after `dmflow run`, in Debian's Chromium driven by
Playwright: the printed link logs in and lands on the run, whose Artifacts tab holds one
summary, the current one. Skipped where Chromium or Playwright is missing (CI installs
neither: `apt install chromium` and `uv sync --group pictures` run it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.fixtures.cli import CliRunner, embedded_prefect_env
from tests.fixtures.postgres import Database

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or importlib.util.find_spec("playwright") is None,
    reason="needs Debian's chromium and Playwright (uv sync --group pictures)",
)


def test_the_printed_link_logs_in_and_shows_the_run_with_one_current_summary(
    dmflow: CliRunner, db: Database, sample_dataset: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from docs.browser import CHROMIUM_FLAGS

    env = embedded_prefect_env(DMFLOW_DATABASE_URL=db.url, DMFLOW_DATA_DIR=str(tmp_path))
    try:
        ran = dmflow("run", sample_dataset, "--no-train", "--max-pairs", "20", env=env, timeout=300)
        assert ran.returncode == 0, ran.stderr[-3000:]
        [link] = [
            line.removeprefix("Prefect UI: ")
            for line in ran.stdout.splitlines()
            if line.startswith("Prefect UI: ")
        ]
        run = json.loads(dmflow("runs", "--json", env=env).stdout)[0]
        auth = (tmp_path / "prefect" / "auth").read_text().strip()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(link)
            page.get_by_placeholder("admin:pass").fill(auth)  # a login form, not "Not found"
            page.get_by_role("button", name="Login").click()
            page.wait_for_url(lambda url: "/login" not in url)
            page.wait_for_load_state("networkidle")
            assert run["flow_run_id"] in page.url
            # The page shows the run by its own name, with no error notice.
            page.get_by_text(f"training-run-sample-{run['id'][:8]}").first.wait_for()
            body = page.inner_text("body")
            assert "Page not found" not in body and "Something went wrong" not in body
            page.get_by_role("tab", name="Artifacts").click()
            page.wait_for_load_state("networkidle")
            cards = page.get_by_text(f"training-run-{run['id']}", exact=True)
            cards.first.wait_for()
            assert cards.count() == 1, "one summary card, updated in place"
            assert f"generated: training run {run['id'][:8]}" in page.inner_text("main")
            browser.close()
    finally:
        dmflow("server", "stop", env=env)
