"""Reviewing pre-annotations: status, promotion, evaluation and run bookkeeping.

Every label a run writes carries a ``review`` attribute (see
:class:`gemini_annotate.convert.Provenance`), the one source of truth for its
review state:

``unreviewed``
    as Gemini made it; nobody has looked at it yet.
``accepted``
    a person checked it and kept it unchanged.
``rejected``
    a person said it is wrong. It stays in the field (so evaluation can count
    it as a false positive) but is never promoted.
``edited``
    a person corrected it (class or geometry); Gemini's version is kept in
    ``<field>_proposed``.
``added``
    a person drew it during review (it has no ``gemini_run``).

A sample is *reviewed* when ``<field>_reviewed`` is ``True``: a person looked at
the whole image, so what Gemini missed there is known. Marking a sample
reviewed accepts its labels that are still unreviewed.

Label tags are not used for review: tags are free for a team's own use, and
one attribute per label cannot disagree with itself.

These are plain functions over FiftyOne collections, used alike by the App
operators, the Python API and the ``gemini-annotate`` command.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

import fiftyone as fo
import fiftyone.core.labels as fol
from fiftyone import ViewField as F

from .config import AnnotateConfig
from .convert import REVIEW_ATTRIBUTE, UNREVIEWED
from .runs import RUN_METHOD, RunSummary, clear_shard_summaries, list_annotation_runs, load_run_summary

ACCEPTED = "accepted"
REJECTED = "rejected"
EDITED = "edited"
ADDED = "added"
REVIEW_STATUSES = (UNREVIEWED, ACCEPTED, REJECTED, EDITED, ADDED)
KEPT_STATUSES = (ACCEPTED, EDITED, ADDED)
"""Statuses of labels that belong to the reviewed truth."""

RUN_ATTRIBUTE = "gemini_run"
SOURCE_ATTRIBUTE = "gemini_source_id"
"""On a promoted label: the id of the pre-annotation it was copied from."""

_SPATIAL_FIELDS = {
    fol.Detection: ("bounding_box",),
    fol.Polyline: ("points", "closed", "filled"),
    fol.Keypoint: ("points",),
}
_COORDINATE_TOLERANCE = 1e-6


class ReviewError(ValueError):
    """A review step that cannot be done as asked; the message says what to do."""


def reviewed_field(label_field: str) -> str:
    """The boolean sample field saying a person reviewed the whole sample."""
    return f"{label_field}_reviewed"


def proposed_field(label_field: str) -> str:
    """The field keeping Gemini's own labels of reviewed samples, for evaluation."""
    return f"{label_field}_proposed"


def labels_in(value: Any) -> list[fo.Label]:
    """The labels of a label field's value: the list of a ``Detections``-like
    value, the label itself, or none."""
    if isinstance(value, fol._HasLabelList):
        return list(value[value._LABEL_LIST_FIELD] or [])
    if isinstance(value, fol.Label):
        return [value]
    return []


def field_value(label_type: type, labels: list[fo.Label]) -> Any:
    """The value of a field of ``label_type`` holding ``labels`` (the inverse of
    :func:`labels_in`); a single-label field keeps the last one."""
    if issubclass(label_type, fol._HasLabelList):
        return label_type(**{label_type._LABEL_LIST_FIELD: list(labels)})
    return labels[-1] if labels else None


def label_path(samples: fo.core.collections.SampleCollection, label_field: str) -> str:
    """The path of the labels in a field: ``gemini.detections`` or ``gemini``.

    Raises:
        ReviewError: the field does not exist or holds no labels.
    """
    schema_field = samples.get_field(label_field)
    label_type = getattr(schema_field, "document_type", None)
    if label_type is None or not issubclass(label_type, fol.Label):
        raise ReviewError(f"{label_field!r} is not a label field of {samples._dataset.name!r}")
    if issubclass(label_type, fol._HasLabelList):
        return f"{label_field}.{label_type._LABEL_LIST_FIELD}"
    return label_field


def field_classes(samples: fo.core.collections.SampleCollection, label_field: str) -> list[str]:
    """The class names of the labels in a field of ``samples``, sorted."""
    return sorted(str(v) for v in samples.distinct(f"{label_path(samples, label_field)}.label") if v)


