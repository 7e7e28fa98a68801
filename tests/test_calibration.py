"""Calibration from reviews: fitting confidences to what people kept, ECE, storing with the run, the diagram."""

from __future__ import annotations

import json
import subprocess
import sys

import fiftyone as fo
import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

import gemini_annotate
from gemini_annotate import review, runs
from gemini_annotate.calibration import (
    Calibration,
    ReliabilityBin,
    expected_calibration_error,
    fit_calibration,
    fit_curve,
    reliability_bins,
)
from gemini_annotate.emulator import OracleNoise
from gemini_annotate.review.calibration import confidence_outcomes
from gemini_annotate.run_records import load_calibration_entry


def _bernoulli(confidences, seed=0):
    return np.random.default_rng(seed).random(len(confidences)) < np.asarray(confidences)


def test_a_calibrated_model_keeps_its_confidences():
    confidences = np.random.default_rng(1).uniform(0, 1, 20000)
    curve = fit_curve(confidences, _bernoulli(confidences))

    for confidence in (0.1, 0.3, 0.5, 0.7, 0.9):
        assert curve.apply(confidence) == pytest.approx(confidence, abs=0.05)


def test_an_overconfident_model_is_brought_down_to_how_often_it_is_right():
    kept = [True] * 60 + [False] * 40

    calibration = fit_calibration([0.95] * 100, kept, ["cup"] * 100)

    assert calibration.apply("cup", 0.95) == pytest.approx(0.6)
    assert calibration.apply("cup", 0.5) == pytest.approx(0.6)  # flat beyond what was seen


def test_calibrated_values_never_fall_as_the_confidence_rises():
    confidences = np.random.default_rng(2).uniform(0, 1, 500)
    curve = fit_curve(confidences, np.random.default_rng(3).random(500) < 0.5)

    values = [curve.apply(c) for c in np.linspace(0, 1, 101)]

    assert all(b >= a for a, b in zip(values, values[1:])) and 0 <= values[0] and values[-1] <= 1


@pytest.mark.parametrize("confidences, kept, ece", [
    ([0.95] * 10, [True] * 6 + [False] * 4, 0.35),                # one bin, overconfident
    ([0.15] * 4 + [0.85] * 4, [False] * 4 + [True] * 4, 0.15),    # under- then overconfident: gaps add up
    ([0.5, 0.5], [True, False], 0.0),                             # right on
    ([0.05] + [0.55] * 3, [True, True, True, False], 0.325),      # weighted by count: (0.95 + 3 × 0.1167) / 4
    ([1.0, 0.95], [True, True], 0.025),                           # 1.0 is in the last bin
    ([], [], 0.0),                                                # nothing reviewed
])
def test_the_ece_weighs_each_bins_gap_by_its_labels(confidences, kept, ece):
    assert expected_calibration_error(reliability_bins(confidences, kept)) == pytest.approx(ece, abs=1e-9)


def test_the_reliability_table_lists_the_bins_that_hold_labels():
    table = reliability_bins([0.12, 0.18, 0.91], [False, True, True], bins=10)

    assert table == [ReliabilityBin(0.1, 0.2, pytest.approx(0.15), 0.5, 2), ReliabilityBin(0.9, 1.0, 0.91, 1.0, 1)]
    assert table[0].gap == pytest.approx(-0.35)


@pytest.mark.parametrize("min_per_class, own_curves", [
    (30, ["cup"]),          # fork has 10 reviews: too few
    (10, ["cup", "fork"]),
    (100, []),              # everyone on the global curve
])
def test_a_class_with_too_few_reviews_uses_the_global_curve(min_per_class, own_curves):
    # cups: said 0.9, kept 9 in 10; forks: said 0.9, all rejected
    confidences = [0.9] * 40 + [0.9] * 10
    kept = [i % 10 != 0 for i in range(40)] + [False] * 10
    classes = ["cup"] * 40 + ["fork"] * 10

    calibration = fit_calibration(confidences, kept, classes, min_per_class=min_per_class)

    assert sorted(calibration.per_class) == own_curves
    assert calibration.apply("spoon", 0.9) == pytest.approx(36 / 50)  # a class never reviewed: global
    assert calibration.apply("fork", 0.9) == pytest.approx(0.0 if "fork" in own_curves else 36 / 50)


@pytest.mark.parametrize("confidences, kept, classes, error", [
    ([], [], [], "nothing to fit"),
    ([0.5, 0.6], [True], ["a", "a"], "2 confidences for 1 review outcomes"),
    ([0.5], [True], ["a", "b"], "2 classes for 1 confidences"),
    ([1.5], [True], ["a"], "between 0 and 1"),
    ([float("nan")], [True], ["a"], "between 0 and 1"),
])
def test_fitting_refuses_what_it_cannot_fit(confidences, kept, classes, error):
    with pytest.raises(ValueError, match=error):
        fit_calibration(confidences, kept, classes)


