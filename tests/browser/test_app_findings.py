"""Issue 16's findings, each seen in the real App (Chromium) as a person would meet it.

One App and one dataset serve the whole module: the six COCO images, a first
run (``gemini``, every sample) and a newer second one (``second``, the last
three samples), with the emulator as Gemini. A person has rejected one label of
the first run, so ``gemini`` is the field under review. Each test opens its own
page, so what it checks comes fresh from the database.
"""

from __future__ import annotations

import re
import uuid

import fiftyone as fo
import numpy as np
import pytest
from app_page import REPO, TIMEOUT_MS, AppPage, free_port
from fiftyone import ViewField as F
from fiftyone.core.utils import to_slug
from playwright.sync_api import expect

import gemini_annotate
from gemini_annotate import review
from gemini_annotate.tasks import TASKS
from gemini_annotate.vocabulary import REVIEW_ATTRIBUTE

pytestmark = pytest.mark.browser

CLASSES = ["person", "cup", "wine glass", "bowl", "dining table", "broccoli"]
MAGENTA, GREEN = (255, 43, 214), (0, 214, 143)
"""How the App must draw a rejected and an accepted label (review_colors.REVIEW_COLORS, stated
here so that the test fails if the colors drift back to red and green)."""


def _rejected_once(dataset, sample_id):
    """A label of ``gemini`` in the sample whose class appears once there, to reject."""
    labels = dataset[sample_id].gemini.detections
    single = [d for d in labels if sum(e.label == d.label for e in labels) == 1]
    return max(single, key=lambda d: d.bounding_box[2] * d.bounding_box[3])


@pytest.fixture(scope="module")
def findings(coco_dataset_session, tmp_path_factory):
    """``(dataset, url, rejected label)``: two runs, one rejection in the first, served by the App."""
    from gemini_annotate.emulator import EmulatorServer, LabelIndex, Oracle

    with pytest.MonkeyPatch.context() as patch:
        plugins = tmp_path_factory.mktemp("plugins")
        (plugins / "gemini-annotate").symlink_to(REPO, target_is_directory=True)
        patch.setattr(fo.config, "plugins_dir", str(plugins))
        patch.setenv("FIFTYONE_PLUGINS_DIR", str(plugins))
        dataset = coco_dataset_session.clone(f"gemini-annotate-findings-{uuid.uuid4().hex[:8]}")
        server = EmulatorServer(Oracle(LabelIndex.from_samples(dataset, "ground_truth")), keep_requests=32).start()
        patch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)  # inherited by the App server
        patch.setenv("GEMINI_API_KEY", "emulator-test-key")
        try:
            gemini_annotate.annotate(dataset, classes=CLASSES, label_field="gemini")
            gemini_annotate.annotate(dataset.skip(3), classes=CLASSES, label_field="second")
            first = dataset.first().id
            rejected = _rejected_once(dataset, first)
            review.set_review_status(dataset.select_labels(ids=[rejected.id], fields="gemini"), "gemini",
                                     review.REJECTED)
            dataset.persistent = True  # the App server is another process
            dataset.save()
            port = free_port()
            fo.launch_app(dataset, remote=True, address="127.0.0.1", port=port, auto=False)
            yield dataset, f"http://127.0.0.1:{port}/datasets/{dataset.name}", rejected
        finally:
            fo.close_app()
            server.stop()
            dataset.delete()


@pytest.fixture
def ui(findings, browser_page):
    page = AppPage(browser_page)
    page.open(findings[1])
    return page


def _guard(ui: AppPage, name: str):
    """Keeps a screenshot of the page when a test fails."""
    class Guard:
        def __enter__(self):
            return self

        def __exit__(self, kind, *_):
            if kind is not None:
                ui.screenshot(f"failure-findings-{name}.png")
    return Guard()


def test_annotate_form_hints_a_task_list_classify_needs_classes_and_the_whole_dataset_is_said(ui):
    with _guard(ui, "annotate-hints"):
        form = ui.open_operator("Annotate with Gemini")
        form.get_by_text("Nothing selected: this applies to the whole dataset (6 samples)").wait_for(
            timeout=TIMEOUT_MS)
        items = [form.locator("li", has_text=re.compile(rf"^{name}:")) for name in TASKS]
        assert all(item.count() == 1 for item in items), form.inner_text()  # one list item per task
        ui.choose(form, "Task", "classify")
        form.get_by_text("Comma-separated, required: the closed set of classes to choose from").wait_for(
            timeout=TIMEOUT_MS)
        assert "whatever Gemini finds" not in form.inner_text()


def test_review_forms_default_to_the_field_under_review_and_compare_with_names_its_default(ui):
    with _guard(ui, "defaults"):
        form = ui.open_operator("Promote reviewed labels to ground truth")
        form.get_by_text("rejected stay behind").wait_for(timeout=TIMEOUT_MS)
        assert ui.shown_choice(form, "Pre-annotation field") == "gemini"  # reviewed, though "second" is newer
        form.get_by_text("Nothing selected: this applies to the whole dataset").wait_for(timeout=TIMEOUT_MS)
        ui.page.keyboard.press("Escape")

        form = ui.open_operator("Inspect or delete Gemini runs")
        form.get_by_text("samples reviewed").wait_for(timeout=TIMEOUT_MS)
        assert ui.shown_choice(form, "Run") == "gemini"
        ui.page.keyboard.press("Escape")

        form = ui.open_operator("Evaluate Gemini against reviewed labels")
        form.get_by_text("Compare with").wait_for(timeout=TIMEOUT_MS)
        assert ui.shown_choice(form, "Pre-annotation field") == "gemini"
        assert ui.shown_choice(form, "Compare with") == "Labels reviewers kept in 'gemini'"


