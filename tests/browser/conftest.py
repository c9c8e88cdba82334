"""Playwright harness for the web editor: Debian's Chromium (never a download), a real
uvicorn serving the whole app on loopback, a fresh browser context per test.

Fixtures:
- `chromium_path`: CHROMIUM_PATH, else `chromium` / `chromium-browser` on PATH; missing, the
  test fails (never skips) naming the Debian package `chromium`.
- `browser`: one headless Chromium for the tests of this folder.
- `live_settings` (override it in a test module for other rules or settings) and
  `live_server`: tests.server_helpers.LiveServer on those settings, admin token ADMIN_TOKEN.
- `page`: a page in its own context (own cookies), `base_url` set to the live server, so
  `page.goto("/ui")` works; `console_errors` holds the console errors it logged.
- `logged_in_page`: `page`, logged in through the login form, on /ui.
- `shot(page, name)`: a screenshot at tests/artifacts/screenshots/<name>.png (gitignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from tests.server_helpers import ADMIN_TOKEN, LiveServer, server_settings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
TIMEOUT_MS = 15_000  # one action or navigation; generous for a loaded 2-core machine


def find_chromium() -> str | None:
    given = os.environ.get("CHROMIUM_PATH")
    if given:
        return given if Path(given).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        pytest.fail(
            "Chromium is not installed: the browser tests need it. Install the Debian "
            "package `chromium` (apt-get install chromium; `make test` does it when root) "
            "or set CHROMIUM_PATH to a Chromium binary.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    """Package-scoped, not session-scoped: while Playwright's sync API runs, this thread
    has a running event loop, and tests elsewhere calling asyncio.run() would fail."""
    from playwright.sync_api import sync_playwright

    args = ["--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=args, timeout=60_000
        )
        yield browser
        browser.close()


@pytest.fixture
def live_settings(tmp_path: Path) -> Settings:
    return server_settings(tmp_path)


@pytest.fixture
def live_server(live_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(live_settings) as server:
        yield server


@pytest.fixture
def console_errors() -> list[str]:
    return []


@pytest.fixture
def page(browser: Any, live_server: LiveServer, console_errors: list[str]) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on(
        "console", lambda message: message.type == "error" and console_errors.append(message.text)
    )
    yield page
    context.close()


def log_in(page: Any, token: str = ADMIN_TOKEN, start: str = "/ui") -> Any:
    """Through the form, as a person would; returns the response of the page landed on."""
    page.goto(start)
    page.fill("#token", token)
    with page.expect_navigation() as landed:
        page.click("button[type=submit]")
    return landed.value


@pytest.fixture
def logged_in_page(page: Any) -> Any:
    response = log_in(page)
    assert response.status == 200, response.status
    return page


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    def take(page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
