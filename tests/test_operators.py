"""The App operators, run through FiftyOne's own executor (immediate and delegated)."""

from __future__ import annotations

import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionRunState

import gemini_annotate
from gemini_annotate import review
from gemini_annotate.config import AnnotateConfig
from gemini_annotate.emulator import Canned
from gemini_annotate.media import estimate_image_tokens
from gemini_annotate.operators import PLUGIN_NAME, config_from_params
from gemini_annotate.estimate import preview_run
from gemini_annotate.shards import shard_params


def operator(name):
    return foo.get_operator(f"{PLUGIN_NAME}/{name}")


def _labels(dataset, field):
    return {sid: sorted((d.label, tuple(round(v, 6) for v in d.bounding_box)) for d in (value.detections if value else []))
            for sid, value in zip(*dataset.values(["id", field]))}


def test_operator_called_from_python_writes_what_the_library_writes(coco_dataset, emulator, oracle_for, installed_plugin):
    emulator(oracle_for(coco_dataset))

    summary = operator("annotate_with_gemini")(coco_dataset, classes=["person", "dog"], label_field="from_app")
    gemini_annotate.annotate(coco_dataset, classes=["person", "dog"], label_field="from_python")

    assert summary.done == len(coco_dataset) and summary.labels > 0
    assert _labels(coco_dataset, "from_app") == _labels(coco_dataset, "from_python")
    assert coco_dataset.get_run_info("from_app").config.classes == ["person", "dog"]


def test_operator_runs_on_the_view_it_is_given(coco_dataset, emulator, oracle_for, installed_plugin):
    server = emulator(oracle_for(coco_dataset))

    operator("annotate_with_gemini")(coco_dataset.take(2, seed=4), label_field="gemini")

    assert server.count() == 2 and len(coco_dataset.exists("gemini")) == 2


def test_delegated_run_completes_under_fiftyone_delegated_launch_with_the_same_labels(
        coco_dataset, emulator, oracle_for, installed_plugin, delegated_launch):
    emulator(oracle_for(coco_dataset))
    annotate = operator("annotate_with_gemini")
    annotate(coco_dataset, label_field="immediate", classes="person,bowl,cup")

    queued = annotate(coco_dataset, label_field="delegated", classes="person,bowl,cup", delegate=True)
    assert not coco_dataset.has_field("delegated")  # queued, not run
    (op,) = delegated_launch(coco_dataset.name)

    assert op.id == queued.result["id"]
    assert op.run_state == ExecutionRunState.COMPLETED, (op.status, delegated_launch.log[-3000:])
    coco_dataset.reload()
    assert _labels(coco_dataset, "delegated") == _labels(coco_dataset, "immediate")
    assert sum(len(v) for v in _labels(coco_dataset, "delegated").values()) > 0
    assert op.result.result["done"] == len(coco_dataset)


def test_missing_key_stops_the_operator_with_the_way_to_fix_it(coco_dataset, emulator, installed_plugin, monkeypatch):
    emulator(Canned('{"boxes": []}'))
    monkeypatch.delenv("GEMINI_API_KEY")

    with pytest.raises(Exception, match="No Gemini API key found.*GEMINI_API_KEY"):
        operator("annotate_with_gemini")(coco_dataset, label_field="gemini")
    assert not coco_dataset.has_field("gemini")


@pytest.mark.parametrize("params, expected", [
    ({"if_labeled": "new_field", "label_field": "gemini", "new_label_field": "gemini_2"},
     {"label_field": "gemini_2", "if_labeled": "skip"}),
    ({"if_labeled": "replace_unreviewed"}, {"label_field": "gemini", "if_labeled": "replace_unreviewed"}),
    ({"classes": "cat, dog,"}, {"classes": ("cat", "dog")}),
    ({"classes_from": "field", "classes_field": "ground_truth", "classes": "ignored"},
     {"classes": ("bowl", "broccoli")}),
    ({"prompt": "   "}, {"prompt": None}),
])
def test_form_parameters_become_a_run_configuration(coco_dataset, params, expected):
    config = config_from_params(params, coco_dataset)
    for name, value in expected.items():
        got = getattr(config, name)
        if name == "classes" and params.get("classes_from") == "field":
            assert set(value) <= set(got) and got == tuple(sorted(got))
        else:
            assert got == value


