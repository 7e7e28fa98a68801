"""How good Gemini was: its proposals scored against what people kept, with FiftyOne's evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import fiftyone as fo
import fiftyone.core.labels as fol
from fiftyone import ViewField as F

from ..calibration import ReliabilityBin, expected_calibration_error, reliability_bins
from ..vocabulary import KEPT_STATUSES, REVIEW_ATTRIBUTE, RUN_ATTRIBUTE, proposed_field, reviewed_field
from .calibration import ConfidenceOutcome, confidence_outcomes, load_calibration
from .promotion import keep_proposals
from .status import ReviewCounts, ReviewError, label_path, review_counts

MAP_NOTE = (
    "mAP is not reported: these proposals carry no confidence, so they cannot be "
    "ranked, the precision-recall curve is a single point, and an 'AP' computed "
    "from tied scores would only reflect how ties happen to be broken. Precision, "
    "recall and F1 at that one operating point are what the data supports. Runs "
    "with confidence=True ask Gemini for a confidence per object, and get mAP."
)


RANKED_NOTE = (
    "mAP ranks the proposals by the confidence Gemini gave each (asked with "
    "confidence=True): the model's own estimate, not a calibrated probability. "
    "It is the area under the precision-recall curve at the chosen IoU."
)


CLASSIFICATION_NOTE = (
    "Each reviewed sample's class as Gemini proposed it, against the class people kept; "
    "a sample without a class on either side counts as a miss or a false proposal."
)


def class_score(row: dict, metric: str) -> str:
    """One per-class score, to three decimals; ``–`` for recall and F1 of a class no reviewed
    label holds (support 0): there was nothing to find, so they are undefined, not 0. Its
    precision stays (every proposal of it was wrong)."""
    if metric in ("recall", "f1-score") and not row.get("support"):
        return "–"
    return f"{row[metric]:.3f}"


@dataclass
class EvaluationReport:
    """Gemini's proposals scored against what reviewers kept.

    Attributes:
        eval_key: the FiftyOne evaluation key (see ``load_evaluation_results``).
        label_field: the pre-annotation field.
        gt_field: the reviewed labels' field (``label_field`` when the reviewed
            labels were taken from the pre-annotation field itself).
        samples: reviewed samples evaluated.
        iou: the IoU an object match needs (``None`` for classifications).
        precision, recall, f1: over all classes (micro-averaged).
        per_class: class → ``precision``, ``recall``, ``f1-score``, ``support``
            (and ``ap`` when the proposals are ranked).
        mAP: the mean over classes of the average precision at ``iou``, when
            every proposal has a confidence (runs with ``confidence=True``);
            else ``None``.
        true_positives, false_positives, false_negatives: object counts
            (for classifications: samples).
        review: the review counts of the evaluated samples.
        note: how to read the numbers (for detections: what the mAP ranks by,
            or why there is none).
        reliability: the reliability table of the reviewed proposals'
            confidences (see :func:`~gemini_annotate.calibration.reliability_bins`):
            per confidence bin, the mean confidence, the share people kept, the
            count. Confidences are calibrated when the run that made a label
            has a stored calibration (see ``calibrated_runs``), raw otherwise.
            Empty when no reviewed proposal has a confidence.
        ece: the expected calibration error of ``reliability`` (bin-count-weighted
            mean of ``|mean confidence - share kept|``); ``None`` without confidences.
        raw_reliability, raw_ece: the same for the confidences as the runs gave
            them (equal to ``reliability``, ``ece`` when nothing was calibrated).
        calibrated_runs: the runs whose stored calibration ``reliability`` applies.
    """

    eval_key: str
    label_field: str
    gt_field: str
    samples: int
    iou: Optional[float]
    precision: float
    recall: float
    f1: float
    per_class: dict[str, dict[str, float]]
    true_positives: int
    false_positives: int
    false_negatives: int
    review: ReviewCounts
    note: str = MAP_NOTE
    mAP: Optional[float] = None
    reliability: list[ReliabilityBin] = field(default_factory=list)
    ece: Optional[float] = None
    raw_reliability: list[ReliabilityBin] = field(default_factory=list)
    raw_ece: Optional[float] = None
    calibrated_runs: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A plain-text report: overall scores, a per-class table, the review tally."""
        lines = [
            f"{self.label_field} vs reviewed labels ({self.gt_field}) on {self.samples} reviewed "
            f"sample(s){f', IoU {self.iou}' if self.iou is not None else ''}: "
            f"precision {self.precision:.3f}, recall {self.recall:.3f}, "
            f"F1 {self.f1:.3f}{f', mAP {self.mAP:.3f}' if self.mAP is not None else ''} "
            f"(TP {self.true_positives}, FP {self.false_positives}, FN {self.false_negatives})",
            f"{'class':<24}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"
            + (f"{'AP':>8}" if self.mAP is not None else ""),
        ]
        for name, row in self.per_class.items():
            ap = f"{row['ap']:>8.3f}" if "ap" in row else f"{'–':>8}" if self.mAP is not None else ""
            lines.append(f"{name:<24}{class_score(row, 'precision'):>10}{class_score(row, 'recall'):>10}"
                         f"{class_score(row, 'f1-score'):>10}{int(row['support']):>9}{ap}")
        lines.append(self.review.describe())
        if self.ece is not None:
            lines.extend(self._describe_reliability())
        return "\n".join(lines)

    def _describe_reliability(self) -> list[str]:
        if self.calibrated_runs:
            which = (f"calibrated with the calibration of {', '.join(map(repr, self.calibrated_runs))}: "
                     f"ECE {self.ece:.3f} (raw {self.raw_ece:.3f})")
        else:
            which = f"raw (no stored calibration): ECE {self.ece:.3f}"
        lines = [f"confidence vs kept by reviewers, {which}",
                 f"{'confidence':<14}{'mean':>8}{'kept':>8}{'count':>8}"]
        for b in self.reliability:
            lines.append(f"{f'{b.lower:.1f}–{b.upper:.1f}':<14}{b.mean_predicted:>8.3f}{b.observed:>8.3f}{b.count:>8}")
        return lines

    def to_dict(self) -> dict:
        """Plain values (JSON-ready): the reliability tables as lists of dicts."""
        data = {k: v for k, v in self.__dict__.items() if k not in ("review", "reliability", "raw_reliability")}
        data["review"] = dict(self.review.__dict__)
        data["reliability"] = [b.to_dict() for b in self.reliability]
        data["raw_reliability"] = [b.to_dict() for b in self.raw_reliability]
        return data


