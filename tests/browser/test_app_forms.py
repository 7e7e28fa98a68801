"""The annotate form in the App: it refuses what cannot run, in plain words, and prices what can.

Each test drives the real App in Chromium, with the emulator as Gemini; the
screenshots it takes are the ones docs/ shows.
"""

from __future__ import annotations

import pytest
from app_page import TIMEOUT_MS, AppPage
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

CLASSES = "person, cup, wine glass, bowl, dining table, broccoli"


@pytest.fixture
def form_page(coco_dataset, emulator, oracle_for, launch_app, browser_page):
    """The App on the COCO samples with the annotate form open (the emulator answering as Gemini)."""
    emulator(oracle_for(coco_dataset))
    ui = AppPage(browser_page)
    ui.open(launch_app(coco_dataset))
    form = ui.open_operator("Annotate with Gemini")
    return ui, form


def _choose(ui: AppPage, form, label: str, option: str) -> None:
    form.locator(f"xpath=//*[text()='{label}']/following::*[@role='combobox'][1]").click()
    ui.page.get_by_role("option", name=option, exact=True).click()


def _fill(form, label: str, text: str) -> None:
    form.locator(f"xpath=//*[text()='{label}']/following::input[1]").fill(text)


def test_invalid_form_cannot_execute_and_says_what_to_change(form_page):
    ui, form = form_page
    try:
        _choose(ui, form, "Task", "classify")
        sentence = form.get_by_text("The classify task needs classes: the closed set of labels to choose from.")
        sentence.first.wait_for(timeout=TIMEOUT_MS)
        form.get_by_text("Comma-separated, required: the closed set of classes to choose from").wait_for(
            timeout=TIMEOUT_MS)
        expect(form.get_by_role("button", name="Execute")).to_be_disabled(timeout=TIMEOUT_MS)
        text = form.inner_text()
        assert "validation error" not in text and "pydantic" not in text and "type=value_error" not in text
        sentence.first.scroll_into_view_if_needed()
        ui.screenshot("form-error.png", docs=True)

        _fill(form, "Class names", "cup, bowl")  # the one thing the sentence asked for
        form.get_by_text("Estimated cost").wait_for(timeout=TIMEOUT_MS)
        expect(form.get_by_role("button", name="Execute")).to_be_enabled(timeout=TIMEOUT_MS)
    except Exception:
        ui.screenshot("failure-form-invalid.png")
        raise


def test_form_prices_the_run_online_and_with_the_batch_api(form_page):
    ui, form = form_page
    try:
        _fill(form, "Class names", CLASSES)
        _fill(form, "Model", "gemini-2.5-flash")
        estimate = form.get_by_text("Estimated cost: 6 request(s)")
        estimate.wait_for(timeout=TIMEOUT_MS)
        estimate.scroll_into_view_if_needed()
        line = estimate.inner_text()
        assert " online, $" in line and "with the Batch API" in line, line
        expect(form.get_by_role("button", name="Execute")).to_be_enabled(timeout=TIMEOUT_MS)
        expect(form.get_by_text("Required property")).to_have_count(0, timeout=TIMEOUT_MS)  # the typing settled
        ui.screenshot("form-estimate.png", docs=True)
    except Exception:
        ui.screenshot("failure-form-estimate.png")
        raise


def test_unknown_model_warns_in_the_form_and_a_missing_one_stops_the_run_plainly(form_page, coco_dataset):
    ui, form = form_page
    try:
        _fill(form, "Class names", CLASSES)
        _fill(form, "Model", "banana")
        form.get_by_text("'banana' is not a Gemini model this tool knows").wait_for(timeout=TIMEOUT_MS)
        expect(form.get_by_role("button", name="Execute")).to_be_enabled()  # a warning, not an error
        ui.screenshot("form-unknown-model.png", docs=True)

        ui.execute(form, "Run stopped: Gemini does not know the model 'banana'")
        dialog = ui.page.get_by_role("dialog").inner_text()
        assert "Traceback" not in dialog, dialog
        ui.screenshot("run-stopped-model-not-found.png", docs=True)
    except Exception:
        ui.screenshot("failure-form-model.png")
        raise