def test_runs_operator_shows_details_on_lines_a_readable_start_and_progress_over_the_runs_samples(ui):
    with _guard(ui, "runs"):
        form = ui.open_operator("Inspect or delete Gemini runs")
        ui.choose(form, "Run", "second")
        progress = form.locator("li", has_text="samples reviewed")
        expect(progress).to_contain_text("second: 0/3 samples reviewed", timeout=TIMEOUT_MS)  # 3 of 6 labeled
        started = form.locator("li", has_text="run 'second': task").inner_text()
        assert re.search(r"started \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$", started), started
        for line in ("classes: person, cup", "prompt: (the task default)"):
            expect(form.locator("li", has_text=line)).to_have_count(1)  # each detail an item of its own


def test_evaluation_shows_a_dash_for_the_recall_and_f1_of_a_class_with_no_support(findings, ui):
    dataset, _, rejected = findings
    review.mark_reviewed(dataset.select(dataset.first().id), "gemini")  # the rejected class is kept nowhere
    with _guard(ui, "evaluation"):
        form = ui.open_operator("Evaluate Gemini against reviewed labels")
        ui.choose(form, "Pre-annotation field", "gemini")
        form.get_by_text("1 reviewed sample(s) will be evaluated").wait_for(timeout=TIMEOUT_MS)
        ui.execute(form, "Gemini vs reviewed labels")
        row = ui.page.get_by_role("dialog").locator("tr", has=ui.page.locator("td", has_text=rejected.label))
        cells = [c.strip() for c in row.first.locator("td").all_inner_texts()]
        assert cells == [rejected.label, "0.000", "–", "–", "0"], cells


def test_accept_on_selected_samples_keeps_a_rejection_and_says_so(findings, ui):
    dataset, _, _ = findings
    second = dataset.skip(1).first().id  # the grid's second tile
    rejected = _rejected_once(dataset, second)
    review.set_review_status(dataset.select_labels(ids=[rejected.id], fields="gemini"), "gemini", review.REJECTED)
    others = len(dataset[second].gemini.detections) - 1
    with _guard(ui, "accept"):
        ui.page.locator('[data-cy="looker"]').nth(1).wait_for(timeout=TIMEOUT_MS)
        ui.page.locator('[data-cy="looker"]').nth(1).hover()
        ui.page.locator('[data-cy="looker"]').nth(1).locator('[data-cy="looker-checkbox-"]').click()
        form = ui.open_operator("Accept or reject Gemini labels")
        ui.choose(form, "Pre-annotation field", "gemini")  # whatever the default (tested above)
        form.get_by_text(f"Accept: {others} label(s) in 'gemini'; 1 label(s) a person already reviewed keep "
                         "their status").wait_for(timeout=TIMEOUT_MS)
        ui.execute(form, f"{others} label(s) in 'gemini' now accepted")
        ui.close_output()
    dataset.reload()
    statuses = {d.id: d[REVIEW_ATTRIBUTE] for d in dataset[second].gemini.detections}
    assert statuses.pop(rejected.id) == review.REJECTED
    assert set(statuses.values()) == {review.ACCEPTED}


def _pixels_near(path: str, color: tuple[int, int, int], tolerance: int = 40) -> int:
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(image - np.array(color)).max(axis=2) <= tolerance).sum())


def _modal_colors(ui: AppPage, name: str) -> tuple[int, int]:
    """Magenta and green pixels of the first sample opened in the modal (``gemini`` only)."""
    ui.show_only("gemini", hide="ground_truth")
    looker = ui.open_sample(0)
    path = ui.screenshot(name, element=looker)
    return _pixels_near(path, MAGENTA), _pixels_near(path, GREEN)


def test_labels_are_drawn_by_status_and_the_saved_view_hides_the_rejected_ones(findings, ui):
    dataset, url, _ = findings
    first = dataset.select(dataset.first().id)
    review.set_review_status(first.filter_labels("gemini", F(REVIEW_ATTRIBUTE) != review.REJECTED), "gemini",
                             review.ACCEPTED)
    name = "gemini: rejected hidden"
    with _guard(ui, "colors"):
        magenta, green = _modal_colors(ui, "findings-status-colors.png")
        assert magenta > 50 and green > 50, (magenta, green)  # rejected magenta, accepted bluish green
        assert dataset.has_saved_view(name), dataset.list_saved_views()
        ui.open(f"{url}?view={to_slug(name)}")  # the saved view, loaded as the App's view selector does
        magenta, green = _modal_colors(ui, "findings-rejected-hidden.png")
        assert magenta < 10 and green > 50, (magenta, green)