def only_classes(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    classes: Union[str, Iterable[str], None],
) -> fo.core.collections.SampleCollection:
    """``samples`` with only the labels of ``classes`` left in ``label_field``.

    Every sample stays (a review step on the view still counts its samples);
    with no class named, ``samples`` is returned unchanged.

    Args:
        classes: class names, or one comma-separated string of them.
    """
    names = classes.split(",") if isinstance(classes, str) else list(classes or ())
    names = [name.strip() for name in names if name.strip()]
    if not names:
        return samples
    return samples.filter_labels(label_field, F("label").is_in(names), only_matches=False)


def pre_annotation_fields(samples: fo.core.collections.SampleCollection) -> list[str]:
    """The label fields that gemini-annotate runs wrote, in run order, without repeats."""
    fields = []
    for key in list_annotation_runs(samples):
        name = samples.get_run_info(key).config.label_field
        if name not in fields and samples._dataset.has_field(name):
            fields.append(name)
    return fields


def _is_pre_annotation(label: fo.Label) -> bool:
    return label.has_field(RUN_ATTRIBUTE) and bool(label[RUN_ATTRIBUTE])


def review_status(label: fo.Label) -> str:
    """A label's review status: ``added`` for a person's label without one."""
    if label.has_field(REVIEW_ATTRIBUTE) and label[REVIEW_ATTRIBUTE]:
        return label[REVIEW_ATTRIBUTE]
    return UNREVIEWED if _is_pre_annotation(label) else ADDED


def _next_status(current: str, requested: str) -> str:
    # accepting a corrected or hand-drawn label keeps saying what a person did to it
    if requested == ACCEPTED and current in (EDITED, ADDED):
        return current
    return requested


def set_review_status(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    status: str,
    label_ids: Optional[Iterable[str]] = None,
) -> int:
    """Sets the review status of labels in a field.

    Accepting keeps ``edited`` and ``added`` labels as they are (they are
    already part of the reviewed truth); any other request sets the status.

    Args:
        samples: the samples whose labels to review.
        label_field: the pre-annotation field.
        status: one of :data:`REVIEW_STATUSES`.
        label_ids: only these labels; all labels of the field in ``samples``
            when ``None``.

    Returns:
        the number of labels whose status changed.
    """
    if status not in REVIEW_STATUSES:
        raise ReviewError(f"unknown review status {status!r}; use one of {', '.join(REVIEW_STATUSES)}")
    path = label_path(samples, label_field)
    view = samples if label_ids is None else samples.select_labels(ids=list(label_ids), fields=label_field)
    changes = []
    for sample_id, value in zip(*view.values(["id", label_field])):
        for label in labels_in(value):
            current = review_status(label)
            new = _next_status(current, status)
            if new != current or not label.has_field(REVIEW_ATTRIBUTE):
                changes.append({"sample_id": sample_id, "label_id": label.id, "value": new})
    if changes:
        samples._dataset.set_label_values(f"{path}.{REVIEW_ATTRIBUTE}", changes, dynamic=True)
    return len(changes)


def only_unreviewed(
    samples: fo.core.collections.SampleCollection, label_field: str,
) -> fo.core.collections.SampleCollection:
    """The samples with labels still ``unreviewed`` in ``label_field``, showing only those labels."""
    return samples.filter_labels(label_field, F(REVIEW_ATTRIBUTE) == UNREVIEWED)


def mark_reviewed(samples: fo.core.collections.SampleCollection, label_field: str) -> int:
    """Marks samples as reviewed as a whole, accepting their labels still unreviewed.

    Returns:
        the number of labels this accepted.
    """
    ids = only_unreviewed(samples, label_field).values(f"{label_path(samples, label_field)}.id", unwind=True)
    accepted = set_review_status(samples, label_field, ACCEPTED, ids) if ids else 0
    sample_ids = samples.values("id")
    samples._dataset.set_values(reviewed_field(label_field), dict.fromkeys(sample_ids, True), key_field="id")
    return accepted


@dataclass
class ReviewCounts:
    """How far review of a field has gone: labels by status, reviewed samples."""

    label_field: str
    samples: int = 0
    reviewed_samples: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def proposed(self) -> int:
        """Labels Gemini proposed (every status but ``added``)."""
        return sum(n for s, n in self.statuses.items() if s != ADDED)

    def describe(self) -> str:
        parts = ", ".join(f"{self.statuses.get(s, 0)} {s}" for s in REVIEW_STATUSES)
        return (f"{self.label_field}: {self.reviewed_samples}/{self.samples} samples reviewed; "
                f"labels: {parts}")


