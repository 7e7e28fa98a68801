"""The cheap → strong cascade: what escalates, who made each label, and resuming without re-sending."""

from __future__ import annotations

import os
import subprocess
import sys

import fiftyone as fo
import gemini_annotate
import pytest
from gemini_annotate.cascade import (
    CascadeSummary,
    drop_minority_labels,
    escalated_field,
    estimate_cascade,
    second_pass_config,
    second_pass_key,
)
from gemini_annotate.cli import build_parser
from gemini_annotate.cli_commands import config_from_args
from gemini_annotate.config import AnnotateConfig
from gemini_annotate.emulator import LabelIndex, tiered_oracle
from gemini_annotate.escalation import EscalationRule, escalation_reason, reason_kind
from gemini_annotate.job import AnnotationStopped
from gemini_annotate.operators import config_from_params
from gemini_annotate.vocabulary import ACCEPTED, MODEL_ATTRIBUTE, RUN_ATTRIBUTE

CHEAP, STRONG = "gemini-2.5-flash-lite", "gemini-3-pro-preview"


# the rule


def _det(label="cat", confidence=0.9, votes=3, answers=3, run="gemini", **extra) -> fo.Detection:
    attributes = {} if votes is None else {"votes": votes, "answers": answers}
    if run:
        attributes["gemini_run"] = run
    return fo.Detection(label=label, bounding_box=[0.1, 0.1, 0.2, 0.2], confidence=confidence,
                        **attributes, **extra)


def _dets(*labels) -> fo.Detections:
    return fo.Detections(detections=list(labels))


RULE = EscalationRule(below=0.5, support=0.6)

ESCALATION_CASES = [
    # (case, status, value, rule, expected reason kind or None)
    ("a failed reply escalates", "failed", None, RULE, "failed"),
    ("a partial reply escalates", "partial", _dets(_det()), RULE, "partial"),
    ("confident, agreed labels stand", "ok", _dets(_det(), _det(votes=2)), RULE, None),
    ("a kept label under the threshold escalates", "ok", _dets(_det(), _det(confidence=0.3, votes=2)), RULE,
     "low confidence"),
    ("a minority label's low confidence does not escalate (fusion's noise)", "ok",
     _dets(_det(), _det(), _det(confidence=0.1, votes=1)), RULE, None),
    ("too few proposals with a majority escalate", "ok",
     _dets(_det(), _det(confidence=0.1, votes=1), _det(confidence=0.1, votes=1)), RULE, "weak support"),
    ("support exactly at the bound stands", "ok",
     _dets(_det(), _det(), _det(), _det(votes=1), _det(votes=1)), RULE, None),
    ("a label without votes is its own majority", "ok", _dets(_det(votes=None)),
     EscalationRule(support=0.9), None),
    ("a single answer's own confidence escalates", "ok", _dets(_det(votes=None, confidence=0.2)),
     EscalationRule(below=0.5), "low confidence"),
    ("a label without confidence is not judged by it", "ok", _dets(_det(confidence=None)),
     EscalationRule(below=0.5), None),
    ("labels a person drew do not count", "ok", _dets(_det(), _det(run=None, votes=None, confidence=0.1),
                                                      _det(run=None, votes=None)), RULE, None),
    ("an empty answer stands", "ok", _dets(), RULE, None),
    ("no answer at all stands (nothing was proposed)", "ok", None, RULE, None),
    ("without thresholds only failures escalate", "ok", _dets(_det(confidence=0.01, votes=1)),
     EscalationRule(), None),
    ("a fused classification is judged too", "ok",
     fo.Classification(label="cat", confidence=0.2, votes=2, answers=3, gemini_run="gemini"), RULE,
     "low confidence"),
]


@pytest.mark.parametrize("case, status, value, rule, expected", ESCALATION_CASES,
                         ids=[c[0] for c in ESCALATION_CASES])
def test_escalation_rule(case, status, value, rule, expected):
    reason = escalation_reason(status, value, rule)
    assert (reason_kind(reason) if reason else None) == expected, reason