def evaluate(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    *,
    gt_field: Optional[str] = None,
    eval_key: Optional[str] = None,
    iou: float = 0.5,
) -> EvaluationReport:
    """Scores Gemini's proposals against the reviewed labels, with FiftyOne's evaluation.

    Only samples marked reviewed are evaluated (elsewhere nobody knows what
    Gemini missed). Predictions are Gemini's proposals as made (its version of
    edited labels, rejected ones included); the truth is the labels people kept
    (accepted, edited, added) or, with ``gt_field``, that field. Detections,
    polylines and keypoints go through ``evaluate_detections`` at ``iou``, with
    AP and mAP when every proposal has a confidence (runs with
    ``confidence=True``; see :data:`MAP_NOTE` for why not otherwise); a
    single-label classification goes through ``evaluate_classifications``.
    The FiftyOne evaluation is stored under ``eval_key`` for the App's
    evaluation panel.

    When the proposals carry confidences, the report also says how well they
    predict what people kept (whatever ``gt_field``: this is about review
    decisions, see :mod:`gemini_annotate.review.calibration`): a reliability
    table and its ECE, on calibrated confidences for labels whose run has a
    stored calibration (:func:`~gemini_annotate.review.calibration.calibrate`),
    with the raw table and ECE beside. The mAP still ranks by the stored
    confidences.

    Raises:
        ReviewError: no sample of ``samples`` is marked reviewed, or the field
            holds multi-label classifications.
    """
    dataset = samples._dataset
    flag = reviewed_field(label_field)
    reviewed = samples.match(F(flag) == True) if dataset.has_field(flag) else samples.limit(0)  # noqa: E712
    if len(reviewed) == 0:
        raise ReviewError(
            f"no sample is marked reviewed for {label_field!r}: review some samples "
            "(mark them reviewed, or load corrections from the annotation tool) first"
        )
    label_type = dataset.get_field(label_field).document_type
    if issubclass(label_type, fol.Classifications):
        raise ReviewError("evaluation of multi-label classifications (fo.Classifications) is not supported: "
                          "FiftyOne's classification evaluation compares one class per sample")
    eval_key = eval_key or f"{label_field}_eval"
    keep_proposals(reviewed, label_field)
    predictions = proposed_field(label_field)
    if gt_field is None:
        gt_field = label_field
        kept = F(REVIEW_ATTRIBUTE).is_in(KEPT_STATUSES) | ~F(RUN_ATTRIBUTE).exists()
        truth = reviewed.filter_labels(label_field, kept, only_matches=False)
    else:
        truth = reviewed
    if dataset.has_evaluation(eval_key):
        dataset.delete_evaluation(eval_key)
    if issubclass(label_type, fol.Classification):
        iou_used, note, ranked = None, CLASSIFICATION_NOTE, False
        results = truth.evaluate_classifications(predictions, gt_field=gt_field, eval_key=eval_key, progress=False)
        counts = _classification_counts(results.ytrue, results.ypred, results.missing)
    else:
        iou_used = iou
        ranked = all_ranked(reviewed, predictions)
        note = RANKED_NOTE if ranked else MAP_NOTE
        results = truth.evaluate_detections(
            predictions, gt_field=gt_field, eval_key=eval_key, iou=iou, compute_mAP=ranked,
            iou_threshs=[iou] if ranked else None, progress=False,
        )
        counts = tuple(int(truth.sum(f"{eval_key}_{kind}")) for kind in ("tp", "fp", "fn"))
    metrics = results.metrics()
    per_class = {name: row for name, row in results.report().items()
                 if name not in ("micro avg", "macro avg", "weighted avg", "accuracy")}
    mean_ap = None
    if ranked:
        for name, row in per_class.items():
            ap = float(results.mAP(classes=[name]))
            if ap >= 0:  # -1: no reviewed object of the class, nothing to rank against
                row["ap"] = ap
        mean_ap = float(results.mAP())
    reliability = _reliability(reviewed, confidence_outcomes(reviewed, label_field))
    return EvaluationReport(
        eval_key=eval_key, label_field=label_field, gt_field=gt_field, samples=len(reviewed), iou=iou_used,
        precision=float(metrics["precision"]), recall=float(metrics["recall"]),
        f1=float(metrics["fscore"]), per_class=per_class,
        true_positives=counts[0], false_positives=counts[1], false_negatives=counts[2],
        review=review_counts(reviewed, label_field), note=note,
        mAP=mean_ap if mean_ap is not None and mean_ap >= 0 else None, **reliability,
    )