def review_counts(samples: fo.core.collections.SampleCollection, label_field: str) -> ReviewCounts:
    """Counts labels by review status and the samples marked reviewed."""
    counts = ReviewCounts(label_field, samples=len(samples))
    flag = reviewed_field(label_field)
    if samples._dataset.has_field(flag):
        counts.reviewed_samples = samples.count_values(flag).get(True, 0)
    path = label_path(samples, label_field)
    # aggregations, not a pass over every label: forms recompute this as they change
    statuses = Counter(samples.count_values(f"{path}.{REVIEW_ATTRIBUTE}"))
    missing = statuses.pop(None, 0)
    if missing:
        by_people = samples.filter_labels(
            label_field, ~F(REVIEW_ATTRIBUTE).exists() & ~F(RUN_ATTRIBUTE).exists()).count(path)
        statuses[ADDED] += by_people
        statuses[UNREVIEWED] += missing - by_people
    counts.statuses = {s: statuses.get(s, 0) for s in REVIEW_STATUSES}
    return counts


def promote(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    gt_field: str = "ground_truth",
) -> int:
    """Copies reviewed labels (accepted, edited, added) into a ground-truth field.

    The copies get new ids and remember their source in ``gemini_source_id``;
    promoting again replaces the earlier copies, so it is safe to repeat. Labels
    already in ``gt_field`` that did not come from this field are kept.
    Nothing is ever promoted without this explicit call.

    Returns:
        the number of labels promoted.
    """
    if gt_field == label_field:
        raise ReviewError("promote into a different field than the pre-annotations")
    label_path(samples, label_field)  # a label field, or a clear error
    source_type = samples.get_field(label_field).document_type
    dataset = samples._dataset
    if dataset.has_field(gt_field) and dataset.get_field(gt_field).document_type is not source_type:
        raise ReviewError(
            f"{gt_field!r} holds {dataset.get_field(gt_field).document_type.__name__}, "
            f"{label_field!r} holds {source_type.__name__}: choose another ground-truth field"
        )
    view = samples.select_fields([label_field, gt_field] if dataset.has_field(gt_field) else [label_field])
    sample_ids = view.values("id")
    sources = view.values(label_field)
    targets = view.values(gt_field) if dataset.has_field(gt_field) else [None] * len(sample_ids)
    promoted, updates = 0, {}
    for sample_id, source, target in zip(sample_ids, sources, targets):
        kept = [label for label in labels_in(source) if review_status(label) in KEPT_STATUSES]
        source_ids = {label.id for label in labels_in(source)}
        others = [label for label in labels_in(target)
                  if not (label.has_field(SOURCE_ATTRIBUTE) and label[SOURCE_ATTRIBUTE] in source_ids)]
        if not kept and len(others) == len(labels_in(target)):
            continue
        copies = [_promoted_copy(label) for label in kept]
        promoted += len(copies)
        updates[sample_id] = field_value(source_type, others + copies)
    if updates:
        dataset.set_values(gt_field, updates, key_field="id")
        dataset.add_dynamic_sample_fields(fields=[gt_field])
    return promoted


def _promoted_copy(label: fo.Label) -> fo.Label:
    copy = label.copy()  # a label's copy gets a new id
    copy[SOURCE_ATTRIBUTE] = label.id
    return copy


def same_geometry(a: fo.Label, b: fo.Label) -> bool:
    """Whether two labels have the same class and the same coordinates (to 1e-6)."""
    if type(a) is not type(b) or a.label != b.label:
        return False
    for name in _SPATIAL_FIELDS.get(type(a), ()):
        if not _close(a[name], b[name]):
            return False
    return True


def _close(x: Any, y: Any) -> bool:
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_close(p, q) for p, q in zip(x, y))
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return abs(x - y) <= _COORDINATE_TOLERANCE
    return x == y


