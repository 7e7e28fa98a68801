"""Detection end to end: real SDK → emulator oracle → real FiftyOne database."""

from __future__ import annotations

import json

import fiftyone as fo
import pytest

import gemini_annotate
from gemini_annotate.emulator import Canned, Refuse
from gemini_annotate.run_records import load_run_summary
from gemini_annotate.vocabulary import RUN_METHOD

QUANTIZATION_BOUND = 0.0005 + 1e-9


def _boxes_by_label(detections):
    return [(d.label, d.bounding_box) for d in detections.detections]


@pytest.mark.parametrize("api", ["generate_content", "interactions"])
def test_oracle_round_trip_recovers_every_box_within_quantization(coco_dataset, emulator, oracle_for, api):
    emulator(oracle_for(coco_dataset))

    summary = gemini_annotate.annotate(coco_dataset, task="detect", label_field="gemini", api=api)

    assert summary.failed == 0 and summary.done == len(coco_dataset)
    assert summary.labels == coco_dataset.count("ground_truth.detections")
    for sample in coco_dataset:
        expected = _boxes_by_label(sample.ground_truth)
        got = _boxes_by_label(sample.gemini)
        assert len(got) == len(expected)
        unmatched = list(got)
        for label, box in expected:
            match = next(
                (g for g in unmatched
                 if g[0] == label and all(abs(a - b) <= QUANTIZATION_BOUND for a, b in zip(
                     (box[0], box[1], box[0] + box[2], box[1] + box[3]),
                     (g[1][0], g[1][1], g[1][0] + g[1][2], g[1][1] + g[1][3])))),
                None,
            )
            assert match is not None, f"{label} {box} not recovered in {sample.filepath}"
            unmatched.remove(match)


def test_evaluation_matches_every_object_and_finds_no_false_positive(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, task="detect", label_field="gemini")

    results = coco_dataset.evaluate_detections("gemini", gt_field="ground_truth", eval_key="ev", iou=0.5)

    assert coco_dataset.sum("ev_fp") == 0
    width = dict(zip(*coco_dataset.values(["id", "metadata.width"])))
    height = dict(zip(*coco_dataset.values(["id", "metadata.height"])))
    for sample in coco_dataset:
        for gt in sample.ground_truth.detections:
            w = gt.bounding_box[2] * width[sample.id]
            h = gt.bounding_box[3] * height[sample.id]
            if min(w, h) >= 8 and not gt.iscrowd:
                assert gt.ev == "tp", f"{gt.label} ({w:.0f}x{h:.0f} px) unmatched"
    assert results.metrics()["precision"] == 1.0


def test_labels_carry_provenance_and_review_status(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(1), task="detect", label_field="pre", model="gemini-3-flash-preview")

    det = coco_dataset.first().pre.detections[0]
    assert det.gemini_model == "gemini-3-flash-preview"
    assert det.gemini_run == "pre"
    assert det.review == "unreviewed"
    assert coco_dataset.first().pre_status == "ok"
    # attributes are declared, so the App's sidebar can filter on them
    assert coco_dataset.get_field("pre.detections.review") is not None


def test_classes_restrict_and_normalise_labels(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset, task="detect", classes=["Person", "dining tables"], label_field="g")

    labels = set(coco_dataset.distinct("g.detections.label"))
    assert labels <= {"Person", "dining tables"} and labels
    expected = coco_dataset.count_values("ground_truth.detections.label")
    assert coco_dataset.count_values("g.detections.label").get("Person") == expected["person"]


def test_classes_go_to_the_model_as_a_schema_enum(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(1), task="detect", classes=["cat", "dog"], label_field="g")

    request = server.last_requests[-1]
    schema_text = json.dumps(request.schema)
    assert '"enum": ["cat", "dog"]' in schema_text
    assert "cat, dog" in request.prompt
    assert len(request.images) == 1  # the sample's image went with the prompt


