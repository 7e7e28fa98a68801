"""The whole App flow in a real browser: annotate, see the labels, accept some, evaluate.

Playwright drives Debian's Chromium (installed by tests/browser/install.sh when
missing) against the FiftyOne App, with this checkout loaded as a plugin and the
emulator answering as Gemini (the App server inherits GOOGLE_GEMINI_BASE_URL).
Screenshots go to tests/artifacts/browser/.
"""

from __future__ import annotations

import os
import socket

import fiftyone as fo
import pytest

from gemini_annotate import review

pytestmark = pytest.mark.browser

HERE = os.path.dirname(os.path.abspath(__file__))
ARTIFACTS = os.path.join(os.path.dirname(HERE), "artifacts", "browser")
CLASSES = "person, cup, wine glass, bowl, dining table, broccoli"
# bright colours that stand out on photos, one per class
COLOR_POOL = ["#ff6d04", "#00e5ff", "#ffee00", "#ff00e1", "#39ff14", "#ff1744", "#ffffff"]
TIMEOUT_MS = 90_000


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
def app(coco_dataset, emulator, oracle_for, installed_plugin, monkeypatch):
    """The App serving the COCO samples, with the plugin loaded and the emulator as Gemini."""
    # FiftyOne (open source) offers "Schedule" only with this setting, run by `fiftyone delegated launch`
    monkeypatch.setenv("FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS", "true")
    coco_dataset.persistent = True  # the App server is another process
    coco_dataset.app_config.color_scheme = fo.ColorScheme(color_by="value", color_pool=COLOR_POOL)
    coco_dataset.save()
    emulator(oracle_for(coco_dataset))  # sets GOOGLE_GEMINI_BASE_URL, inherited by the App server
    port = _free_port()
    session = fo.launch_app(coco_dataset, remote=True, address="127.0.0.1", port=port, auto=False)
    yield session, f"http://127.0.0.1:{port}/datasets/{coco_dataset.name}"
    fo.close_app()


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

    def screenshot(self, name: str) -> str:
        path = os.path.join(ARTIFACTS, name)
        self.page.screenshot(path=path)
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


def test_annotate_accept_and_evaluate_in_the_app(app, playwright_browser, coco_dataset):
    _, url = app
    page = playwright_browser.new_page(viewport={"width": 1400, "height": 950})
    ui = AppPage(page)
    try:
        ui.open(url)
        ui.screenshot("01-dataset.png")

        form = ui.open_operator("Annotate with Gemini")
        form.locator("xpath=//*[text()='Class names']/following::input[1]").fill(CLASSES)
        form.get_by_text("6 of 6 sample(s) → 6 request(s)").wait_for(timeout=TIMEOUT_MS)
        ui.screenshot("02-annotate-form.png")
        ui.execute(form, "6 labeled (0 partial), 0 failed")
        ui.screenshot("03-run-summary.png")
        ui.close_output("Done")

        wanted = {c.strip() for c in CLASSES.split(",")}
        expected = sum(1 for labels in coco_dataset.values("ground_truth.detections.label") for label in labels
                       if label in wanted)
        coco_dataset.reload()
        assert coco_dataset.count("gemini.detections") == expected > 0
        ui.show_only("gemini", hide="ground_truth")
        ui.zoom_grid(0.8)
        ui.screenshot("04-gemini-labels-in-grid.png")

        ui.zoom_grid(0.0)
        ui.select_samples(2)
        form = ui.open_operator("Accept or reject Gemini labels")
        form.get_by_text("Current selection").wait_for(timeout=TIMEOUT_MS)
        form.get_by_text("Accept: ").wait_for(timeout=TIMEOUT_MS)
        ui.screenshot("05-accept-selected.png")
        ui.execute(form, "now accepted")
        ui.close_output()
        form = ui.open_operator("Accept or reject Gemini labels")
        form.get_by_text("Reject", exact=True).click()
        form.locator("xpath=//*[text()='Only these classes (optional)']/following::input[1]").fill("dining table")
        form.get_by_text("Reject: ").wait_for(timeout=TIMEOUT_MS)
        ui.execute(form, "now rejected")
        ui.close_output()
        selected = coco_dataset.values("id")[:2]  # the first two tiles of the grid
        counts = review.review_counts(coco_dataset.select(selected), "gemini").statuses
        tables = coco_dataset.select(selected).count_values("gemini.detections.label")["dining table"]
        assert counts["rejected"] == tables > 0
        assert counts["accepted"] == coco_dataset.select(selected).count("gemini.detections") - tables
        assert review.review_counts(coco_dataset.exclude(selected), "gemini").statuses["unreviewed"] == \
            coco_dataset.exclude(selected).count("gemini.detections")

        ui.execute(ui.open_operator("Mark samples reviewed"), "sample(s) reviewed")
        ui.close_output()
        form = ui.open_operator("Evaluate Gemini against reviewed labels")
        form.get_by_text("2 reviewed sample(s) will be evaluated").wait_for(timeout=TIMEOUT_MS)
        ui.execute(form, "mAP is not reported")
        page.get_by_text(f"FP {tables}, FN 0").first.wait_for(timeout=TIMEOUT_MS)
        ui.screenshot("06-evaluation.png")

        coco_dataset.reload()
        assert coco_dataset.has_evaluation("gemini_eval")
        assert set(coco_dataset.select(selected).values("gemini_reviewed")) == {True}
    except Exception:
        ui.screenshot("failure.png")
        raise
    finally:
        page.close()


def test_run_scheduled_from_the_form_completes_under_delegated_launch(app, playwright_browser, coco_dataset,
                                                                      delegated_launch):
    _, url = app
    page = playwright_browser.new_page(viewport={"width": 1400, "height": 950})
    ui = AppPage(page)
    try:
        ui.open(url)
        for field, schedule in (("now", False), ("scheduled", True)):
            form = ui.open_operator("Annotate with Gemini")
            form.locator("xpath=//*[text()='Class names']/following::input[1]").fill(CLASSES)
            form.locator("xpath=//*[text()='Label field']/following::input[1]").fill(field)
            form.get_by_text("6 of 6 sample(s) → 6 request(s)").wait_for(timeout=TIMEOUT_MS)
            if schedule:
                form.locator("button:right-of(:text('Execute'))").first.click()
                page.get_by_text("Schedule", exact=True).first.click()
                ui.screenshot("07-schedule-form.png")
                form.get_by_role("button", name="Schedule").click()
                page.get_by_text("scheduled", exact=False).first.wait_for(timeout=TIMEOUT_MS)
                ui.screenshot("08-scheduled.png")
            else:
                ui.execute(form, "6 labeled (0 partial), 0 failed")
                ui.close_output("Done")

        coco_dataset.reload()
        assert not coco_dataset.has_field("scheduled")  # queued, not run by the App
        (op,) = delegated_launch(coco_dataset.name)

        assert op.run_state == "completed", delegated_launch.log[-3000:]
        coco_dataset.reload()
        boxes = {field: [sorted((d.label, tuple(d.bounding_box)) for d in v.detections)
                         for v in coco_dataset.values(field)] for field in ("now", "scheduled")}
        assert boxes["scheduled"] == boxes["now"] and any(boxes["now"])
    except Exception:
        ui.screenshot("failure-scheduled.png")
        raise
    finally:
        page.close()
