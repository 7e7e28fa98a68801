"""The FiftyOne App as a person uses it, driven by Playwright (shared by the browser tests)."""

from __future__ import annotations

import os
import re
import socket

from playwright.sync_api import TimeoutError as PlaywrightTimeout

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(os.path.dirname(HERE), "artifacts", "browser")
SCREENSHOTS = os.path.join(REPO, "docs", "screenshots")
"""Screenshots the documentation shows, written by the tests that prove what they show."""
TIMEOUT_MS = 90_000
OPEN_ATTEMPTS = 3
"""Clicks on a grid tile before giving up on the sample modal opening."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppPage:
    """The FiftyOne App as a person uses it."""

    def __init__(self, page):
        self.page = page
        os.makedirs(ARTIFACTS, exist_ok=True)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector('[data-cy="looker"]', timeout=TIMEOUT_MS)
        dismiss = self.page.get_by_text("Dismiss", exact=True)
        if dismiss.count():  # the Enterprise advert covers part of the grid
            dismiss.first.click()

    def screenshot(self, name: str, *, docs: bool = False, element=None) -> str:
        folder = SCREENSHOTS if docs else ARTIFACTS
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name)
        (element or self.page).screenshot(path=path)
        return path

    def open_operator(self, label: str):
        self.page.keyboard.press("`")
        self.page.keyboard.type(label)
        self.page.get_by_text(label, exact=True).first.click()
        modal = self.page.locator('[data-cy="operators-prompt-modal"]')
        modal.wait_for(timeout=TIMEOUT_MS)
        return modal

    def execute(self, modal, expect_text: str) -> None:
        modal.get_by_role("button", name="Execute").click()
        # in the operator's output dialog, not only in the notification that comes just before it
        self.page.get_by_role("dialog").get_by_text(expect_text).first.wait_for(timeout=TIMEOUT_MS)

    def close_output(self, button: str = "Close") -> None:
        from playwright.sync_api import expect

        self.page.get_by_role("dialog").get_by_role("button", name=button).click()
        expect(self.page.get_by_role("dialog")).to_have_count(0, timeout=TIMEOUT_MS)  # the output is a dialog of its own

    def show_only(self, field: str, hide: str) -> None:
        self.page.locator(f'[data-cy="sidebar-field-{field}"]').wait_for(timeout=TIMEOUT_MS)
        checkbox = self.page.locator(f'[data-cy="checkbox-{hide}"] input')
        if checkbox.is_checked():
            self.page.locator(f'[data-cy="checkbox-{hide}"]').click()

    def zoom_grid(self, fraction: float) -> None:
        slider = self.page.locator('[data-cy="slider"]').last.bounding_box()
        self.page.mouse.click(slider["x"] + slider["width"] * fraction, slider["y"] + slider["height"] / 2)
        self.page.wait_for_timeout(1500)

    def select_samples(self, count: int) -> None:
        lookers = self.page.locator('[data-cy="looker"]')
        for i in range(count):
            lookers.nth(i).hover()
            lookers.nth(i).locator('[data-cy="looker-checkbox-"]').click()

    def open_sample(self, index: int = 0):
        """Opens the ``index``-th tile of the grid in the sample modal; returns the modal's looker."""
        looker = self.page.locator('[data-cy="modal-looker-container"]')
        # a click while the grid is still laying its tiles out can be lost (seen under load):
        # click again until the modal opens, within the usual timeout in all
        for attempt in range(OPEN_ATTEMPTS):
            self.page.locator('[data-cy="looker"]').nth(index).click()
            try:
                looker.wait_for(timeout=TIMEOUT_MS // OPEN_ATTEMPTS)
                break
            except PlaywrightTimeout:
                if attempt == OPEN_ATTEMPTS - 1:
                    raise
        self.page.wait_for_timeout(1500)
        return looker

    def close_sample(self) -> None:
        self.page.keyboard.press("Escape")
        self.page.locator('[data-cy="modal-looker-container"]').wait_for(state="detached", timeout=TIMEOUT_MS)

    def hover_label(self, looker, image_size: tuple[int, int], box: list[float]) -> str:
        """Hovers the centre of a box (FiftyOne's relative ``[x, y, w, h]``) on the modal's image,
        fitted and centred in the looker as the App draws it; returns the tooltip's text."""
        area = looker.bounding_box()
        width, height = image_size
        scale = min(area["width"] / width, area["height"] / height)
        left = area["x"] + (area["width"] - width * scale) / 2
        top = area["y"] + (area["height"] - height * scale) / 2
        x = left + (box[0] + box[2] / 2) * width * scale
        y = top + (box[1] + box[3] / 2) * height * scale
        self.page.mouse.move(x - 5, y - 5)
        self.page.mouse.move(x, y)
        tooltip = self.page.locator('[data-cy="sample-canvas-tooltip-content"]')
        tooltip.first.wait_for(timeout=TIMEOUT_MS)
        return tooltip.first.inner_text()

    def choose(self, form, label: str, option: str) -> None:
        """Picks ``option`` in the form's dropdown labelled ``label``."""
        form.locator(f"xpath=//*[text()='{label}']/following::*[@role='combobox'][1]").click()
        # an option's accessible name may hold its description too: match the name it starts with
        self.page.get_by_role("option").filter(has_text=re.compile(rf"^{re.escape(option)}")).first.click()

    @staticmethod
    def shown_choice(form, label: str) -> str:
        """The value the form's dropdown labelled ``label`` shows."""
        return form.locator(f"xpath=//*[text()='{label}']/following::*[@role='combobox'][1]").inner_text().strip()