CONFIG_ERRORS = [
    (dict(escalate_below=0.5), "set escalate_to"),
    (dict(escalate_to="gemini-3-flash-preview"), "already uses"),
    (dict(escalate_to=STRONG, task="caption"), "judges labels"),
    (dict(escalate_to=STRONG, escalate_support=0.5), "consensus >= 2"),
    (dict(escalate_to=STRONG, escalate_below=0.5), "confidence=True"),
    (dict(escalate_to=STRONG, batch=True, batch_wait=False), "batch_wait"),
]


@pytest.mark.parametrize("options, message", CONFIG_ERRORS)
def test_cascade_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        AnnotateConfig(**options)


# the answer of the samples that stand: the first pass's majority

MINORITY_CASES = [
    # (case, label attributes, kept)
    ("a label most answers proposed stays", dict(votes=2, answers=3), True),
    ("a label one answer of three proposed goes (fusion's noise)", dict(votes=1, answers=3), False),
    ("half of the answers is no majority", dict(votes=2, answers=4), False),
    ("a minority label a person accepted stays", dict(votes=1, answers=3, review=ACCEPTED), True),
    ("an unreviewed minority label goes", dict(votes=1, answers=3, review="unreviewed"), False),
    ("another run's minority label stays", dict(votes=1, answers=3, run="other"), True),
    ("a single answer's label (no votes) stays", dict(votes=None), True),
    ("a label a person drew stays", dict(votes=None, run=None), True),
]


def _judged(dataset, labels, escalated=None):
    sample = fo.Sample(filepath=f"/tmp/cascade-{len(dataset)}.png", gemini=_dets(*labels), gemini_status="ok")
    sample[escalated_field("gemini")] = escalated
    dataset.add_sample(sample, dynamic=True)
    return sample


CASCADE_CONFIG = dict(task="detect", model=CHEAP, consensus=3, escalate_to=STRONG, escalate_support=0.2)


def test_the_samples_that_stand_keep_only_the_first_passs_majority():
    dataset = fo.Dataset()
    try:
        standing = _judged(dataset, [_det(label=case, **attributes) for case, attributes, _ in MINORITY_CASES])
        escalated = _judged(dataset, [_det(label="stray", votes=1)], escalated="weak support: 0 of 1")
        config = AnnotateConfig(**CASCADE_CONFIG)

        dropped = drop_minority_labels(dataset, config)
        again = drop_minority_labels(dataset, config)

        standing.reload()
        escalated.reload()
        expected = [case for case, _, kept in MINORITY_CASES if kept]
        assert [d.label for d in standing.gemini.detections] == expected
        assert (dropped, again) == (len(MINORITY_CASES) - len(expected), 0)
        assert [d.label for d in escalated.gemini.detections] == ["stray"]  # the second pass replaces it
    finally:
        dataset.delete()


def test_a_single_label_classification_is_not_dropped():
    dataset = fo.Dataset()
    try:
        dataset.add_sample(fo.Sample(filepath="/tmp/cascade-c.png", gemini_status="ok", gemini=fo.Classification(
            label="cat", votes=1, answers=3, gemini_run="gemini")))
        config = AnnotateConfig(**{**CASCADE_CONFIG, "task": "classify", "escalate_support": None,
                                   "escalate_below": 0.5, "classes": ["cat", "dog"]})
        assert drop_minority_labels(dataset, config) == 0
        assert dataset.first().gemini.label == "cat"
    finally:
        dataset.delete()


# through the pipeline and the emulator's model tiers


def _cascade(dataset, **options) -> CascadeSummary:
    options = {"task": "detect", "model": CHEAP, "consensus": 3, "escalate_to": STRONG,
               "escalate_support": 0.42, **options}
    return gemini_annotate.annotate(dataset, **options)


def _models_by_sample(dataset, field="gemini") -> dict[str, set]:
    ids, models, runs = dataset.values(["id", f"{field}.detections.{MODEL_ATTRIBUTE}",
                                        f"{field}.detections.{RUN_ATTRIBUTE}"])
    return {i: set(zip(m or [], r or [])) for i, m, r in zip(ids, models, runs)}


@pytest.fixture
def tiers(coco_dataset, emulator):
    scenario = tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth"), seed=5)
    emulator(scenario)
    return scenario