def _reliability(samples: fo.core.collections.SampleCollection, outcomes: list[ConfidenceOutcome]) -> dict:
    """The report's reliability fields: raw, and calibrated by each run's stored calibration."""
    if not outcomes:
        return {}
    calibrations = {key: load_calibration(samples, key) for key in sorted({o.run_key for o in outcomes})}
    calibrated = [calibrations[o.run_key].apply(o.label_class, o.confidence)
                  if calibrations[o.run_key] is not None else o.confidence for o in outcomes]
    kept = [o.kept for o in outcomes]
    raw = reliability_bins([o.confidence for o in outcomes], kept)
    table = reliability_bins(calibrated, kept)
    return dict(reliability=table, ece=expected_calibration_error(table), raw_reliability=raw,
                raw_ece=expected_calibration_error(raw),
                calibrated_runs=[key for key, c in calibrations.items() if c is not None])


def all_ranked(samples: fo.core.collections.SampleCollection, label_field: str) -> bool:
    """Whether ``label_field`` holds labels and every one has a confidence (so they can be ranked)."""
    path = label_path(samples, label_field)
    labels = samples.count(path)
    return labels > 0 and samples.count(f"{path}.confidence") == labels


def _classification_counts(ytrue: Iterable[str], ypred: Iterable[str], missing: str) -> tuple[int, int, int]:
    """``(right, wrong or extra, missed or wrong)`` samples of a classification evaluation."""
    pairs = list(zip(ytrue, ypred))
    right = sum(1 for t, p in pairs if t == p != missing)
    proposed = sum(1 for _, p in pairs if p != missing)
    kept = sum(1 for t, _ in pairs if t != missing)
    return right, proposed - right, kept - right