def test_a_calibration_survives_json_and_back():
    confidences = np.random.default_rng(4).uniform(0, 1, 200)
    classes = ["cup" if i % 3 else "fork" for i in range(200)]
    calibration = fit_calibration(confidences, _bernoulli(confidences ** 2), classes, min_per_class=50,
                                  run_key="run-1", label_field="gemini")

    loaded = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))

    assert loaded == calibration
    assert [loaded.apply("fork", c) for c in (0.2, 0.7)] == [calibration.apply("fork", c) for c in (0.2, 0.7)]
    assert "fork (67)" in loaded.describe() and "cup (133)" in loaded.describe()


OVERCONFIDENT = fit_calibration([0.9] * 10, [True] * 5 + [False] * 5, ["cup"] * 10)


def test_calibrating_labels_twice_gives_what_once_gives():
    labels = [fo.Detection(label="cup", confidence=0.9), fo.Detection(label="cup"),
              fo.Keypoint(label="cup", points=[(0.1, 0.2)], confidence=[0.9])]

    assert review.calibrate_labels(labels, OVERCONFIDENT) == 2
    once = [label.confidence for label in labels]
    assert review.calibrate_labels(labels, OVERCONFIDENT) == 2

    assert [label.confidence for label in labels] == once == [0.5, None, [0.5]]
    assert labels[0].raw_confidence == 0.9 and labels[2].raw_confidence == [0.9]
    assert not labels[1].has_field("raw_confidence")


# the database: a noisy run, reviewed as a person would, calibrated and evaluated


def _confidences_unrelated_to_correctness(dataset, seed=11):
    """Gives every true object a random confidence (0.5–1): the oracle answers with it."""
    rng = np.random.default_rng(seed)
    for sample in dataset.select_fields("ground_truth"):
        for detection in sample.ground_truth.detections:
            detection.confidence = float(rng.uniform(0.5, 1.0))
        sample.save()


# spurious boxes as sure as the true ones on average, and some true boxes given another class
UNRELATED_NOISE = OracleNoise(false_positive_rate=0.7, false_positive_confidence=0.75, relabel_rate=0.15,
                              jitter=0.05, seed=7)


@pytest.fixture
def reviewed_noisy_run(coco_dataset, emulator, oracle_for, review_as_a_person):
    _confidences_unrelated_to_correctness(coco_dataset)
    emulator(oracle_for(coco_dataset, noise=UNRELATED_NOISE))
    summary = gemini_annotate.annotate(coco_dataset, label_field="gemini", confidence=True)
    review_as_a_person(coco_dataset, "gemini")
    return coco_dataset, summary.run_key


def test_calibration_from_reviews_lowers_the_ece_and_is_stored_with_the_run(reviewed_noisy_run, tmp_path):
    dataset, run_key = reviewed_noisy_run
    before = review.evaluate(dataset, "gemini")
    assert before.calibrated_runs == [] and before.ece == before.raw_ece

    calibration = review.calibrate(dataset, "gemini")
    after = review.evaluate(dataset, "gemini")

    assert calibration.run_key == run_key and calibration.count == sum(b.count for b in before.reliability)
    assert review.load_calibration(dataset, run_key) == calibration
    assert after.calibrated_runs == [run_key] and after.raw_ece == pytest.approx(before.ece)
    assert before.ece > 0.15 and after.ece < before.ece / 3
    assert "ECE" in after.describe() and f"raw {before.ece:.3f}" in after.describe()
    json.dumps(after.to_dict())  # the operator returns it as its result


def test_a_calibration_fitted_on_some_reviews_improves_the_others(reviewed_noisy_run):
    dataset, run_key = reviewed_noisy_run
    ids = dataset.values("id")
    fitted_on, held_out = dataset.select(ids[::2]), dataset.select(ids[1::2])
    before = review.evaluate(held_out, "gemini", eval_key="held_out_raw")

    review.calibrate(fitted_on, "gemini")
    after = review.evaluate(held_out, "gemini", eval_key="held_out")

    assert after.calibrated_runs == [run_key]
    assert after.ece < before.ece / 2


def test_applying_a_calibration_rewrites_confidences_once_and_keeps_the_raw_ones(reviewed_noisy_run):
    dataset, run_key = reviewed_noisy_run
    raw = {d.id: d.confidence for value in dataset.values("gemini") for d in value.detections if d.confidence}
    calibration = review.calibrate(dataset, "gemini")

    review.apply_calibration(dataset, "gemini", calibration)
    once = dataset.values("gemini.detections.confidence", unwind=True)
    calibrated = review.apply_calibration(dataset, "gemini", calibration)

    assert calibrated == len(raw)
    assert dataset.values("gemini.detections.confidence", unwind=True) == once
    for value in dataset.values("gemini"):
        for d in value.detections:
            if d.id in raw:
                assert d.raw_confidence == raw[d.id]
                assert d.confidence == pytest.approx(calibration.apply(d.label, raw[d.id]))
    # refitting after applying learns from the raw confidences, not from the calibrated ones
    assert review.calibrate(dataset, "gemini") == calibration


def test_a_run_without_reviewed_confidences_cannot_be_calibrated(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="plain")
    review.mark_reviewed(coco_dataset, "plain")

    with pytest.raises(review.ReviewError, match="confidence=True"):
        review.calibrate(coco_dataset, "plain")
    assert review.evaluate(coco_dataset, "plain").ece is None


