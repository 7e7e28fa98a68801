"""Comparing setups by measured quality per cost, through the real pipeline, SDK and emulator;
and prompt candidates drawn from the dataset (class descriptions, negative hints)."""

from __future__ import annotations

import fiftyone as fo
import pytest
from gemini_annotate import AnnotateConfig, annotate, review
from gemini_annotate.compare import CompareError, compare
from gemini_annotate.costs import PRICES, cost
from gemini_annotate.emulator import LabelIndex, Scenario, tiered_oracle
from gemini_annotate.review.hints import draft_negative_hints

LITE, FLASH, PRO = "gemini-2.5-flash-lite", "gemini-3-flash-preview", "gemini-3-pro-preview"
TIERS = [{"name": "lite", "model": LITE}, {"name": "flash", "model": FLASH}, {"name": "pro", "model": PRO}]


class RecordingPrompts(Scenario):
    """Answers with another scenario and keeps every request's prompt."""

    def __init__(self, inner: Scenario):
        self.inner, self.prompts = inner, []

    def respond(self, request):
        self.prompts.append(request.prompt)
        return self.inner.respond(request)


def _reviewed(dataset, review_as_a_person, count=4):
    """A flash run reviewed by a person on ``count`` samples: the reference of a comparison."""
    annotate(dataset, classes=list(_classes(dataset)), label_field="gemini", model=FLASH)
    review_as_a_person(dataset.limit(count), "gemini")
    return dataset


def _classes(dataset):
    return sorted(dataset.distinct("ground_truth.detections.label"))


def test_each_candidate_is_run_scored_and_priced_from_its_reported_tokens(coco_dataset, emulator,
                                                                          review_as_a_person):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth"), seed=1))
    _reviewed(coco_dataset, review_as_a_person)
    report = compare(coco_dataset, TIERS, reference_field="gemini", tolerance=0.0)

    assert [c.name for c in report.candidates] == ["lite", "flash", "pro"]
    assert report.samples == 4 and report.rest == 2 and report.metric == "F1"
    for c in report.candidates:
        assert c.status == "done", c.reason
        assert c.label_field == f"compare_{c.name}" and c.labeled == 4 and c.requests == 4
        assert coco_dataset.exists(c.label_field).count() == 4  # the reference samples only
        assert c.cost == pytest.approx(cost(c.input_tokens, c.output_tokens + c.thought_tokens, PRICES[c.model]))
        assert 0 <= c.f1 <= 1 and c.quality == c.f1 and c.per_class
        assert c.projection.online == pytest.approx(c.cost / 4 * 2)
        assert c.projection.batch == pytest.approx(c.projection.online / 2)
    costs = {c.name: c.cost for c in report.candidates}
    assert costs["lite"] < costs["flash"] < costs["pro"]
    # tolerance 0: the recommendation is the best quality, cheapest among equals
    best = max(c.quality for c in report.candidates)
    assert report.recommended.quality == best
    assert report.recommended.cost == min(c.cost for c in report.candidates if c.quality == best)
    assert report.recommendation.name in report.front
    text = report.describe()
    assert "recommended: " + report.recommendation.name in text and "Batch API" in text
    assert report.figure().data and report.to_dict()["candidates"][0]["name"] == "lite"


def test_a_failing_candidate_says_why_and_the_others_finish(coco_dataset, emulator, review_as_a_person):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")), models=[LITE, FLASH])
    _reviewed(coco_dataset, review_as_a_person)
    candidates = [*TIERS, {"name": "bad_option", "consensus": 0}]
    report = compare(coco_dataset, candidates, reference_field="gemini")

    pro, bad = report.candidate("pro"), report.candidate("bad_option")
    assert pro.status == "failed" and "not found" in pro.reason and pro.quality is None
    assert bad.status == "failed" and "invalid options" in bad.reason and "consensus" in bad.reason
    assert {report.candidate(n).status for n in ("lite", "flash")} == {"done"}
    assert report.recommendation.name in ("lite", "flash")
    assert "pro: failed: " in report.describe()


def test_no_reviewed_samples_is_a_clear_refusal(coco_dataset, emulator):
    server = emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    annotate(coco_dataset, classes=_classes(coco_dataset), label_field="gemini", model=FLASH)
    sent = len(server.records)
    with pytest.raises(CompareError, match="no sample is marked reviewed for 'gemini'.*gt_field"):
        compare(coco_dataset, TIERS, reference_field="gemini")
    assert len(server.records) == sent  # nothing was sent for the candidates


