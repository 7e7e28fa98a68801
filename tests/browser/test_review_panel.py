"""The review panel in a real browser: a labeler's keyboard session over 30 samples.

Playwright drives Debian's Chromium (tests/browser/install.sh) against the
FiftyOne App with this checkout loaded as a plugin. A 30-sample dataset (the six
COCO images, five times each) is pre-annotated through the real SDK by the
emulator; the test opens the "Gemini review" panel, clicks its key box once and
then only types: ``a`` or ``r`` for the label the panel shows, until nothing is
left. It checks that the page was never reloaded and that every label's status
in the database is the key pressed while the panel showed it.
The screenshot of the panel mid-session is written to docs/screenshots/review-panel.png.
"""

from __future__ import annotations

import os
import re
import socket

import fiftyone as fo
import pytest

import gemini_annotate
from gemini_annotate.emulator import NOISE_PROFILES

pytestmark = pytest.mark.browser

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(os.path.dirname(HERE), "artifacts", "browser")
SCREENSHOT = os.path.join(REPO, "docs", "screenshots", "review-panel.png")
CLASSES = ["dining table", "bowl", "sink", "refrigerator"]
COPIES = 5
TIMEOUT_MS = 90_000
PANEL = "gemini_review"
KEY_BOX_LABEL = "Key box: click here, then type"
KEY_STATUS = {"a": "accepted", "r": "rejected"}


@pytest.fixture(scope="module")
def playwright_browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium.executable, args=list(chromium.args))
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def thirty_samples(coco_dataset, make_dataset, emulator, oracle_for):
    """30 samples (each COCO image five times) pre-annotated with confidences by a noisy emulator."""
    dataset = make_dataset()
    dataset.add_samples([fo.Sample(filepath=s.filepath, metadata=s.metadata, ground_truth=s.ground_truth)
                         for _ in range(COPIES) for s in coco_dataset], progress=False)
    dataset.persistent = True  # the App server is another process
    emulator(oracle_for(coco_dataset, noise=NOISE_PROFILES["flash"]))
    gemini_annotate.annotate(dataset, classes=CLASSES, label_field="gemini", confidence=True, concurrency=2)
    assert len(dataset) == 30 and dataset.count("gemini.detections") >= 30
    return dataset


@pytest.fixture
def app(thirty_samples, installed_plugin):
    port = _free_port()
    fo.launch_app(thirty_samples, remote=True, address="127.0.0.1", port=port, auto=False)
    yield f"http://127.0.0.1:{port}/datasets/{thirty_samples.name}"
    fo.close_app()


class ReviewPanel:
    """The review panel as a labeler uses it."""

    def __init__(self, page):
        self.page = page

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector('[data-cy="looker"]', timeout=TIMEOUT_MS)
        for banner in ("Dismiss", "Disable"):  # the Enterprise advert, the analytics question
            button = self.page.get_by_text(banner, exact=True)
            if button.count():
                button.first.click()
        truth = self.page.locator('[data-cy="checkbox-ground_truth"]')
        if truth.locator("input").is_checked():  # only Gemini's labels, drawn by review status
            truth.click()
        self.page.locator('[data-cy="new-panel-btn"]').first.click()
        self.page.locator(f'[data-cy="new-panel-option-{PANEL}"]').click()
        self.page.get_by_text("samples reviewed").first.wait_for(timeout=TIMEOUT_MS)
        slider = self.page.locator('[data-cy="slider"]').last.bounding_box()  # the grid's zoom: largest tiles
        self.page.mouse.click(slider["x"] + slider["width"] - 2, slider["y"] + slider["height"] / 2)

    def text(self) -> str:
        # sample and label ids, and the panel's phrases, appear nowhere else in the App
        return self.page.locator("body").inner_text()

    def position(self) -> tuple[str, str]:
        """The sample and label the panel shows (``""`` for none), and ``"done"`` once nothing is left."""
        text = self.text()
        if "Nothing left to review" in text:
            return "done", ""
        sample = re.search(r"Sample\s+([0-9a-f]{24})", text)
        label = re.search(r"Label\s+([0-9a-f]{24})", text)
        return (sample.group(1) if sample else ""), (label.group(1) if label else "")

    def key_box(self):
        return self.page.locator(f"xpath=//*[text()='{KEY_BOX_LABEL}']/following::input[1]")

    def edit_and_come_back(self) -> None:
        """``e``: the sample opens in FiftyOne's own annotation mode; a click beside the modal closes
        it, a click on the key box goes on."""
        annotate = self.page.get_by_text("Annotate", exact=True)  # the modal's Explore | Annotate switch
        self.page.keyboard.press("e")
        annotate.first.wait_for(timeout=TIMEOUT_MS)
        self.page.wait_for_timeout(1500)
        self.page.screenshot(path=os.path.join(ARTIFACTS, "review-panel-edit.png"))
        self.page.mouse.click(8, 500)  # the backdrop around the modal
        self.page.locator('[data-cy="modal"]').wait_for(state="hidden", timeout=TIMEOUT_MS)
        self.key_box().click()

    def wait_until_gone(self, shown: str) -> tuple[str, str]:
        """Waits until the panel no longer shows ``shown`` (the label, or the sample, just decided)."""
        self.page.wait_for_function(
            "(shown) => { const t = document.body.innerText;"
            " return t.includes('samples reviewed') && !t.includes(shown); }",
            arg=shown, timeout=TIMEOUT_MS)
        return self.position()


