"""Review status you can see in the App, right after a review operator, without a page reload.

A run draws its labels by review status (a color scheme on the dataset) and
saves a view with the rejected labels hidden; a review operator makes the App
reload the samples it changed, so a label's tooltip and color follow at once.
"""

from __future__ import annotations

import pytest
from app_page import TIMEOUT_MS, AppPage

import gemini_annotate
from gemini_annotate.vocabulary import REVIEW_ATTRIBUTE

pytestmark = pytest.mark.browser

CLASSES = ["person", "cup", "wine glass", "bowl", "dining table", "broccoli"]


@pytest.fixture
def annotated(coco_dataset, emulator, oracle_for):
    """The COCO samples with Gemini's boxes in ``gemini``, nothing reviewed yet."""
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, classes=CLASSES, label_field="gemini")
    return coco_dataset


def _largest_label(dataset, sample_id):
    sample = dataset[sample_id]
    label = max(sample.gemini.detections, key=lambda d: d.bounding_box[2] * d.bounding_box[3])
    return (sample.metadata.width, sample.metadata.height), label


def test_review_status_shows_in_the_modal_right_after_the_operators_without_a_reload(annotated, launch_app,
                                                                                     browser_page):
    ui = AppPage(browser_page)
    first = annotated.first().id
    size, label = _largest_label(annotated, first)
    try:
        ui.open(launch_app(annotated))
        ui.show_only("gemini", hide="ground_truth")
        looker = ui.open_sample(0)  # the App now holds its copy of this sample
        assert "unreviewed" in ui.hover_label(looker, size, label.bounding_box)
        ui.screenshot("review-status-unreviewed.png", docs=True)
        ui.close_sample()

        ui.select_samples(1)
        form = ui.open_operator("Accept or reject Gemini labels")
        form.get_by_text("Reject", exact=True).click()
        form.locator("xpath=//*[text()='Only these classes (optional)']/following::input[1]").fill(label.label)
        form.get_by_text("Reject: ").wait_for(timeout=TIMEOUT_MS)
        ui.execute(form, "now rejected")
        ui.close_output()
        form = ui.open_operator("Accept or reject Gemini labels")
        form.get_by_text("keep their status").wait_for(timeout=TIMEOUT_MS)  # the rejections stay, and it says so
        ui.execute(form, "now accepted")
        ui.close_output()

        looker = ui.open_sample(0)
        tooltip = ui.hover_label(looker, size, label.bounding_box)
        assert "rejected" in tooltip, tooltip
        ui.screenshot("review-status-colored.png", docs=True)
        annotated.reload()
        statuses = {d.label: d[REVIEW_ATTRIBUTE] for d in annotated[first].gemini.detections}
        assert statuses[label.label] == "rejected"
        assert set(statuses.values()) == {"rejected", "accepted"}
    except Exception:
        ui.screenshot("failure-review-status.png")
        raise
