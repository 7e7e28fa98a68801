"""Calibration from reviews: fit a run's confidences to what people kept, store it with the run, apply it.

A reviewed proposal is *kept* when a person accepted it, or edited it and the
edit still is Gemini's object (same class, box IoU at least 0.5 with Gemini's
proposal; a classification whose class survived); a rejected one is not kept
(:mod:`gemini_annotate.review.outcomes` says it once, for calibration and
auto-acceptance alike). Unreviewed and auto-accepted labels are no one's
verdict and are left out, as are labels without a confidence. Only samples
marked reviewed count. The fit itself is :mod:`gemini_annotate.calibration`.

The calibration of a run is stored in the run records' execution store
(``gemini_annotate_runs``) under ``"<run_key>/calibration"``, with the run's
timestamp: a run deleted and created again under the same key does not inherit it.

Using a stored calibration, as a later run does::

    calibration = review.load_calibration(dataset, "gemini-run-1")
    if calibration is not None:
        label.confidence = calibration.apply(label.label, label.confidence)

or on a field's labels already written (the original stays in ``raw_confidence``)::

    review.apply_calibration(dataset.match_tags("todo"), "gemini", calibration)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import fiftyone as fo
import fiftyone.core.labels as fol
from fiftyone import ViewField as F

from ..calibration import DEFAULT_MIN_PER_CLASS, Calibration, fit_calibration
from ..labels import field_value, labels_in
from ..review_rules import is_pre_annotation, label_attribute
from ..run_records import list_annotation_runs, load_calibration_entry, save_calibration_entry
from ..vocabulary import RAW_CONFIDENCE_ATTRIBUTE, RUN_ATTRIBUTE, reviewed_field
from .outcomes import label_outcomes
from .status import ReviewError


@dataclass(frozen=True)
class ConfidenceOutcome:
    """One reviewed proposal: its run, class and raw confidence, and whether a person kept it."""

    run_key: str
    label_class: Optional[str]
    confidence: float
    kept: bool


def confidence_outcomes(samples: fo.core.collections.SampleCollection, label_field: str) -> list[ConfidenceOutcome]:
    """The outcome of every proposal with a confidence on the reviewed samples of ``samples``.

    What counts as kept, and the confidence read (the one the run gave, before
    any calibration), are :mod:`gemini_annotate.review.outcomes`' (the same
    outcomes auto-acceptance learns from).
    """
    flag = reviewed_field(label_field)
    if not samples._dataset.has_field(flag):
        return []
    found = []
    for label, outcome in label_outcomes(samples.match(F(flag) == True), label_field):  # noqa: E712
        if outcome.confidence is not None:
            found.append(ConfidenceOutcome(label[RUN_ATTRIBUTE], outcome.label, outcome.confidence, outcome.correct))
    return found


def calibrate(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    *,
    run_key: Optional[str] = None,
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
    store: bool = True,
) -> Calibration:
    """Fits a run's confidences to the chance a person keeps the label, from the reviewed samples.

    Isotonic regression per class with at least ``min_per_class`` reviewed
    labels (default :data:`~gemini_annotate.calibration.DEFAULT_MIN_PER_CLASS`),
    one global fit for the other classes. Only the labels of one run are used:
    two runs' confidences need not mean the same.

    Args:
        samples: the samples whose reviewed ones to learn from.
        label_field: the pre-annotation field.
        run_key: the run to calibrate; by default the latest recorded run with
            reviewed labels that carry a confidence in ``samples``.
        min_per_class: reviewed labels a class needs for a curve of its own.
        store: store it with the run (see :func:`load_calibration`).

    Returns:
        the :class:`~gemini_annotate.calibration.Calibration`.

    Raises:
        ReviewError: no reviewed label of the run has a confidence, or the run
            to store it with is not recorded.
    """
    outcomes = confidence_outcomes(samples, label_field)
    run_key = run_key or _latest_run(samples, {o.run_key for o in outcomes}, label_field)
    chosen = [o for o in outcomes if o.run_key == run_key]
    if not chosen:
        raise ReviewError(
            f"no reviewed label of run {run_key!r} in {label_field!r} has a confidence: calibration learns "
            "from labels of a run with confidence=True on samples marked reviewed"
        )
    calibration = fit_calibration([o.confidence for o in chosen], [o.kept for o in chosen],
                                  [o.label_class for o in chosen], min_per_class=min_per_class,
                                  run_key=run_key, label_field=label_field)
    if store:
        save_calibration(samples, calibration)
    return calibration


def _latest_run(samples: fo.core.collections.SampleCollection, run_keys: set[str], label_field: str) -> str:
    recorded = [key for key in list_annotation_runs(samples) if key in run_keys]
    if not recorded:
        raise ReviewError(
            f"no reviewed label in {label_field!r} with a confidence comes from a recorded run: "
            "review samples of a run with confidence=True, or name the run with run_key="
        )
    return max(recorded, key=lambda key: samples.get_run_info(key).timestamp)


def save_calibration(samples: fo.core.collections.SampleCollection, calibration: Calibration) -> None:
    """Stores a calibration with its run (``calibration.run_key``), replacing an earlier one.

    Raises:
        ReviewError: the run is not recorded on the dataset.
    """
    dataset = samples._dataset
    if not calibration.run_key or not dataset.has_run(calibration.run_key):
        raise ReviewError(f"run {calibration.run_key!r} is not recorded on {dataset.name!r}: "
                          "a calibration is stored with the run it was fitted on (use store=False)")
    save_calibration_entry(dataset, calibration.run_key, {
        "calibration": calibration.to_dict(),
        "run_timestamp": _run_timestamp(dataset, calibration.run_key),
    })


def load_calibration(samples: fo.core.collections.SampleCollection, run_key: str) -> Optional[Calibration]:
    """The calibration stored with a run, or ``None`` when it has none (or the run no longer exists)."""
    dataset = samples._dataset
    if not dataset.has_run(run_key):
        return None
    entry = load_calibration_entry(dataset, run_key)
    if not entry or entry.get("run_timestamp") != _run_timestamp(dataset, run_key):
        return None
    return Calibration.from_dict(entry["calibration"])


def _run_timestamp(dataset: fo.Dataset, run_key: str) -> str:
    return dataset.get_run_info(run_key).timestamp.isoformat()


def calibrate_labels(labels: Iterable[fol.Label], calibration: Calibration) -> int:
    """Rewrites the labels' ``confidence`` to the calibrated value, in memory.

    The run's own value is kept in ``raw_confidence``, and is what is
    calibrated: calibrating again (with this or a newer calibration) does not
    compound. Labels without a confidence are left alone.

    Returns:
        the number of labels calibrated.
    """
    calibrated = 0
    for label in labels:
        raw = label_attribute(label, RAW_CONFIDENCE_ATTRIBUTE, label_attribute(label, "confidence"))
        if raw is None:
            continue
        label[RAW_CONFIDENCE_ATTRIBUTE] = raw
        if isinstance(raw, (list, tuple)):  # a keypoint: one per point
            label.confidence = [None if v is None else calibration.apply(label.label, v) for v in raw]
        else:
            label.confidence = calibration.apply(label.label, raw)
        calibrated += 1
    return calibrated


def apply_calibration(
    samples: fo.core.collections.SampleCollection, label_field: str, calibration: Calibration,
) -> int:
    """Writes calibrated confidences onto the pre-annotations of ``label_field`` in ``samples``.

    See :func:`calibrate_labels`: the original stays in ``raw_confidence``,
    and applying twice gives the same values as once. Labels people drew are
    left alone.

    Returns:
        the number of labels calibrated.
    """
    label_type = samples.get_field(label_field).document_type
    updates, calibrated = {}, 0
    for sample_id, value in zip(*samples.values(["id", label_field])):
        labels = labels_in(value)
        changed = calibrate_labels([label for label in labels if is_pre_annotation(label)], calibration)
        if changed:
            calibrated += changed
            updates[sample_id] = field_value(label_type, labels)
    if updates:
        samples._dataset.set_values(label_field, updates, key_field="id")
        samples._dataset.add_dynamic_sample_fields(fields=[label_field])
    return calibrated