def test_keyboard_session_over_30_samples_completes_without_reload_and_the_database_matches(
        app, thirty_samples, playwright_browser):
    page = playwright_browser.new_page(viewport={"width": 1600, "height": 1000})
    ui = ReviewPanel(page)
    os.makedirs(ARTIFACTS, exist_ok=True)
    try:
        ui.open(app)
        page.evaluate("window.__reviewSession = 'same page'")  # gone if the page reloads
        ui.key_box().click()

        position = ui.position()
        ui.edit_and_come_back()
        thirty_samples.reload()
        kept = thirty_samples[position[0]]["gemini_proposed"].detections
        assert position[1] in {d.id for d in kept}  # Gemini's version kept before the App's editor opened
        assert ui.position() == position  # the label still waits for a decision

        pressed: dict[str, str] = {}  # label id → the key pressed while the panel showed it
        samples_seen = set()
        for n in range(400):
            if position[0] == "done":
                break
            sample_id, label_id = position
            samples_seen.add(sample_id)
            key = "r" if len(pressed) % 3 == 2 else "a"  # a labeler who rejects a third
            if label_id:
                pressed[label_id] = key
            else:
                key = "a"  # a sample with nothing left to decide: a marks it reviewed
            page.keyboard.press(key)
            position = ui.wait_until_gone(label_id or sample_id)
            if n == 12:  # mid-session, once the grid has drawn the sample the panel shows
                page.locator('[data-cy="looker"]').first.wait_for(state="visible", timeout=TIMEOUT_MS)
                page.wait_for_timeout(2000)
                os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
                page.screenshot(path=SCREENSHOT)
        assert position[0] == "done", "the session did not reach the end of the queue"
        page.screenshot(path=os.path.join(ARTIFACTS, "review-panel-done.png"))

        assert page.evaluate("window.__reviewSession") == "same page"
        thirty_samples.reload()
        statuses = {d.id: d.review for v in thirty_samples.values("gemini") for d in v.detections}
        assert set(pressed) == set(statuses)  # every label was shown once, and decided
        assert {i: statuses[i] for i in pressed} == {i: KEY_STATUS[k] for i, k in pressed.items()}
        assert thirty_samples.count_values("gemini_reviewed") == {True: 30}
        assert samples_seen == set(thirty_samples.values("id"))
        rejected = sum(1 for k in pressed.values() if k == "r")
        precision = 100 * (len(pressed) - rejected) / len(pressed)
        assert f"{precision:.1f} %" in ui.text()
        assert f"{30} of 30 samples reviewed" in ui.text()
    except Exception:
        page.screenshot(path=os.path.join(ARTIFACTS, "review-panel-failure.png"))
        raise
    finally:
        page.close()
