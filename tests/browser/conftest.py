"""Fixtures of the browser tests: Chromium through Playwright, and the App serving a dataset."""

from __future__ import annotations

import pytest

from app_page import free_port


@pytest.fixture(scope="module")
def playwright_browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium.executable, args=list(chromium.args))
        yield browser
        browser.close()


@pytest.fixture
def launch_app(installed_plugin, monkeypatch):
    """``launch_app(dataset)`` serves ``dataset`` in the App with this checkout's plugin loaded;
    returns its URL. Start the emulator first: the App server inherits GOOGLE_GEMINI_BASE_URL."""
    import fiftyone as fo

    # FiftyOne (open source) offers "Schedule" only with this setting, run by `fiftyone delegated launch`
    monkeypatch.setenv("FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS", "true")
    launched = []

    def launch(dataset) -> str:
        dataset.persistent = True  # the App server is another process
        dataset.save()
        port = free_port()
        fo.launch_app(dataset, remote=True, address="127.0.0.1", port=port, auto=False)
        launched.append(port)
        return f"http://127.0.0.1:{port}/datasets/{dataset.name}"

    yield launch
    if launched:
        fo.close_app()


@pytest.fixture
def browser_page(playwright_browser):
    """A fresh page at a size that shows the grid, the sidebar and an operator form."""
    page = playwright_browser.new_page(viewport={"width": 1400, "height": 950})
    yield page
    page.close()