def test_a_queued_shard_runs_the_configuration_it_was_queued_with():
    config = AnnotateConfig(
        task="classify", classes=("indoor", "outdoor"), multi_label=True, label_field="scene",
        model="gemini-2.5-flash", concurrency=3, timeout=9.5, max_attempts=2, max_requests=40,
        max_tokens=9000, unknown_labels="keep", if_labeled="replace_unreviewed", run_key="scene_run",
        thinking_level="low", max_objects=5, prompt="Where was {place} taken?", image_transport="uri",
        uri_field="url", reference_images=("a.jpg",), media_resolution="low", max_image_side=800,
        batch_poll_interval=5.0, vertexai=True, project="p", location="us-central1",
    )

    assert config_from_params(shard_params(config, 1, 3)) == config.model_copy(update={"shard": 1, "num_shards": 3})
    batch = AnnotateConfig(batch=True, batch_wait=False, batch_poll_interval=7.0)
    assert config_from_params(shard_params(batch, 0, 1)) == batch


def test_preview_counts_requests_and_tokens_of_the_images_as_sent(coco_dataset):
    config = AnnotateConfig(label_field="gemini", max_image_side=512)
    widths, heights = coco_dataset.values(["metadata.width", "metadata.height"])
    expected = sum(estimate_image_tokens(w, h, max_side=512) for w, h in zip(widths, heights))

    preview = preview_run(coco_dataset, config)

    assert (preview.samples, preview.to_send, preview.skipped) == (6, 6, 0)
    assert preview.image_tokens == expected
    assert preview.prompt_tokens > 0 and "6 request(s)" in preview.describe()


def test_preview_counts_the_reference_images_and_their_sentence_in_every_request(coco_dataset):
    plain = preview_run(coco_dataset, AnnotateConfig(label_field="gemini", max_image_side=512))
    reference = coco_dataset.first()
    with_references = preview_run(coco_dataset, AnnotateConfig(
        label_field="gemini", max_image_side=512, reference_images=[reference.filepath] * 2))

    per_reference = estimate_image_tokens(reference.metadata.width, reference.metadata.height, max_side=512)
    assert with_references.image_tokens == plain.image_tokens + 2 * per_reference * plain.to_send
    assert with_references.prompt_tokens > plain.prompt_tokens  # the sentence saying what the references are


def test_preview_reads_image_headers_when_metadata_is_missing(coco_dataset):
    config = AnnotateConfig(label_field="gemini")
    with_metadata = preview_run(coco_dataset, config)
    coco_dataset.set_values("metadata", [None] * len(coco_dataset))

    assert preview_run(coco_dataset, config).image_tokens == with_metadata.image_tokens
    extrapolated = preview_run(coco_dataset, config, header_budget=2)
    assert extrapolated.sized == 2 and "extrapolated" in extrapolated.describe()


def test_preview_skips_labeled_samples_and_counts_reviewed_labels_an_overwrite_would_lose(
        coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(2), label_field="gemini")
    review.mark_reviewed(coco_dataset.limit(1), "gemini")
    accepted = review.review_counts(coco_dataset, "gemini").statuses["accepted"]

    skip = preview_run(coco_dataset, AnnotateConfig(label_field="gemini"))
    overwrite = preview_run(coco_dataset, AnnotateConfig(label_field="gemini", if_labeled="overwrite"))

    assert (skip.to_send, skip.skipped) == (4, 2)
    assert overwrite.to_send == 6 and overwrite.reviewed_labels == accepted > 0


def test_review_operators_accept_selected_labels_mark_promote_and_evaluate(coco_dataset, emulator, oracle_for, installed_plugin):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini")
    first = coco_dataset.first()
    chosen = [d.id for d in first.gemini.detections[:2]]
    wrong = first.gemini.detections[2].id

    operator("review_gemini_labels")(coco_dataset, "gemini", "accepted", label_ids=chosen)
    operator("review_gemini_labels")(coco_dataset, "gemini", "rejected", label_ids=[wrong])
    statuses = {d.id: d.review for d in coco_dataset.first().gemini.detections}
    assert [statuses[i] for i in chosen] == ["accepted", "accepted"] and statuses[wrong] == "rejected"
    assert list(statuses.values()).count("unreviewed") == len(statuses) - 3

    operator("mark_samples_reviewed")(coco_dataset.limit(1), "gemini")
    operator("promote_reviewed_labels")(coco_dataset, "gemini", "reviewed_truth")
    result = operator("evaluate_gemini_labels")(coco_dataset, "gemini")

    assert coco_dataset.count("reviewed_truth.detections") == len(statuses) - 1
    assert result["samples"] == 1 and result["false_positives"] == 1 and result["false_negatives"] == 0
    assert "| person |" in result["report"] and "mAP is not reported" in result["report"]