def test_a_calibration_is_not_inherited_by_a_new_run_under_the_same_key(reviewed_noisy_run):
    dataset, run_key = reviewed_noisy_run
    review.calibrate(dataset, "gemini")
    info = dataset.get_run_info(run_key)

    dataset.delete_run(run_key)
    assert review.load_calibration(dataset, run_key) is None
    dataset.register_run(run_key, info.config)

    assert review.load_calibration(dataset, run_key) is None
    assert review.load_calibration(dataset, "never-run") is None


def test_edits_count_as_kept_while_gemini_s_object_survives(make_dataset, tmp_path):
    # one image, three proposals a person accepted, nudged, and moved onto another object
    path = str(tmp_path / "blank.png")
    Image.new("RGB", (64, 64)).save(path)
    dataset = make_dataset()
    boxes = {"kept": [0.1, 0.1, 0.3, 0.3], "nudged": [0.5, 0.5, 0.3, 0.3], "moved": [0.1, 0.6, 0.2, 0.2]}
    dataset.add_sample(fo.Sample(filepath=path, gemini=fo.Detections(detections=[
        fo.Detection(label=name, bounding_box=box, confidence=0.8, gemini_run="run-1", review="unreviewed")
        for name, box in boxes.items()])))
    review.keep_proposals(dataset, "gemini")
    sample = dataset.first()
    kept, nudged, moved = sample.gemini.detections
    kept.review = "accepted"
    nudged.bounding_box, nudged.review = [0.52, 0.5, 0.3, 0.3], "edited"
    moved.bounding_box, moved.review = [0.7, 0.1, 0.2, 0.2], "edited"
    sample.save()
    review.mark_reviewed(dataset, "gemini")

    outcomes = {o.label_class: o.kept for o in confidence_outcomes(dataset, "gemini")}

    assert outcomes == {"kept": True, "nudged": True, "moved": False}


def test_the_reliability_diagram_draws_raw_and_calibrated_confidences(reviewed_noisy_run, tmp_path):
    dataset, _ = reviewed_noisy_run
    review.calibrate(dataset, "gemini")
    report = review.evaluate(dataset, "gemini")

    figure = review.reliability_figure(report)
    path = review.save_reliability_png(report, str(tmp_path / "reliability.png"))

    assert isinstance(figure, go.Figure)
    assert [trace.name.split(" (")[0] for trace in figure.data] == ["perfectly calibrated", "raw", "calibrated"]
    assert list(figure.data[2].y) == [b.observed for b in report.reliability]
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (600, 500)
        assert len(set(image.convert("RGB").getdata())) > 10  # something was drawn


def test_a_report_without_confidences_has_no_diagram(coco_dataset, emulator, oracle_for, tmp_path):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="plain")
    review.mark_reviewed(coco_dataset, "plain")
    report = review.evaluate(coco_dataset, "plain")

    with pytest.raises(review.ReviewError, match="nothing to draw"):
        review.reliability_figure(report)
    with pytest.raises(review.ReviewError, match="nothing to draw"):
        review.save_reliability_png(report, str(tmp_path / "none.png"))


def test_later_runs_of_a_calibrated_run_write_calibrated_confidences(reviewed_noisy_run, tmp_path):
    dataset, run_key = reviewed_noisy_run
    calibration = review.calibrate(dataset, "gemini")
    newcomer = fo.Sample(filepath=dataset.first().filepath)
    dataset.add_sample(newcomer)

    gemini_annotate.annotate(dataset, label_field="gemini", confidence=True)  # tops the run up: one new sample

    added = dataset[newcomer.id].gemini.detections
    assert added and all(d.raw_confidence is not None for d in added)
    assert [d.confidence for d in added] == [pytest.approx(calibration.apply(d.label, d.raw_confidence))
                                            for d in added]


def test_the_command_line_calibrates_and_draws_the_reliability_diagram(reviewed_noisy_run, tmp_path):
    dataset, run_key = reviewed_noisy_run
    dataset.persistent = True  # seen by the command's own process; deleted with the fixture's clone
    png = tmp_path / "reliability.png"

    calibrated = subprocess.run([sys.executable, "-m", "gemini_annotate.cli", "calibrate", dataset.name],
                                capture_output=True, text=True, timeout=300)
    evaluated = subprocess.run([sys.executable, "-m", "gemini_annotate.cli", "evaluate", dataset.name,
                                "--reliability-png", str(png)], capture_output=True, text=True, timeout=300)

    assert calibrated.returncode == 0, calibrated.stderr
    assert f"stored with run {run_key!r}" in calibrated.stdout
    assert evaluated.returncode == 0, evaluated.stderr
    assert "ECE" in evaluated.stdout and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert review.load_calibration(dataset, run_key) is not None


def test_deleting_a_run_forgets_its_calibration(reviewed_noisy_run):
    dataset, run_key = reviewed_noisy_run
    review.calibrate(dataset, "gemini")

    assert load_calibration_entry(dataset, run_key) is not None

    runs.delete_run(dataset, run_key)

    assert load_calibration_entry(dataset, run_key) is None
