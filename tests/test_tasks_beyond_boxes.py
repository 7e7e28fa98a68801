"""Caption, classify (single and multi-label) and VQA, end to end from the three front doors:
Python, the CLI and the App operator, each through the real SDK to the emulator's oracle."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import fiftyone as fo
import fiftyone.operators as foo
import pytest

import gemini_annotate
from gemini_annotate.config import AnnotateConfig
from gemini_annotate.emulator import Canned
from gemini_annotate.tasks import TASKS

OPERATOR = "@gemini-annotate/gemini-annotate/annotate_with_gemini"
MODEL = "gemini-3-flash-preview"


def _person_count(sample) -> str:
    return str(sum(1 for d in sample.ground_truth.detections if d.label == "person"))


def _caption_ok(sample, value) -> bool:
    return isinstance(value, str) and value == sample.truth_caption


def _scene_ok(sample, value) -> bool:
    return (isinstance(value, fo.Classification) and value.label == sample.truth_scene.label
            and value.gemini_model == MODEL and value.review == "unreviewed")


def _present_ok(sample, value) -> bool:
    present = {d.label for d in sample.ground_truth.detections} & {"person", "cup", "dog"}
    return (isinstance(value, fo.Classifications)
            and sorted(c.label for c in value.classifications) == sorted(present)
            and all(c.gemini_run for c in value.classifications))


def _people_ok(sample, value) -> bool:
    return value == _person_count(sample)


TASK_CASES = [
    pytest.param(dict(task="caption"), _caption_ok, id="caption"),
    pytest.param(dict(task="classify", classes=["indoor", "outdoor"]), _scene_ok, id="classify"),
    pytest.param(dict(task="classify", classes=["person", "cup", "dog"], multi_label=True), _present_ok,
                 id="classify-multi-label"),
    pytest.param(dict(task="vqa", question="How many people are there?"), _people_ok, id="vqa"),
]


def _check_every_sample(dataset, field, check):
    dataset.reload()
    for sample in dataset:
        assert check(sample, sample[field]), f"{field} = {sample[field]!r} for {sample.filepath}"
        assert sample[f"{field}_status"] == "ok"


@pytest.mark.parametrize("options, check", TASK_CASES)
def test_python_api_writes_the_task_label_type(described_dataset, emulator, described_oracle, options, check):
    emulator(described_oracle(described_dataset))

    summary = gemini_annotate.annotate(described_dataset, label_field="answer", model=MODEL, **options)

    assert summary.done == len(described_dataset) and summary.failed == 0
    _check_every_sample(described_dataset, "answer", check)


def _cli_flags(options: dict) -> list[str]:
    flags = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        else:
            flags += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    return flags


@pytest.mark.parametrize("options, check", TASK_CASES)
def test_cli_writes_the_task_label_type(described_dataset, emulator, described_oracle, options, check):
    server = emulator(described_oracle(described_dataset))
    described_dataset.persistent = True  # visible to the CLI's process; deleted by the fixture

    done = subprocess.run(
        [sys.executable, "-m", "gemini_annotate.cli", "annotate", described_dataset.name,
         "--label-field", "answer", "--base-url", server.url, "--quiet", *_cli_flags(options)],
        capture_output=True, text=True, timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert f"{len(described_dataset)} labeled" in done.stdout
    _check_every_sample(described_dataset, "answer", check)


def _form_params(options: dict, **more) -> dict:
    """A task's options as the annotate form sends them: lists comma-joined, the question as the prompt."""
    params = {name: ",".join(value) if isinstance(value, list) else value for name, value in options.items()}
    if "question" in params:
        params["prompt"] = params.pop("question")  # the form's prompt field carries the question
    return {**params, **more}