def _form(dataset, name, params, monkeypatch=None):
    """The annotate form as the App gets it: property name → its JSON."""
    import asyncio

    from fiftyone.operators.executor import ExecutionResult, resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    request = {"dataset_name": dataset.name, "view": dataset.view()._serialize(), "params": params}
    resolved = asyncio.run(resolve_type(OperatorRegistry(), f"{PLUGIN_NAME}/{name}", request))
    assert not isinstance(resolved, ExecutionResult), resolved.error
    return resolved.to_json()["type"]["properties"]


def test_annotate_form_offers_what_to_do_with_labeled_samples_only_when_there_are_some(
        coco_dataset, emulator, oracle_for, installed_plugin):
    emulator(oracle_for(coco_dataset))
    assert "if_labeled" not in _form(coco_dataset, "annotate_with_gemini", {})

    gemini_annotate.annotate(coco_dataset.limit(2), label_field="gemini")
    form = _form(coco_dataset, "annotate_with_gemini", {"if_labeled": "new_field"})

    choices = [c["value"] for c in form["if_labeled"]["view"]["choices"]]
    assert choices == ["skip", "replace_unreviewed", "new_field", "overwrite"]
    assert form["new_label_field"]["default"] == "gemini_2"
    assert "6 of 6 sample(s)" in form["preview"]["view"]["description"]  # a new field: all are sent
    assert "view_target" in form  # FiftyOne's dataset / view / selection choice


def test_annotate_form_offers_every_registered_task(coco_dataset, installed_plugin):
    task = _form(coco_dataset, "annotate_with_gemini", {})["task"]
    assert task["type"]["values"] == list(gemini_annotate.TASKS)


def test_annotate_form_takes_classes_from_a_label_field(coco_dataset, installed_plugin):
    form = _form(coco_dataset, "annotate_with_gemini", {"classes_from": "field", "classes_field": "ground_truth"})

    assert "classes" not in form
    found = form["classes_found"]["view"]["label"]
    assert found.startswith(f"{len(coco_dataset.distinct('ground_truth.detections.label'))} classes: ")


def test_annotate_form_warns_when_no_key_is_set(coco_dataset, installed_plugin, monkeypatch):
    assert "no_key" not in _form(coco_dataset, "annotate_with_gemini", {})
    monkeypatch.delenv("GEMINI_API_KEY")

    warning = _form(coco_dataset, "annotate_with_gemini", {})["no_key"]["view"]
    assert "GEMINI_API_KEY" in warning["description"]


def test_annotate_form_warns_before_an_overwrite_loses_reviewed_labels(coco_dataset, emulator, oracle_for, installed_plugin):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(1), label_field="gemini")
    review.mark_reviewed(coco_dataset.limit(1), "gemini")

    form = _form(coco_dataset, "annotate_with_gemini", {"if_labeled": "overwrite"})

    accepted = coco_dataset.count("gemini.detections")
    assert form["overwrite_warning"]["view"]["label"].startswith(f"Overwriting replaces {accepted} label(s)")


def test_runs_operator_inspects_and_deletes(coco_dataset, emulator, oracle_for, installed_plugin):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini", prompt="Find the cups.")
    runs = operator("gemini_runs")

    shown = runs._run_from_python(coco_dataset, {"run_key": "gemini", "action": "inspect"}).result["message"]
    assert "prompt: Find the cups." in shown and "6 labeled" in shown

    runs._run_from_python(coco_dataset, {"run_key": "gemini", "action": "delete", "delete_labels": True})
    coco_dataset.reload()
    assert coco_dataset.list_runs() == [] and not coco_dataset.has_field("gemini")


@pytest.mark.parametrize("label_field", ["ground_truth_status", "filepath", "metadata"])
def test_annotate_refuses_a_field_that_holds_something_else(coco_dataset, emulator, oracle_for, installed_plugin,
                                                            label_field):
    coco_dataset.set_values("ground_truth_status", ["checked"] * len(coco_dataset))
    server = emulator(oracle_for(coco_dataset))

    form = _form(coco_dataset, "annotate_with_gemini", {"label_field": label_field})
    assert "choose another label field" in form["invalid"]["view"]["description"]
    with pytest.raises(Exception, match="choose another label field"):
        operator("annotate_with_gemini")(coco_dataset, label_field=label_field, if_labeled="overwrite")
    assert server.count() == 0


