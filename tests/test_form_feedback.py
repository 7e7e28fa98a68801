"""What the App's forms say: plain sentences for invalid input, model-name warnings, prices,
review previews that own up to overriding a person, and run details people can read."""

from __future__ import annotations

import datetime

import fiftyone as fo
import pytest
from pydantic import ValidationError

import gemini_annotate
from gemini_annotate import review, runs
from gemini_annotate.config import AnnotateConfig
from gemini_annotate.costs import load_prices, money, online_and_batch_cost, price_sentence, user_prices
from gemini_annotate.form_errors import form_problems, plain_validation_error
from gemini_annotate.model_profiles import model_name_warning
from gemini_annotate.operators import FORM_LABELS, PLUGIN_NAME, field_under_review, review_status_patches
from gemini_annotate.review.evaluation import class_score
from gemini_annotate.review.status import person_reviews_changed
from gemini_annotate.review_colors import REJECTED_HIDDEN_VIEW, REVIEW_COLORS


@pytest.mark.parametrize("options, field, sentence", [
    ({"task": "classify"}, None, "The classify task needs classes: the closed set of labels to choose from."),
    ({"label_field": "9lives"}, "label_field",
     "Label field: label_field '9lives' must start with a letter and hold only letters, digits and underscores."),
    ({"consensus": 0}, "consensus", "Answers per image: input should be greater than or equal to 1."),
])
def test_config_errors_read_as_one_plain_sentence_naming_the_form_label(options, field, sentence):
    with pytest.raises(ValidationError) as raised:
        AnnotateConfig(**options)

    (problem,) = form_problems(raised.value, FORM_LABELS)
    assert (problem.field, problem.sentence) == (field, sentence)
    text = plain_validation_error(raised.value, FORM_LABELS)
    assert text == sentence and "pydantic" not in text and "Value error" not in text


@pytest.mark.parametrize("model, warns", [
    ("gemini-3-flash-preview", False),
    ("models/gemini-2.5-flash", False),
    ("gemini-2.0-flash-lite", False),
    ("gemini-flash-latest", False),
    ("banana", True),
    ("gpt-4o", True),
    ("gemni-2.5-flash", True),
])
def test_model_names_no_profile_knows_get_a_warning(model, warns):
    warning = model_name_warning(model)
    assert (warning is not None) == warns
    if warns:
        assert repr(model) in warning and "check the spelling" in warning


def test_price_sentence_gives_online_and_batch_prices_from_the_table_a_user_overrides(tmp_path, monkeypatch):
    online, batch = online_and_batch_cost(1_000_000, 0, "gemini-2.5-flash")
    assert (online, batch) == pytest.approx((0.30, 0.15))
    assert "$0.30 online, $0.15 with the Batch API" in price_sentence(1_000_000, 0, "gemini-2.5-flash", 10)
    assert "no price known for my-model" in price_sentence(10, 10, "my-model", 1)

    table = tmp_path / "prices.json"
    table.write_text('{"my-model": {"input_per_million": 2.0, "output_per_million": 0.0}}')
    monkeypatch.setenv("GEMINI_ANNOTATE_PRICES", str(table))
    assert "$2.00 online, $1.00 with the Batch API" in price_sentence(1_000_000, 0, "my-model", 1, user_prices())
    assert user_prices()["gemini-2.5-flash"] == load_prices(None)["gemini-2.5-flash"]
    assert (money(0.004), money(12.5), money(None)) == ("$0.0040", "$12.50", "unknown")


