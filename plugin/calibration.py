"""Calibrated confidences: a label's confidence mapped to the chance a person keeps it.

Gemini's own confidence (and any score made from it) ranks proposals but is not
a probability: a model that says 0.95 may be right 60 % of the time. Fitted on
reviewed labels, an isotonic (monotone, step-wise linear) curve maps each
confidence to the share of labels people kept at that confidence. One curve per
class that has enough reviewed labels, one global curve for the others.

Pure: arrays in, curves and numbers out; no FiftyOne, no database. The curves
are plain lists of thresholds and values, so a calibration is stored as JSON
(:meth:`Calibration.to_dict`) and read back without scikit-learn
(:meth:`Calibration.from_dict`). The review package gathers the reviewed labels
and stores the result with the run (:mod:`gemini_annotate.review.calibration`).

Example:
    >>> calibration = fit_calibration([0.95] * 10, [True] * 6 + [False] * 4, ["cup"] * 10)
    >>> round(calibration.apply("cup", 0.95), 2)
    0.6
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from sklearn.isotonic import IsotonicRegression

DEFAULT_MIN_PER_CLASS = 30
"""Reviewed labels a class needs for a curve of its own. Below that, a class's
keep rate per confidence is too noisy to fit, and the global curve serves it."""

DEFAULT_BINS = 10
"""Equal-width confidence bins of reliability tables and the ECE."""


@dataclass(frozen=True)
class CalibrationCurve:
    """A fitted confidence → keep-probability curve, linear between its points.

    Attributes:
        thresholds: increasing confidences where the curve changes slope.
        values: the keep probability at each threshold (non-decreasing, 0–1).
        count: the reviewed labels it was fitted on.
    """

    thresholds: tuple[float, ...]
    values: tuple[float, ...]
    count: int

    def apply(self, confidence: float) -> float:
        """The keep probability for ``confidence``; flat beyond the fitted range."""
        return float(np.interp(confidence, self.thresholds, self.values))

    def to_dict(self) -> dict:
        return {"thresholds": list(self.thresholds), "values": list(self.values), "count": self.count}

    @classmethod
    def from_dict(cls, stored: dict) -> "CalibrationCurve":
        return cls(tuple(float(v) for v in stored["thresholds"]), tuple(float(v) for v in stored["values"]),
                   int(stored["count"]))


@dataclass(frozen=True)
class Calibration:
    """Curves mapping a label's confidence to the chance a person keeps it.

    Attributes:
        global_curve: fitted on every reviewed label; serves classes without a
            curve of their own.
        per_class: class → its own curve, for classes with at least
            ``min_per_class`` reviewed labels.
        min_per_class: the threshold used for ``per_class``.
        run_key: the run whose labels it was fitted on, when known.
        label_field: the field they were in, when known.
    """

    global_curve: CalibrationCurve
    per_class: dict[str, CalibrationCurve] = field(default_factory=dict)
    min_per_class: int = DEFAULT_MIN_PER_CLASS
    run_key: Optional[str] = None
    label_field: Optional[str] = None

    @property
    def count(self) -> int:
        """The reviewed labels fitted on."""
        return self.global_curve.count

    def curve_for(self, label_class: Optional[str]) -> CalibrationCurve:
        """The class's own curve, or the global one."""
        return self.per_class.get(label_class, self.global_curve) if label_class is not None else self.global_curve

    def apply(self, label_class: Optional[str], confidence: float) -> float:
        """The calibrated confidence of a label of ``label_class`` with raw ``confidence``.

        A run writing calibrated confidences does, per label,
        ``label.confidence = calibration.apply(label.label, raw)``.
        """
        return self.curve_for(label_class).apply(confidence)

    def to_dict(self) -> dict:
        """Plain lists and numbers, ready for JSON or FiftyOne's execution store."""
        return {
            "global": self.global_curve.to_dict(),
            "per_class": {name: curve.to_dict() for name, curve in self.per_class.items()},
            "min_per_class": self.min_per_class,
            "run_key": self.run_key,
            "label_field": self.label_field,
        }

    @classmethod
    def from_dict(cls, stored: dict) -> "Calibration":
        """The calibration :meth:`to_dict` wrote."""
        return cls(
            global_curve=CalibrationCurve.from_dict(stored["global"]),
            per_class={name: CalibrationCurve.from_dict(c) for name, c in stored.get("per_class", {}).items()},
            min_per_class=int(stored.get("min_per_class", DEFAULT_MIN_PER_CLASS)),
            run_key=stored.get("run_key"),
            label_field=stored.get("label_field"),
        )

    def describe(self) -> str:
        """One line: what it was fitted on and which classes have their own curve."""
        own = ", ".join(f"{name} ({curve.count})" for name, curve in sorted(self.per_class.items()))
        where = f" of run {self.run_key!r}" if self.run_key else ""
        return (f"calibration{where} from {self.count} reviewed label(s); "
                f"own curve: {own or 'none'} (a class needs {self.min_per_class}), the others the global curve")