def test_review_operators_say_when_there_is_nothing_to_review(coco_dataset, installed_plugin):
    with pytest.raises(Exception, match="no Gemini pre-annotations yet"):
        operator("mark_samples_reviewed")(coco_dataset, "ground_truth")


def test_operator_called_into_a_new_field_returns_that_runs_summary(coco_dataset, emulator, oracle_for,
                                                                   installed_plugin):
    emulator(oracle_for(coco_dataset))
    annotate = operator("annotate_with_gemini")
    annotate(coco_dataset.limit(2), label_field="gemini")

    summary = annotate(coco_dataset, label_field="gemini", if_labeled="new_field")

    assert summary.label_field == "gemini_2" and summary.done == len(coco_dataset)
    assert len(coco_dataset.exists("gemini")) == 2


def test_operator_refuses_an_option_it_does_not_know(coco_dataset, installed_plugin):
    with pytest.raises(TypeError, match="concurency"):
        operator("annotate_with_gemini")(coco_dataset, concurency=4)


def test_evaluate_operator_scores_the_samples_it_is_given(coco_dataset, emulator, oracle_for, installed_plugin):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini")
    review.mark_reviewed(coco_dataset.limit(3), "gemini")

    result = operator("evaluate_gemini_labels")(coco_dataset.limit(1), "gemini")

    assert result["samples"] == 1
    assert result["true_positives"] == coco_dataset.limit(1).count("gemini.detections")


def test_evaluate_operator_scores_a_classification_field_without_an_iou(described_dataset, emulator,
                                                                        described_oracle, installed_plugin):
    emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="classify", classes=["indoor", "outdoor"], label_field="scene")
    review.mark_reviewed(described_dataset, "scene")

    form = _form(described_dataset, "evaluate_gemini_labels", {"label_field": "scene"})
    result = operator("evaluate_gemini_labels")(described_dataset, "scene")

    assert "iou" not in form
    assert [c["value"] for c in form["gt_field"]["view"]["choices"]] == ["(kept)", "truth_scene"]
    assert result["true_positives"] == len(described_dataset) and result["precision"] == 1.0
    assert "IoU" not in result["report"]


def test_annotate_form_offers_confidence_for_object_tasks_only(coco_dataset, installed_plugin, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))

    result = operator("annotate_with_gemini")(coco_dataset, confidence=True, label_field="ranked")

    assert "confidence" in _form(coco_dataset, "annotate_with_gemini", {"task": "segment"})
    assert "confidence" not in _form(coco_dataset, "annotate_with_gemini", {"task": "caption"})
    assert result.labels == coco_dataset.count("ranked.detections.confidence") > 0


def test_options_the_form_hides_for_a_task_are_ignored_not_refused():
    # a checkbox ticked for detect keeps its value in the form when the task becomes caption
    config = config_from_params({"task": "caption", "confidence": True, "multi_label": True})

    assert (config.task, config.confidence, config.multi_label) == ("caption", False, False)
    assert config_from_params({"task": "segment", "confidence": True}).confidence


def test_review_forms_offer_only_fields_they_can_work_on(described_dataset, emulator, described_oracle,
                                                         installed_plugin):
    emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="classify", classes=["person", "cup"], multi_label=True,
                             label_field="present")
    gemini_annotate.annotate(described_dataset, task="caption", label_field="caption")

    evaluate = _form(described_dataset, "evaluate_gemini_labels", {})
    accept = _form(described_dataset, "review_gemini_labels", {})

    assert "no_runs" in evaluate  # captions are text, multi-label classes cannot be evaluated
    assert accept["label_field"]["type"]["values"] == ["present"]


def test_annotate_form_asks_what_each_task_needs(coco_dataset, installed_plugin):
    assert "multi_label" not in _form(coco_dataset, "annotate_with_gemini", {})
    classify = _form(coco_dataset, "annotate_with_gemini", {"task": "classify", "classes": "a,b"})
    vqa = _form(coco_dataset, "annotate_with_gemini", {"task": "vqa", "prompt": "How many cups?"})

    assert classify["multi_label"]["view"]["name"] == "CheckboxView"
    assert vqa["prompt"]["view"]["label"] == "Question" and vqa["prompt"]["required"]
    assert config_from_params({"task": "classify", "classes": "a,b", "multi_label": True}).multi_label