def test_run_is_recorded_with_its_configuration_but_never_the_key(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    secret = "AIzaSyD-secret-key-for-this-test-000000"

    gemini_annotate.annotate(coco_dataset, task="detect", label_field="gemini", api_key=secret,
                             classes=["person"], prompt="Find people.")

    assert coco_dataset.list_runs(method=RUN_METHOD) == ["gemini"]
    info = coco_dataset.get_run_info("gemini")
    assert info.config.task == "detect" and info.config.classes == ["person"]
    assert info.config.prompt == "Find people." and info.config.model == gemini_annotate.DEFAULT_MODEL
    summary = load_run_summary(coco_dataset, "gemini")
    assert summary.done == len(coco_dataset)
    stored = _database_text(coco_dataset)
    assert '"method": "gemini_annotate"' in stored and "Find people." in stored  # the record is there
    assert secret not in stored


def _database_text(dataset) -> str:
    """Every document of the dataset, its samples and the run records, as text."""
    from bson import json_util
    from fiftyone.core.odm import get_db_conn

    db = get_db_conn()
    names = ["datasets", "runs", dataset._sample_collection_name]
    return "\n".join(json_util.dumps(doc) for name in names for doc in db[name].find())


def test_bad_key_stops_with_one_clear_error_and_writes_nothing(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset), api_keys={"the-right-key"})
    wrong = "AIzaSyWRONG-key-000000000000000000000"

    with pytest.raises(gemini_annotate.AnnotationStopped) as caught:
        gemini_annotate.annotate(coco_dataset, task="detect", label_field="gemini", api_key=wrong)

    message = str(caught.value)
    assert "API key" in message and wrong not in message
    assert not coco_dataset.has_field("gemini")
    assert not coco_dataset.has_field("gemini_status")
    assert coco_dataset.list_runs() == []
    # stopped at once: at most one wave of concurrent requests went out
    assert server.count() <= gemini_annotate.AnnotateConfig().concurrency


def test_unknown_model_stops_the_run_with_a_clear_error(coco_dataset, emulator):
    emulator(Canned('{"boxes": []}'), models={"gemini-3-flash-preview"})

    with pytest.raises(gemini_annotate.AnnotationStopped, match="does not know the model 'gemini-9-nope'"):
        gemini_annotate.annotate(coco_dataset, model="gemini-9-nope", label_field="gemini")
    assert not coco_dataset.has_field("gemini")


def test_systematically_refused_requests_stop_the_run(coco_dataset, emulator):
    server = emulator(Refuse("Invalid value at 'generation_config.thinking_config'"), latency=0.05)

    with pytest.raises(gemini_annotate.AnnotationStopped, match="refused the first 3 requests"):
        gemini_annotate.annotate(coco_dataset, label_field="gemini", concurrency=1)
    assert server.count() == 3
    assert not coco_dataset.has_field("gemini")


def test_missing_key_is_reported_before_any_request(coco_dataset, emulator, monkeypatch):
    server = emulator(Canned('{"boxes": []}'))
    monkeypatch.delenv("GEMINI_API_KEY")

    with pytest.raises(gemini_annotate.GeminiError, match="No Gemini API key"):
        gemini_annotate.annotate(coco_dataset, label_field="gemini")
    assert server.count() == 0


def test_base_url_environment_variable_sends_every_request_there(coco_dataset, emulator, oracle_for, monkeypatch):
    first = emulator(oracle_for(coco_dataset))
    second = emulator(oracle_for(coco_dataset))  # the fixture points the env var at the last one

    gemini_annotate.annotate(coco_dataset, label_field="gemini")

    assert first.count() == 0
    assert second.count() == len(coco_dataset)


def test_explicit_base_url_wins_over_the_environment(coco_dataset, emulator, oracle_for):
    chosen = emulator(oracle_for(coco_dataset))
    env_target = emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset, label_field="gemini", base_url=chosen.url, api="interactions")

    assert chosen.count() == len(coco_dataset) and env_target.count() == 0