@pytest.mark.parametrize("row, metric, shown", [
    ({"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}, "precision", "0.000"),
    ({"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}, "recall", "–"),
    ({"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}, "f1-score", "–"),
    ({"precision": 0.5, "recall": 1.0, "f1-score": 0.667, "support": 2}, "recall", "1.000"),
])
def test_a_class_no_reviewed_label_holds_shows_no_recall_or_f1(row, metric, shown):
    assert class_score(row, metric) == shown


def test_run_details_are_readable_and_count_the_run_s_own_samples(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(3), label_field="gemini")

    info = runs.run_info(coco_dataset, "gemini")

    assert runs.format_started(datetime.datetime(2026, 11, 30, 15, 33, 36, 788000)) == "2026-11-30 15:33 UTC"
    assert "samples reviewed" in info.describe() and info.review.samples == 3 < len(coco_dataset)
    assert ".788" not in info.describe()


def test_accepting_a_selection_leaves_a_rejection_alone_unless_asked(coco_dataset, emulator, oracle_for,
                                                                     installed_plugin):
    import fiftyone.operators as foo

    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(1), label_field="gemini")
    sample = coco_dataset.first()
    rejected = sample.gemini.detections[0].id
    review_op = foo.get_operator(f"{PLUGIN_NAME}/review_gemini_labels")
    review_op(coco_dataset, "gemini", "rejected", label_ids=[rejected])

    assert person_reviews_changed(coco_dataset, "gemini", "accepted") == {"rejected": 1}
    review_op(coco_dataset.limit(1), "gemini", "accepted")
    assert coco_dataset.first().gemini.detections[0].review == "rejected"

    review_op(coco_dataset.limit(1), "gemini", "accepted", change_reviewed=True)
    assert coco_dataset.first().gemini.detections[0].review == "accepted"


def test_forms_default_to_the_field_under_review_not_the_newest(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(2), task="segment", label_field="seg")
    fields = review.pre_annotation_fields(coco_dataset)
    assert field_under_review(coco_dataset, fields) == fields[-1]

    gemini_annotate.annotate(coco_dataset.limit(2), label_field="boxes")
    review.set_review_status(coco_dataset, "seg", "accepted")
    assert field_under_review(coco_dataset, review.pre_annotation_fields(coco_dataset)) == "seg"


def test_a_run_saves_a_view_with_its_rejected_labels_hidden(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(2), label_field="gemini")
    first = coco_dataset.first().gemini.detections[0].id
    review.set_review_status(coco_dataset, "gemini", "rejected", label_ids=[first])

    coco_dataset.reload()
    view = coco_dataset.load_saved_view(REJECTED_HIDDEN_VIEW.format(field="gemini"))

    assert first not in view.values("gemini.detections.id", unwind=True)
    assert view.count("gemini.detections") == coco_dataset.count("gemini.detections") - 1
    entry = next(f for f in coco_dataset.app_config.color_scheme.fields if f["path"] == "gemini")
    assert entry["fieldColor"] == REVIEW_COLORS["unreviewed"]
    assert isinstance(coco_dataset, fo.Dataset)


def test_the_app_is_sent_each_label_s_new_status_for_its_modal_copies(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(2), label_field="gemini")
    first = coco_dataset.first()
    rejected = first.gemini.detections[0].id
    review.set_review_status(coco_dataset, "gemini", "rejected", label_ids=[rejected])

    patches = review_status_patches(coco_dataset.limit(2), "gemini")

    assert set(patches) == set(coco_dataset.limit(2).values("id"))
    assert patches[first.id][rejected] == {"review": "rejected"}
    assert sum(len(p) for p in patches.values()) == coco_dataset.count("gemini.detections")


def test_the_estimate_prices_the_run_online_and_with_the_batch_api(coco_dataset):
    from gemini_annotate.estimate import estimate_run

    online = estimate_run(coco_dataset, AnnotateConfig(model="gemini-2.5-flash"))
    batch = estimate_run(coco_dataset, AnnotateConfig(model="gemini-2.5-flash", batch=True))

    assert online.other_mode_cost == pytest.approx(batch.total_cost) == pytest.approx(online.total_cost / 2)
    assert "with Batch API prices instead" in online.describe()
    assert "with standard (online) prices instead" in batch.describe()