def test_a_ground_truth_field_is_a_reference_too(coco_dataset, emulator):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth"), seed=2))
    report = compare(coco_dataset, TIERS[:2], gt_field="ground_truth")
    assert report.samples == 6 and report.rest == 0
    assert all(c.status == "done" and c.f1 > 0 for c in report.candidates)


def test_a_budget_stops_a_candidate_and_running_again_resumes_it(coco_dataset, emulator, review_as_a_person):
    server = emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    _reviewed(coco_dataset, review_as_a_person)
    budgeted = [{"name": "flash", "model": FLASH, "max_requests": 2, "concurrency": 1}, TIERS[0]]
    first = compare(coco_dataset, budgeted, reference_field="gemini")
    flash = first.candidate("flash")
    assert flash.status == "stopped" and "budget" in flash.reason and "again to resume" in flash.reason
    assert flash.requests == 2 and flash.labeled == 2 and flash.quality is None
    assert first.recommendation.name == "lite"  # a stopped candidate is not compared

    before = len(server.records)
    again = compare(coco_dataset, [{"name": "flash", "model": FLASH}, TIERS[0]], reference_field="gemini")
    flash = again.candidate("flash")
    assert flash.status == "done" and flash.labeled == 4
    assert flash.requests == 4  # 2 + the 2 it still had to send: its usage adds up over its runs
    assert len(server.records) - before == 2  # lite was finished: nothing sent again for it


def test_a_candidate_whose_options_changed_starts_over(coco_dataset, emulator, review_as_a_person):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    _reviewed(coco_dataset, review_as_a_person, count=2)
    compare(coco_dataset, [{"name": "x", "model": LITE}], reference_field="gemini")
    report = compare(coco_dataset, [{"name": "x", "model": PRO}], reference_field="gemini")
    x = report.candidate("x")
    assert x.requests == 2 and set(coco_dataset.distinct("compare_x.detections.gemini_model")) == {PRO}