def test_runs_on_a_view_and_labels_only_its_samples(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))
    view = coco_dataset.take(2, seed=1)

    summary = gemini_annotate.annotate(view, label_field="gemini")

    assert summary.done == 2 and server.count() == 2
    assert len(coco_dataset.exists("gemini")) == 2
    assert set(coco_dataset.exists("gemini").values("id")) == set(view.values("id"))


def test_rerun_skips_labeled_samples_and_never_touches_reviewed_labels(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini")
    sample = coco_dataset.first()
    sample.gemini.detections[0].review = "accepted"
    sample.gemini.detections[0].label = "edited by a person"
    sample.save()
    before = server.count()

    summary = gemini_annotate.annotate(coco_dataset, label_field="gemini")

    assert server.count() == before and summary.skipped == len(coco_dataset)
    assert coco_dataset.first().gemini.detections[0].label == "edited by a person"


def test_replace_unreviewed_keeps_labels_people_accepted(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini")
    sample = coco_dataset.first()
    kept = sample.gemini.detections[0]
    kept.review = "accepted"
    kept.label = "checked"
    sample.gemini.detections.append(fo.Detection(label="drawn by hand", bounding_box=[0.1, 0.1, 0.2, 0.2]))
    sample.save()
    count_before = len(sample.gemini.detections)

    gemini_annotate.annotate(coco_dataset, label_field="gemini", if_labeled="replace_unreviewed")

    detections = coco_dataset.first().gemini.detections
    labels = [d.label for d in detections]
    assert "checked" in labels and "drawn by hand" in labels
    # the unreviewed pre-annotations were replaced, not duplicated
    assert len(detections) == count_before
    assert next(d for d in detections if d.label == "checked").id == kept.id


def test_empty_answer_is_an_empty_label_set_not_a_failure(coco_dataset, emulator):
    emulator(Canned('{"boxes": []}'))

    summary = gemini_annotate.annotate(coco_dataset, label_field="gemini")

    assert summary.done == len(coco_dataset) and summary.failed == 0
    assert coco_dataset.count("gemini.detections") == 0
    assert set(coco_dataset.distinct("gemini_status")) == {"ok"}


def test_unreadable_answer_fails_the_sample_with_its_reason(coco_dataset, emulator):
    emulator(Canned("I cannot help with that."))

    summary = gemini_annotate.annotate(coco_dataset, label_field="gemini")

    assert summary.failed == len(coco_dataset) and summary.done == 0
    assert not coco_dataset.exists("gemini")
    reasons = coco_dataset.distinct("gemini_reason")
    assert all("unreadable reply" in r and "no readable JSON" in r for r in reasons)


def test_bad_image_fails_only_its_sample(coco_dataset, emulator, oracle_for, tmp_path):
    emulator(oracle_for(coco_dataset))
    missing = fo.Sample(filepath=str(tmp_path / "gone.jpg"))
    broken_path = tmp_path / "broken.jpg"
    broken_path.write_bytes(b"not an image at all")
    coco_dataset.add_samples([missing, fo.Sample(filepath=str(broken_path))])

    summary = gemini_annotate.annotate(coco_dataset, label_field="gemini")

    assert summary.failed == 2 and summary.done == len(coco_dataset) - 2
    assert "image file not found" in coco_dataset[missing.id].gemini_reason
    assert coco_dataset.count_values("gemini_status") == {"ok": len(coco_dataset) - 2, "failed": 2}


def test_annotate_inside_a_running_event_loop(coco_dataset, emulator, oracle_for):
    import asyncio

    emulator(oracle_for(coco_dataset))

    async def from_a_notebook_cell():
        return gemini_annotate.annotate(coco_dataset.limit(2), label_field="gemini")

    summary = asyncio.run(from_a_notebook_cell())
    assert summary.done == 2