def test_escalated_samples_hold_only_the_strong_models_labels(coco_dataset, tiers):
    summary = _cascade(coco_dataset)
    escalated = dict(zip(*coco_dataset.values(["id", escalated_field("gemini")])))
    sent_on = {i for i, reason in escalated.items() if reason}
    assert 0 < len(sent_on) < len(coco_dataset), escalated  # the case needs both kinds of sample
    assert tiers.answered == {"lite": 3 * len(coco_dataset), "flash": 0, "pro": len(sent_on)}
    for sample_id, made_by in _models_by_sample(coco_dataset).items():
        expected = {(STRONG, second_pass_key("gemini"))} if sample_id in sent_on else {(CHEAP, "gemini")}
        assert made_by == expected, (sample_id, escalated[sample_id])
    assert summary.escalated == len(sent_on) and summary.done == len(coco_dataset)
    assert summary.first_pass.requests == 18 and summary.second_pass.requests == len(sent_on)
    assert summary.requests == 18 + len(sent_on)
    assert set(coco_dataset.distinct("gemini_status")) == {"ok"}
    assert f"pass 2 ({STRONG}): {len(sent_on)} labeled" in summary.describe()


def test_a_cascade_runs_each_pass_in_the_workers(coco_dataset, tiers):
    summary = _cascade(coco_dataset, workers=2, concurrency=4)

    sent_on = {i for i, reason in zip(*coco_dataset.values(["id", escalated_field("gemini")])) if reason}
    assert 2 <= len(sent_on) < len(coco_dataset)  # the case needs both kinds of sample, and a shard each
    assert tiers.answered == {"lite": 3 * len(coco_dataset), "flash": 0, "pro": len(sent_on)}
    assert summary.first_pass.num_shards == summary.second_pass.num_shards == 2  # both passes split
    for sample_id, made_by in _models_by_sample(coco_dataset).items():
        assert made_by == ({(STRONG, second_pass_key("gemini"))} if sample_id in sent_on else {(CHEAP, "gemini")})
    assert summary.done == len(coco_dataset) and set(coco_dataset.distinct("gemini_status")) == {"ok"}

    again = _cascade(coco_dataset, workers=2, concurrency=4)
    assert again.requests == 0 and tiers.answered["pro"] == len(sent_on)


@pytest.mark.parametrize("budget_left, workers", [(None, 4), (3, 3), (1, 1)])
def test_the_second_pass_runs_in_no_more_workers_than_requests_left(budget_left, workers):
    config = AnnotateConfig(model=CHEAP, consensus=3, escalate_to=STRONG, escalate_support=0.4, workers=4,
                            max_requests=None if budget_left is None else 18 + budget_left)
    first = gemini_annotate.RunSummary(run_key="gemini", label_field="gemini", requests=18)
    assert second_pass_config(config, first).workers == workers


def test_with_majority_only_the_samples_that_stood_hold_no_minority_label(coco_dataset, tiers):
    summary = _cascade(coco_dataset, escalate_majority_only=True)

    stood = coco_dataset.match(fo.ViewField(escalated_field("gemini")) == None)  # noqa: E711
    votes = stood.values("gemini.detections.votes", unwind=True)
    answers = stood.values("gemini.detections.answers", unwind=True)
    assert votes and all(2 * v > n for v, n in zip(votes, answers))
    assert summary.minority_dropped > 0  # the case needs some noise
    assert summary.labels == coco_dataset.count("gemini.detections")
    assert "minority label(s) dropped" in summary.describe()


def test_an_interrupted_cascade_resumes_without_re_sending(coco_dataset, tiers):
    with pytest.raises(AnnotationStopped) as stopped:  # all of the first pass, one request of the second
        _cascade(coco_dataset, max_requests=19)
    assert isinstance(stopped.value.summary, CascadeSummary)
    escalated = sum(1 for reason in coco_dataset.values(escalated_field("gemini")) if reason)
    assert escalated >= 2
    assert tiers.answered == {"lite": 18, "flash": 0, "pro": 1}

    resumed = _cascade(coco_dataset)
    assert tiers.answered == {"lite": 18, "flash": 0, "pro": escalated}  # each escalated sample sent once
    assert resumed.first_pass.requests == 0 and resumed.second_pass.requests == escalated - 1

    again = _cascade(coco_dataset)
    assert tiers.answered == {"lite": 18, "flash": 0, "pro": escalated} and again.requests == 0
    sent_on = {i for i, reason in zip(*coco_dataset.values(["id", escalated_field("gemini")])) if reason}
    for sample_id, made_by in _models_by_sample(coco_dataset).items():
        assert {model for model, _ in made_by} == ({STRONG} if sample_id in sent_on else {CHEAP})