def test_class_descriptions_and_hints_reach_the_prompt(coco_dataset, emulator):
    scenario = RecordingPrompts(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    emulator(scenario)
    classes = {"person": "a human, whole or in part", "cup": "a drinking cup or mug, not a glass"}
    compare(coco_dataset, [{"name": "described", "classes": classes, "hints": ["Do not label a vase as cup."]}],
            gt_field="ground_truth")
    prompt = scenario.prompts[-1]
    assert "following classes in the image: person, cup." in prompt
    assert "- cup: a drinking cup or mug, not a glass" in prompt and "- Do not label a vase as cup." in prompt
    assert set(coco_dataset.distinct("compare_described.detections.label")) <= {"person", "cup"}


@pytest.mark.parametrize("classes, names, descriptions", [
    ('{"car": "a passenger car", "van": ""}', ("car", "van"), {"car": "a passenger car"}),
    ({"car": "a passenger car"}, ("car",), {"car": "a passenger car"}),
    ("car,van", ("car", "van"), None),
    (["car"], ("car",), None),
])
def test_classes_may_come_with_descriptions(classes, names, descriptions):
    config = AnnotateConfig(classes=classes)
    assert config.classes == names and config.class_descriptions == descriptions


def test_a_description_of_an_unknown_class_is_refused():
    with pytest.raises(ValueError, match="'bus', which are not among the classes"):
        AnnotateConfig(classes=["car"], class_descriptions={"bus": "a bus"})


def _sample_reviewed(dataset, detections):
    dataset.add_sample(fo.Sample(filepath=f"/tmp/hint-{len(dataset)}.jpg",
                                 gemini=fo.Detections(detections=detections)))
    review.mark_reviewed(dataset, "gemini")


def test_negative_hints_are_drafted_from_rejections(make_dataset):
    dataset = make_dataset()
    box = [0.1, 0.1, 0.3, 0.3]
    for _ in range(4):  # each image: a van proposed as car (rejected, redrawn as van), a rejected cat, a kept car
        _sample_reviewed(dataset, [
            fo.Detection(label="car", bounding_box=box, gemini_run="r", review=review.REJECTED),
            fo.Detection(label="van", bounding_box=[0.11, 0.1, 0.3, 0.3]),
            fo.Detection(label="cat", bounding_box=[0.6, 0.6, 0.2, 0.2], gemini_run="r", review=review.REJECTED),
            fo.Detection(label="car", bounding_box=[0.5, 0.1, 0.2, 0.2], gemini_run="r", review=review.ACCEPTED),
        ])
    hints = draft_negative_hints(dataset, "gemini")
    texts = [h.text for h in hints]
    assert texts[0] == ("Do not label a van as car: reviewers re-labeled 4 of the 8 'car' labels proposed here "
                        "as 'van'.")
    assert texts[1] == ("4 of the 8 'car' labels proposed here were rejected by reviewers: label a car only "
                        "when it clearly is one, and leave out doubtful ones.")
    assert "4 of the 4 'cat' labels proposed here were rejected by reviewers" in texts[2]
    assert len(texts) == 3


def test_no_hints_without_reviews(make_dataset):
    dataset = make_dataset()
    dataset.add_sample(fo.Sample(filepath="/tmp/x.jpg", gemini=fo.Detections()))
    with pytest.raises(review.ReviewError, match="no sample is marked reviewed"):
        draft_negative_hints(dataset, "gemini")


def test_candidates_are_named_uniquely_and_may_be_configurations(coco_dataset, emulator):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    candidates = [AnnotateConfig(model=LITE), {"model": LITE}, {"model": FLASH, "media_resolution": "low"}]
    report = compare(coco_dataset.limit(2), candidates, gt_field="ground_truth")
    assert [c.name for c in report.candidates] == [
        "gemini_2_5_flash_lite", "gemini_2_5_flash_lite_2", "gemini_3_flash_preview_media_resolution_low"]
    assert all(c.status == "done" for c in report.candidates)
    # an AnnotateConfig without classes asks for the reference's, like the others
    assert set(coco_dataset.distinct("compare_gemini_2_5_flash_lite.detections.label")) <= set(
        coco_dataset.distinct("ground_truth.detections.label"))


def test_both_references_at_once_are_refused(coco_dataset):
    with pytest.raises(CompareError, match="not both"):
        compare(coco_dataset, TIERS, gt_field="ground_truth", reference_field="gemini")


def test_braces_in_descriptions_and_hints_are_text_not_sample_fields():
    from gemini_annotate.prompts import request_prompt, template_fields

    config = AnnotateConfig(classes={"car": "not a {van}"}, hints=["never {truck}"])
    prompt = request_prompt(config)
    assert template_fields(prompt) == ()
    assert "not a {{van}}" in prompt and "never {{truck}}" in prompt  # filled per sample into single braces


def test_quality_is_map_when_every_candidate_ranks_its_labels(coco_dataset, emulator):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    ranked = [{"name": n, "model": m, "confidence": True} for n, m in (("lite", LITE), ("pro", PRO))]
    report = compare(coco_dataset.limit(3), ranked, gt_field="ground_truth")
    assert report.metric == "mAP"
    assert all(c.quality == c.mAP and 0 < c.mAP <= 1 for c in report.candidates)
    mixed = compare(coco_dataset.limit(3), [ranked[0], {"name": "unranked", "model": LITE}], gt_field="ground_truth")
    assert mixed.metric == "F1" and all(c.quality == c.f1 for c in mixed.candidates)


def test_the_annotate_command_takes_described_classes_and_hints(coco_dataset, emulator):
    from gemini_annotate.cli import main

    scenario = RecordingPrompts(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth")))
    emulator(scenario)
    code = main(["annotate", coco_dataset.name, "--classes", '{"person": "a human", "cup": ""}',
                 "--hint", "Do not label a vase as cup.", "--quiet"])
    assert code == 0
    assert "- person: a human" in scenario.prompts[-1] and "- Do not label a vase as cup." in scenario.prompts[-1]
    assert "following classes in the image: person, cup." in scenario.prompts[-1]


def test_class_descriptions_may_be_given_apart_as_json():
    config = AnnotateConfig(classes="car,van", class_descriptions='{"van": "a box-shaped vehicle"}')
    assert config.class_descriptions == {"van": "a box-shaped vehicle"}