def keep_proposals(samples: fo.core.collections.SampleCollection, label_field: str) -> int:
    """Saves Gemini's labels into ``<field>_proposed`` for samples that have none saved.

    Called before a person's corrections are applied, so evaluation can still
    compare what Gemini proposed with what people kept.

    Returns:
        the number of samples whose proposals were saved.
    """
    dataset = samples._dataset
    target = proposed_field(label_field)
    if dataset.has_field(target):
        samples = samples.exists(target, False)
    label_type = samples.get_field(label_field).document_type
    updates = {}
    for sample_id, value in zip(*samples.values(["id", label_field])):
        proposals = [_same_id_copy(label) for label in labels_in(value) if _is_pre_annotation(label)]
        updates[sample_id] = field_value(label_type, proposals)
    if updates:
        if not dataset.has_field(target):  # declared first: a single-label field may hold only None
            dataset.add_sample_field(target, fo.EmbeddedDocumentField, embedded_doc_type=label_type)
        dataset.set_values(target, updates, key_field="id")
        dataset.add_dynamic_sample_fields(fields=[target])
    return len(updates)


def _same_id_copy(label: fo.Label) -> fo.Label:
    # the proposal keeps the id of the label it records, to be found again
    copy = label.copy()
    copy.id = label.id
    return copy


@dataclass
class CorrectionCounts:
    """What a person's corrections did to a field's labels."""

    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    added: int = 0
    reviewed_samples: int = 0

    def describe(self) -> str:
        return (f"{self.reviewed_samples} sample(s) reviewed: {self.accepted} label(s) accepted, "
                f"{self.edited} edited, {self.rejected} rejected, {self.added} added")


def apply_corrections(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    before: dict[str, list[fo.Label]],
    reviewed_sample_ids: Iterable[str],
) -> CorrectionCounts:
    """Turns the difference between labels before and after a correction pass into review statuses.

    For the samples a person submitted: a pre-annotation that is unchanged is
    ``accepted``, changed is ``edited``, gone is put back as ``rejected`` (so
    it still counts against Gemini and is never promoted), and a new label is
    ``added``. Masks the tool could not show (it edits boxes) are restored on
    labels whose box did not move. The samples become reviewed.

    Args:
        samples: the samples that went to the tool.
        label_field: the field the corrections were loaded into.
        before: sample id → the field's labels before loading the corrections,
            for every sample of the round.
        reviewed_sample_ids: samples a person submitted in the tool.

    Returns:
        the :class:`CorrectionCounts`.
    """
    reviewed = set(reviewed_sample_ids)
    dataset = samples._dataset
    label_type = samples.get_field(label_field).document_type
    counts = CorrectionCounts(reviewed_samples=len(reviewed))
    updates = {}
    for sample_id, value in zip(*samples.select(list(before)).values(["id", label_field])):
        old = {label.id: label for label in before.get(sample_id, [])}
        now = labels_in(value)
        restored = _restore_masks(now, old)
        if sample_id in reviewed:
            _record_review(now, old, counts)
        elif not restored:
            continue
        updates[sample_id] = field_value(label_type, now)
    if updates:
        dataset.set_values(label_field, updates, key_field="id")
        dataset.add_dynamic_sample_fields(fields=[label_field])
    if reviewed:
        dataset.set_values(reviewed_field(label_field), dict.fromkeys(reviewed, True), key_field="id")
    return counts


def _restore_masks(now: list[fo.Label], old: dict[str, fo.Label]) -> int:
    # tools that edit boxes return no masks; a box that did not move keeps its mask
    restored = 0
    for label in now:
        original = old.get(label.id)
        if (isinstance(label, fol.Detection) and label.mask is None and original is not None
                and original.mask is not None and same_geometry(label, original)):
            label.mask = original.mask
            restored += 1
    return restored


def _record_review(now: list[fo.Label], old: dict[str, fo.Label], counts: CorrectionCounts) -> None:
    """Sets the statuses of one submitted sample's labels (``now`` gains the rejected ones)."""
    present = {label.id for label in now}
    for label in now:
        original = old.get(label.id)
        if original is None:
            label[REVIEW_ATTRIBUTE] = ADDED
            counts.added += 1
        elif same_geometry(label, original):
            label[REVIEW_ATTRIBUTE] = _next_status(review_status(original), ACCEPTED)
            counts.accepted += 1
        else:
            label[REVIEW_ATTRIBUTE] = EDITED
            counts.edited += 1
    for label_id, original in old.items():
        if label_id not in present and _is_pre_annotation(original):
            original[REVIEW_ATTRIBUTE] = REJECTED
            now.append(original)
            counts.rejected += 1


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
            lines.append(f"{name:<24}{row['precision']:>10.3f}{row['recall']:>10.3f}"
                         f"{row['f1-score']:>10.3f}{int(row['support']):>9}{ap}")
        lines.append(self.review.describe())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "review"}
        data["review"] = dict(self.review.__dict__)
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
    return EvaluationReport(
        eval_key=eval_key, label_field=label_field, gt_field=gt_field, samples=len(reviewed), iou=iou_used,
        precision=float(metrics["precision"]), recall=float(metrics["recall"]),
        f1=float(metrics["fscore"]), per_class=per_class,
        true_positives=counts[0], false_positives=counts[1], false_negatives=counts[2],
        review=review_counts(reviewed, label_field), note=note,
        mAP=mean_ap if mean_ap is not None and mean_ap >= 0 else None,
    )


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