@pytest.mark.parametrize("options, check", TASK_CASES)
def test_app_operator_writes_the_task_label_type(described_dataset, emulator, described_oracle,
                                                  installed_plugin, options, check):
    emulator(described_oracle(described_dataset))
    params = _form_params(options, label_field="answer", model=MODEL)

    result = foo.execute_operator(OPERATOR, dataset=described_dataset, params=params)

    assert result.error is None
    _check_every_sample(described_dataset, "answer", check)


@pytest.mark.parametrize("options, check", TASK_CASES)
def test_app_operator_runs_a_task_again_into_its_own_field(described_dataset, emulator, described_oracle,
                                                          installed_plugin, options, check):
    # the field already holds this task's type (fo.Classifications for multi-label, a string for text)
    emulator(described_oracle(described_dataset))
    params = _form_params(options, label_field="answer", model=MODEL, if_labeled="overwrite")

    first = foo.execute_operator(OPERATOR, dataset=described_dataset, params=params)
    again = foo.execute_operator(OPERATOR, dataset=described_dataset, params=params)

    assert first.error is None and again.error is None, again.error
    _check_every_sample(described_dataset, "answer", check)


@pytest.mark.parametrize("options", [
    dict(task="detect"),
    dict(task="classify", classes=["person", "cup"], multi_label=True),
    dict(task="caption"),
], ids=["detect", "classify-multi-label", "caption"])
def test_a_field_holding_another_label_type_is_refused_before_any_request(described_dataset, emulator,
                                                                           described_oracle, options):
    # truth_scene holds fo.Classification: none of these tasks writes that
    server = emulator(described_oracle(described_dataset))
    before = described_dataset.values("truth_scene")

    with pytest.raises(ValueError, match="'truth_scene' already holds Classification.*choose another label field"):
        gemini_annotate.annotate(described_dataset, label_field="truth_scene", if_labeled="overwrite", **options)

    assert server.count() == 0
    assert described_dataset.values("truth_scene") == before
    assert not described_dataset.has_field("truth_scene_status")


def test_a_view_that_hides_the_field_does_not_hide_what_it_holds(described_dataset, emulator, described_oracle):
    from gemini_annotate.shards import queue_annotation_shards

    server = emulator(described_oracle(described_dataset))
    hidden = described_dataset.exclude_fields("truth_scene")

    with pytest.raises(ValueError, match="'truth_scene' already holds Classification"):
        gemini_annotate.annotate(hidden, label_field="truth_scene")
    with pytest.raises(ValueError, match="'truth_scene' already holds Classification"):
        queue_annotation_shards(hidden, AnnotateConfig(label_field="truth_scene"), num_shards=2)

    assert server.count() == 0 and described_dataset.list_runs() == []


def test_a_segment_run_is_refused_when_its_outline_field_holds_something_else(coco_dataset, emulator, oracle_for):
    coco_dataset.clone_sample_field("ground_truth", "masks_polylines")  # fo.Detections, not fo.Polylines
    server = emulator(oracle_for(coco_dataset))

    with pytest.raises(ValueError, match="'masks_polylines' already holds Detections, not Polylines"):
        gemini_annotate.annotate(coco_dataset, task="segment", label_field="masks")

    assert server.count() == 0 and not coco_dataset.has_field("masks")


def test_the_task_menu_of_the_app_and_cli_lists_every_task():
    from gemini_annotate.cli import build_parser

    choices = next(a for a in build_parser()._subparsers._group_actions[0].choices["annotate"]._actions
                   if a.dest == "task").choices
    assert set(choices) == set(TASKS) >= {"detect", "caption", "classify", "vqa"}


def test_classify_sends_the_class_list_as_a_schema_enum(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset.limit(1), task="classify", classes=["indoor", "outdoor"],
                             label_field="scene")
    gemini_annotate.annotate(described_dataset.limit(1), task="classify", classes=["cup", "dog"],
                             multi_label=True, label_field="objects")

    single, multi = [r.schema for r in list(server.last_requests)[-2:]]
    assert single["properties"]["label"]["enum"] == ["indoor", "outdoor"]
    assert multi["properties"]["labels"]["items"]["enum"] == ["cup", "dog"]


