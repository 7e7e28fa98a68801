"""Compare through its other front doors: the ``gemini-annotate compare`` command and the App operator;
and the pure rules it rests on (Pareto front, recommendation, projection, candidate syntax)."""

from __future__ import annotations

import json

import fiftyone.operators as foo
import pytest
from gemini_annotate import annotate
from gemini_annotate.cli import main
from gemini_annotate.compare import candidate_from_text
from gemini_annotate.compare_operator import candidates_from_form
from gemini_annotate.emulator import LabelIndex, tiered_oracle
from gemini_annotate.operators import PLUGIN_NAME
from gemini_annotate.pareto import SetupPoint, pareto_front, project_cost, quality_metric, recommend

LITE, FLASH = "gemini-2.5-flash-lite", "gemini-3-flash-preview"


def _reviewed(dataset, review_as_a_person):
    annotate(dataset, classes=sorted(dataset.distinct("ground_truth.detections.label")), label_field="gemini",
             model=FLASH)
    review_as_a_person(dataset.limit(3), "gemini")


def test_the_command_prints_the_report_and_draws_the_plot(coco_dataset, emulator, review_as_a_person, tmp_path,
                                                          capsys):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    _reviewed(coco_dataset, review_as_a_person)
    png, report = tmp_path / "pareto.png", tmp_path / "report.json"
    code = main(["compare", coco_dataset.name, "--candidate", f"name=lite,model={LITE}",
                 "--candidate", f"name=flash,model={FLASH},consensus=2", "--png", str(png), "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lite " in out and "flash " in out and "recommended: " in out and "Pareto front" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(report.read_text())
    assert [c["name"] for c in data["candidates"]] == ["lite", "flash"]
    assert data["candidates"][1]["requests"] == 6  # consensus 2 on 3 reviewed samples


def test_the_command_refuses_without_reviewed_samples(coco_dataset, emulator, capsys):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    annotate(coco_dataset, label_field="gemini", model=FLASH)
    assert main(["compare", coco_dataset.name, "--candidate", f"model={LITE}"]) == 1
    assert "no sample is marked reviewed for 'gemini'" in capsys.readouterr().err


def test_the_operator_returns_the_table_and_the_plot(coco_dataset, emulator, review_as_a_person, installed_plugin):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    _reviewed(coco_dataset, review_as_a_person)
    compare_setups = foo.get_operator(f"{PLUGIN_NAME}/compare_setups")
    result = compare_setups(coco_dataset, [{"name": "lite", "model": LITE}, {"name": "flash", "model": FLASH}],
                            reference_field="gemini")
    assert "| lite | done |" in result["report"] and "| flash | done |" in result["report"]
    assert result["recommended"] in ("lite", "flash")
    assert result["figure"]["data"] and "Pareto" in result["figure"]["layout"]["title"]["text"]


@pytest.mark.parametrize("text, expected", [
    ("model=gemini-2.5-flash-lite", {"model": "gemini-2.5-flash-lite"}),
    ("name=low, media_resolution=low,consensus=3", {"name": "low", "media_resolution": "low", "consensus": "3"}),
    ('{"name": "h", "hints": ["a, b", "c"]}', {"name": "h", "hints": ["a, b", "c"]}),
])
def test_a_candidate_is_written_as_key_value_pairs_or_json(text, expected):
    assert candidate_from_text(text) == expected


def test_a_candidate_that_is_not_key_value_pairs_is_refused():
    with pytest.raises(ValueError, match="'flash' is not one"):
        candidate_from_text("model=x,flash")


def test_form_rows_become_candidates_without_their_empty_fields():
    rows = [{"name": "a", "model": LITE, "thinking_level": None, "hints": "one\n\ntwo", "max_image_side": ""}]
    assert candidates_from_form(rows) == [{"name": "a", "model": LITE, "hints": ["one", "two"]}]


P = SetupPoint
FRONT_CASES = [
    # name, points, front (cheapest first)
    ("each better and dearer", [P("a", 0.7, 1), P("b", 0.8, 2), P("c", 0.9, 3)], ["a", "b", "c"]),
    ("dominated: dearer and worse", [P("a", 0.8, 1), P("b", 0.7, 2)], ["a"]),
    ("equal cost, better quality", [P("a", 0.8, 1), P("b", 0.9, 1)], ["b"]),
    ("identical points both stay", [P("a", 0.8, 1), P("b", 0.8, 1)], ["a", "b"]),
    ("unmeasured left out", [P("a", None, 1), P("b", 0.5, None), P("c", 0.1, 9)], ["c"]),
    ("nothing measured", [P("a", None, 1)], []),
]


@pytest.mark.parametrize("name, points, front", FRONT_CASES, ids=[c[0] for c in FRONT_CASES])
def test_pareto_front(name, points, front):
    assert pareto_front(points) == front


RECOMMEND_CASES = [
    # name, points, tolerance, recommended
    ("the best when nothing is close", [P("a", 0.7, 1), P("b", 0.9, 5)], 0.02, "b"),
    ("the cheaper within tolerance", [P("a", 0.89, 1), P("b", 0.9, 5)], 0.02, "a"),
    ("exactly at the tolerance counts", [P("a", 0.88, 1), P("b", 0.9, 5)], 0.02, "a"),
    ("just below it does not", [P("a", 0.879, 1), P("b", 0.9, 5)], 0.02, "b"),
    ("tolerance 0: best, cheapest among equals", [P("a", 0.9, 3), P("b", 0.9, 2), P("c", 0.8, 1)], 0.0, "b"),
    ("equal cost: the better", [P("a", 0.89, 1), P("b", 0.9, 1)], 0.02, "b"),
    ("a failed setup is not recommended", [P("a", None, 0.1), P("b", 0.5, 1)], 0.5, "b"),
]


@pytest.mark.parametrize("name, points, tolerance, chosen", RECOMMEND_CASES, ids=[c[0] for c in RECOMMEND_CASES])
def test_recommendation_is_the_cheapest_within_tolerance_of_the_best(name, points, tolerance, chosen):
    assert recommend(points, tolerance).name == chosen


def test_no_recommendation_without_a_measured_setup_and_no_negative_tolerance():
    assert recommend([P("a", None, 1)], 0.02) is None
    with pytest.raises(ValueError, match="tolerance"):
        recommend([P("a", 0.5, 1)], -0.1)


@pytest.mark.parametrize("cost, done, more, discount, online, batch", [
    (0.02, 100, 10_000, 0.5, 2.0, 1.0),
    (1.0, 4, 0, 0.5, 0.0, 0.0),
    (0.3, 3, 7, 0.0, 0.7, 0.7),
])
def test_projection_scales_the_measured_cost_per_sample(cost, done, more, discount, online, batch):
    projection = project_cost(cost, done, more, batch_discount=discount)
    assert projection.online == pytest.approx(online) and projection.batch == pytest.approx(batch)


def test_a_projection_needs_a_measured_sample():
    with pytest.raises(ValueError, match="at least one sample"):
        project_cost(0.1, 0, 10)


@pytest.mark.parametrize("maps, metric", [([0.5, 0.6], "mAP"), ([0.5, None], "F1"), ([], "F1")])
def test_quality_is_map_only_when_every_setup_is_ranked(maps, metric):
    assert quality_metric(maps) == metric


def _form(dataset, params):
    """The compare form as the App gets it: property name → its JSON."""
    import asyncio

    from fiftyone.operators.executor import ExecutionResult, resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    request = {"dataset_name": dataset.name, "view": dataset.view()._serialize(), "params": params}
    resolved = asyncio.run(resolve_type(OperatorRegistry(), f"{PLUGIN_NAME}/compare_setups", request))
    assert not isinstance(resolved, ExecutionResult), resolved.error
    return resolved.to_json()["type"]["properties"]


def test_the_form_offers_reviewed_fields_and_ground_truth_as_references(coco_dataset, emulator, review_as_a_person,
                                                                        installed_plugin):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    _reviewed(coco_dataset, review_as_a_person)
    form = _form(coco_dataset, {})
    choices = [c["value"] for c in form["reference"]["view"]["choices"]]
    assert choices[0] == "reviewed:gemini" and "gt:ground_truth" in choices
    assert "3 reviewed sample(s)" in form["reference_note"]["view"]["label"]
    assert "model" in form["candidates"]["type"]["element_type"]["properties"]


def test_the_form_says_when_there_is_nothing_to_compare_against(make_dataset, installed_plugin):
    form = _form(make_dataset(), {})
    assert "no_reference" in form and "candidates" not in form