@dataclass
class RunInfo:
    """What a run asked for and what it did, for listing and inspecting."""

    run_key: str
    label_field: str
    task: str
    model: str
    classes: Optional[list[str]]
    prompt: Optional[str]
    started: Any
    config: dict
    summary: Optional[RunSummary]
    review: Optional[ReviewCounts]

    def describe(self) -> str:
        lines = [
            f"run {self.run_key!r}: task {self.task}, model {self.model}, field {self.label_field!r}, "
            f"started {self.started}",
            f"classes: {', '.join(self.classes) if self.classes else '(any)'}",
            f"prompt: {self.prompt or '(the task default)'}",
        ]
        if self.summary is not None:
            lines.append(self.summary.describe())
        if self.review is not None:
            lines.append(self.review.describe())
        return "\n".join(lines)


def run_info(samples: fo.core.collections.SampleCollection, run_key: str) -> RunInfo:
    """The configuration, summary and review progress of one run.

    Raises:
        ReviewError: there is no gemini-annotate run with this key.
    """
    if run_key not in list_annotation_runs(samples):
        known = ", ".join(list_annotation_runs(samples)) or "none"
        raise ReviewError(f"no gemini-annotate run {run_key!r} on {samples._dataset.name!r} (runs: {known})")
    info = samples.get_run_info(run_key)
    config = {k: v for k, v in info.config.serialize().items() if not k.startswith("_")}
    label_field = config["label_field"]
    review = review_counts(samples, label_field) if samples._dataset.has_field(label_field) else None
    return RunInfo(
        run_key=run_key, label_field=label_field, task=config.get("task"), model=config.get("model"),
        classes=config.get("classes"), prompt=config.get("prompt"), started=info.timestamp,
        config=config, summary=load_run_summary(samples, run_key), review=review,
    )


def list_runs(samples: fo.core.collections.SampleCollection) -> list[RunInfo]:
    """Every gemini-annotate run on a collection's dataset."""
    return [run_info(samples, key) for key in list_annotation_runs(samples)]


def delete_run(samples: fo.core.collections.SampleCollection, run_key: str, *, delete_labels: bool = False) -> list[str]:
    """Deletes a run's record and, if asked, the fields it wrote.

    With ``delete_labels``, the label field and its ``_polylines``, ``_status``,
    ``_reason``, ``_reviewed`` and ``_proposed`` fields go too, unless another
    run still writes into the same field.

    Returns:
        the fields deleted.
    """
    info = run_info(samples, run_key)
    dataset = samples._dataset
    dataset.delete_run(run_key)
    clear_shard_summaries(dataset, run_key)
    if not delete_labels:
        return []
    still_used = {dataset.get_run_info(k).config.label_field for k in list_annotation_runs(dataset)}
    if info.label_field in still_used:
        return []
    written = AnnotateConfig(label_field=info.label_field)  # the names of the fields a run writes
    names = [written.label_field, written.polylines_field, written.status_field, written.reason_field,
             reviewed_field(written.label_field), proposed_field(written.label_field)]
    deleted = [name for name in names if dataset.has_field(name)]
    for name in deleted:
        dataset.delete_sample_field(name)
    return deleted


__all__ = [
    "ACCEPTED", "ADDED", "EDITED", "REJECTED", "REVIEW_STATUSES", "UNREVIEWED", "RUN_METHOD",
    "CorrectionCounts", "EvaluationReport", "ReviewCounts", "ReviewError", "RunInfo",
    "apply_corrections", "delete_run", "evaluate", "field_classes", "field_value", "keep_proposals",
    "label_path", "list_runs", "mark_reviewed", "only_classes", "only_unreviewed",
    "pre_annotation_fields", "promote", "proposed_field", "review_counts", "review_status",
    "reviewed_field", "run_info", "same_geometry", "set_review_status",
]