@pytest.mark.parametrize("reply, unknown_labels, label, status", [
    ('{"label": "Outdoors"}', "drop", "outdoor", "ok"),
    ('{"label": "kitchen"}', "drop", None, "partial"),
    ('{"label": "kitchen"}', "keep", "kitchen", "ok"),
    ('outdoor', "drop", "outdoor", "partial"),
    ('{"labels": ["indoor", "outdoor"]}', "drop", None, "failed"),
])
def test_classification_replies_are_matched_to_the_classes(coco_dataset, emulator, reply, unknown_labels,
                                                           label, status):
    emulator(Canned(reply))
    gemini_annotate.annotate(coco_dataset.limit(1), task="classify", classes=["indoor", "outdoor"],
                             unknown_labels=unknown_labels, label_field="scene")

    sample = coco_dataset.first()
    scene = sample["scene"] if sample.has_field("scene") else None
    assert (scene.label if scene else None) == label
    assert sample.scene_status == status


@pytest.mark.parametrize("options, message", [
    (dict(task="classify"), "needs classes"),
    (dict(task="vqa"), "needs a question"),
    (dict(task="vqa", question="Why?", prompt="Why?"), "not both"),
])
def test_task_options_are_checked_before_any_request(options, message):
    with pytest.raises(ValueError, match=message):
        AnnotateConfig(**options)


def test_vqa_question_can_come_as_the_prompt(described_dataset, emulator, described_oracle):
    emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="vqa", prompt="Is there a dog?", label_field="dog")
    assert Counter(described_dataset.values("dog")) == Counter(
        "yes" if any(d.label == "dog" for d in s.ground_truth.detections) else "no" for s in described_dataset)


def test_replace_unreviewed_keeps_reviewed_classifications_and_existing_text(described_dataset, emulator,
                                                                            described_oracle):
    emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="classify", classes=["indoor", "outdoor"], label_field="scene")
    first, second = described_dataset.limit(2)
    first.scene.label, first.scene.review = "corrected", "edited"
    first.save()
    second["caption"] = "written by a person"
    second.save()

    for task, options in (("classify", dict(classes=["indoor", "outdoor"])), ("caption", {})):
        gemini_annotate.annotate(described_dataset, task=task, label_field="scene" if task == "classify" else "caption",
                                 if_labeled="replace_unreviewed", **options)

    described_dataset.reload()
    assert described_dataset[first.id].scene.label == "corrected"
    assert described_dataset[second.id].scene.label == second.truth_scene.label
    assert described_dataset[second.id].caption == "written by a person"
    assert described_dataset[first.id].caption == first.truth_caption


def test_prompt_template_is_filled_per_sample(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset), keep_requests=10)

    gemini_annotate.annotate(described_dataset, task="caption", label_field="caption",
                             prompt="Describe this photo, taken at {place}, labeled {truth_scene}.")

    prompts = sorted(r.prompt for r in server.last_requests)
    expected = sorted(f"Describe this photo, taken at {s.place}, labeled {s.truth_scene.label}."
                      for s in described_dataset)
    assert prompts == expected


def test_sample_missing_a_template_value_fails_alone(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset))
    lost = described_dataset.first()
    lost.place = None
    lost.save()

    summary = gemini_annotate.annotate(described_dataset, task="vqa", question="Is {place} indoors?",
                                       label_field="answer")

    assert summary.failed == 1 and summary.done == len(described_dataset) - 1
    described_dataset.reload()
    assert "'place'" in described_dataset[lost.id].answer_reason
    assert server.count() == len(described_dataset) - 1


def test_template_naming_an_unknown_field_stops_before_sending(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset))
    with pytest.raises(ValueError, match="'weather'"):
        gemini_annotate.annotate(described_dataset, task="caption", prompt="It is {weather} here.")
    assert server.count() == 0
