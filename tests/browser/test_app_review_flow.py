"""The whole App flow in a real browser: annotate, see the labels, accept some, evaluate.

Playwright drives Debian's Chromium (installed by tests/browser/install.sh when
missing) against the FiftyOne App, with this checkout loaded as a plugin and the
emulator answering as Gemini (the App server inherits GOOGLE_GEMINI_BASE_URL).
Screenshots go to tests/artifacts/browser/.
"""

from __future__ import annotations

import fiftyone as fo
import pytest
from app_page import TIMEOUT_MS, AppPage

from gemini_annotate import review

pytestmark = pytest.mark.browser

CLASSES = "person, cup, wine glass, bowl, dining table, broccoli"
# bright colours that stand out on photos, one per class
COLOR_POOL = ["#ff6d04", "#00e5ff", "#ffee00", "#ff00e1", "#39ff14", "#ff1744", "#ffffff"]


@pytest.fixture
def app(coco_dataset, emulator, oracle_for, launch_app):
    """The App serving the COCO samples, with the plugin loaded and the emulator as Gemini."""
    coco_dataset.app_config.color_scheme = fo.ColorScheme(color_by="value", color_pool=COLOR_POOL)
    coco_dataset.save()
    emulator(oracle_for(coco_dataset))  # sets GOOGLE_GEMINI_BASE_URL, inherited by the App server
    return None, launch_app(coco_dataset)


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
        form.get_by_text("Also change labels a person already reviewed").click()  # they were just accepted
        form.get_by_text("earlier review(s)").wait_for(timeout=TIMEOUT_MS)
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