def fit_curve(confidences: Sequence[float], kept: Sequence[bool]) -> CalibrationCurve:
    """Fits an isotonic curve: confidence → share of labels kept.

    Raises:
        ValueError: no observation, unequal lengths, or a confidence outside 0–1.
    """
    x, y = _observations(confidences, kept)
    model = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(x, y)
    return CalibrationCurve(tuple(float(v) for v in model.X_thresholds_),
                            tuple(float(v) for v in model.y_thresholds_), len(x))


def fit_calibration(
    confidences: Sequence[float],
    kept: Sequence[bool],
    classes: Sequence[str],
    *,
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
    run_key: Optional[str] = None,
    label_field: Optional[str] = None,
) -> Calibration:
    """Fits a global curve and one per class with at least ``min_per_class`` observations.

    Args:
        confidences: each reviewed label's confidence (0–1), as the run gave it.
        kept: whether a person kept each label.
        classes: each label's class.
        min_per_class: observations a class needs for a curve of its own.
        run_key, label_field: recorded with the calibration.

    Raises:
        ValueError: no observation, unequal lengths, or a confidence outside 0–1.
    """
    x, y = _observations(confidences, kept)
    if len(classes) != len(x):
        raise ValueError(f"{len(classes)} classes for {len(x)} confidences: give one class per label")
    names = np.asarray([str(c) for c in classes], dtype=object)
    per_class = {}
    for name in sorted(set(names)):
        chosen = names == name
        if chosen.sum() >= min_per_class:
            per_class[name] = fit_curve(x[chosen], y[chosen])
    return Calibration(fit_curve(x, y), per_class, min_per_class, run_key, label_field)


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin of a reliability table.

    Attributes:
        lower, upper: the bin's confidence range (``lower`` included, ``upper``
            too for the last bin).
        mean_predicted: the mean confidence of its labels.
        observed: the share of its labels people kept.
        count: its labels.
    """

    lower: float
    upper: float
    mean_predicted: float
    observed: float
    count: int

    @property
    def gap(self) -> float:
        """How far the confidence is from what people did (positive: overconfident)."""
        return self.mean_predicted - self.observed

    def to_dict(self) -> dict:
        return {"lower": self.lower, "upper": self.upper, "mean_predicted": self.mean_predicted,
                "observed": self.observed, "count": self.count}


def reliability_bins(confidences: Sequence[float], kept: Sequence[bool],
                     bins: int = DEFAULT_BINS) -> list[ReliabilityBin]:
    """The reliability table: per equal-width confidence bin that holds labels,
    their mean confidence, the share kept and their count.

    Empty bins are left out.
    """
    x, y = _observations(confidences, kept, allow_empty=True)
    index = np.minimum((x * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            table.append(ReliabilityBin(b / bins, (b + 1) / bins, float(x[chosen].mean()),
                                        float(y[chosen].mean()), int(chosen.sum())))
    return table


def expected_calibration_error(table: Sequence[ReliabilityBin]) -> float:
    """The ECE of a reliability table: the bins' ``|mean confidence - share kept|``,
    weighted by their label counts (0 for an empty table)."""
    total = sum(b.count for b in table)
    return float(sum(b.count * abs(b.gap) for b in table) / total) if total else 0.0


def _observations(confidences: Sequence[float], kept: Sequence[bool],
                  allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(confidences, dtype=float).ravel()
    y = np.asarray(kept, dtype=float).ravel()
    if len(x) != len(y):
        raise ValueError(f"{len(x)} confidences for {len(y)} review outcomes: give one outcome per label")
    if not len(x) and not allow_empty:
        raise ValueError("nothing to fit: no reviewed label with a confidence")
    if not np.all((x >= 0) & (x <= 1)):
        raise ValueError("confidences must lie between 0 and 1")
    return x, y
