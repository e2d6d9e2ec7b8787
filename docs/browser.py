"""The Prefect UI in Debian's Chromium, driven by Playwright, for docs/pictures.py."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium keeps reaching for Google's hosts, which a closed network
# refuses many times a second.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


class Browser:
    def __init__(self, ui: str, auth_string: str) -> None:
        """`ui`: where the UI's pages live (`PrefectUI.pages`)."""
        self.ui = ui
        self.auth_string = auth_string

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        self.page: Any = self._browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        self._login()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:  # what the page showed when it went wrong
            self.page.screenshot(path=str(Path("docs-pictures-failure.png").resolve()))
        self._browser.close()
        self._playwright.stop()

    def _login(self) -> None:
        """The UI asks for the server's auth string once per browser (dmflow's embedded
        server requires it)."""
        self.page.goto(f"{self.ui}/runs")
        self.page.get_by_placeholder("admin:pass").fill(self.auth_string)
        self.page.get_by_role("button", name="Login").click()
        self.page.wait_for_url(lambda url: "/login" not in url)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_load_state("networkidle")

    def retry(self, flow_run: str) -> None:
        """The flow run page's Retry button, then its confirmation."""
        self.open(flow_run)
        self.page.get_by_role("button", name="Retry").first.click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_role("button", name="Retry").click()
        self.page.wait_for_timeout(1000)

    def graph(self, flow_run: str, path: Path) -> None:
        self.open(flow_run)
        self.page.wait_for_timeout(2000)  # the graph draws itself after the data arrives
        self.page.get_by_title("Recenter graph (c)").click()  # fit the runs to the graph
        self.page.wait_for_timeout(1500)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The header and the graph; the logs below it are the next picture's story.
        self.page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1280, "height": 505})

    def artifact(self, key: str, path: Path) -> None:
        """The newest version of the artifact with this key, as the UI renders it."""
        self.open(f"{self.ui}/artifacts/key/{key}")
        self.page.locator("a[href*='/artifacts/artifact/']").first.click()
        self.page.wait_for_load_state("networkidle")
        # The UI scrolls inside its own pane, so a full-page shot stops at the window:
        # a taller window shows the whole summary, usage included.
        self.page.set_viewport_size({"width": VIEWPORT["width"], "height": 1300})
        self.page.wait_for_timeout(1000)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        self.page.set_viewport_size(VIEWPORT)