def test_a_reviewed_label_survives_escalation(coco_dataset, tiers):
    with pytest.raises(AnnotationStopped, match="budget"):  # stops between the passes
        _cascade(coco_dataset, max_requests=18)
    escalated = coco_dataset.exists(escalated_field("gemini")).first()
    reviewed = escalated.gemini.detections[0]
    reviewed.review = ACCEPTED
    escalated.save()

    _cascade(coco_dataset)
    escalated.reload()
    labels = escalated.gemini.detections
    assert [d.id for d in labels if d.id == reviewed.id] == [reviewed.id]
    kept = next(d for d in labels if d.id == reviewed.id)
    assert (kept.review, kept[MODEL_ATTRIBUTE]) == (ACCEPTED, CHEAP)
    others = {d[MODEL_ATTRIBUTE] for d in labels if d.id != reviewed.id}
    assert others == {STRONG}


def test_the_estimate_shows_both_passes(coco_dataset):
    config = AnnotateConfig(task="detect", model=CHEAP, consensus=3, escalate_to=STRONG, escalate_support=0.75)
    estimate = estimate_cascade(coco_dataset, config, escalation_rate=0.5)
    assert (estimate.first.model, estimate.second.model) == (CHEAP, STRONG)
    assert estimate.first.requests == 18 and estimate.second.requests == 6
    assert estimate.requests == 18 + 3
    assert estimate.expected_cost == pytest.approx(estimate.first.total_cost + 0.5 * estimate.second.total_cost)
    assert "escalation rate 50% (given)" in estimate.describe()
    assert "assumed" in estimate_cascade(coco_dataset, config).rate_source


def test_the_estimate_uses_the_rate_an_earlier_run_measured(coco_dataset, tiers):
    _cascade(coco_dataset)
    escalated = sum(1 for reason in coco_dataset.values(escalated_field("gemini")) if reason)
    config = AnnotateConfig(task="detect", model=CHEAP, consensus=3, escalate_to=STRONG, escalate_support=0.75)
    estimate = estimate_cascade(coco_dataset, config)
    assert estimate.escalation_rate == pytest.approx(escalated / len(coco_dataset))
    assert estimate.rate_source.startswith("measured")


def test_the_cli_runs_a_cascade_and_shows_both_passes(coco_dataset, tiers):
    coco_dataset.persistent = True  # visible to the CLI's process; deleted by the fixture
    common = [coco_dataset.name, "--task", "detect", "--model", CHEAP, "--consensus", "3",
              "--escalate-to", STRONG, "--escalate-support", "0.42"]

    estimate = _cli("estimate", *common)
    done = _cli("annotate", *common, "--quiet")

    assert estimate.returncode == 0, estimate.stderr
    assert "pass 1:" in estimate.stdout and f"request(s) to {STRONG}" in estimate.stdout
    assert done.returncode == 0, done.stderr
    assert f"pass 1 ({CHEAP}): 6 labeled" in done.stdout and f"pass 2 ({STRONG})" in done.stdout
    coco_dataset.reload()
    assert coco_dataset.exists(escalated_field("gemini")).count() == tiers.answered["pro"] > 0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gemini_annotate.cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def test_the_form_makes_a_cascade_and_drops_it_for_tasks_it_does_not_apply_to():
    detect = config_from_params({"task": "detect", "consensus": 3, "escalate_to": STRONG, "escalate_support": 0.2})
    caption = config_from_params({"task": "caption", "escalate_to": STRONG, "escalate_support": 0.2})

    assert (detect.escalate_to, detect.escalate_support) == (STRONG, 0.2)
    assert (caption.escalate_to, caption.escalate_support) == (None, None)


def test_the_cli_flag_asks_for_majority_only():
    common = ["annotate", "ds", "--consensus", "3", "--escalate-to", STRONG, "--escalate-support", "0.2"]
    assert config_from_args(build_parser().parse_args([*common, "--escalate-majority-only"])).escalate_majority_only
    assert not config_from_args(build_parser().parse_args(common)).escalate_majority_only
