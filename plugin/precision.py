"""How precise reviewed labels show a confidence threshold to be: pure statistics, no database.

A person's review of a proposal is a Bernoulli trial: kept (correct) or not.
Among the ``n`` reviewed proposals at or above a confidence threshold, ``k``
were correct; the one-sided Clopper–Pearson bound says, at a confidence level
``1 - alpha``, that the precision of labels like them is at least
``beta.ppf(alpha, k, n - k + 1)``. :func:`choose_thresholds` picks the lowest
threshold whose bound still meets a target precision, per class where a class
has enough reviews, else over all classes; :func:`shortfall` says how many more
reviews a target needs when no threshold meets it.

Example::

    >>> round(precision_lower_bound(59, 59, 0.95), 4)   # 59 of 59 kept
    0.9505
    >>> fewest_reviews(0.95, 0.95)                      # none fewer can show 95 %
    59
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np
from scipy.stats import beta

OWN, OVERALL, NONE = "class", "global", "none"
"""Where a class's threshold comes from: its own reviews, all reviews, or nowhere (not auto-accepted)."""

_SEARCH_LIMIT = 2**31
"""Reviews beyond which a shortfall is reported as out of reach rather than searched further."""
_SHORTFALL_CANDIDATES = 200
"""Thresholds a shortfall tries at most."""


def _check(target: float, confidence_level: float) -> None:
    if not 0 < target < 1:
        raise ValueError(f"the target precision must be between 0 and 1 (exclusive), not {target}")
    if not 0 < confidence_level < 1:
        raise ValueError(f"the confidence level must be between 0 and 1 (exclusive), not {confidence_level}")


def precision_lower_bound(correct, total, confidence_level: float):
    """The one-sided Clopper–Pearson lower bound on a precision of ``correct`` of ``total``.

    Works elementwise on arrays; 0 where nothing was correct (or nothing reviewed).
    Non-integer counts are allowed (used to ask what a precision would show).

    Args:
        correct: proposals a person kept.
        total: proposals reviewed.
        confidence_level: e.g. 0.95: the bound holds with this probability.
    """
    correct, total = np.asarray(correct, float), np.asarray(total, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(1 - confidence_level, np.maximum(correct, 1e-300), total - correct + 1)
    bound = np.where(correct > 0, bound, 0.0)
    return float(bound) if bound.ndim == 0 else bound


def precision_interval(correct: int, total: int, confidence_level: float) -> tuple[float, float]:
    """The two-sided Clopper–Pearson interval of a precision of ``correct`` of ``total``.

    ``(0, 1)`` when nothing was reviewed.
    """
    alpha = (1 - confidence_level) / 2
    low = 0.0 if correct == 0 else float(beta.ppf(alpha, correct, total - correct + 1))
    high = 1.0 if correct == total else float(beta.ppf(1 - alpha, correct + 1, total - correct))
    return low, high


def fewest_reviews(target: float, confidence_level: float) -> int:
    """The fewest reviewed labels that can show ``target``: all of them correct.

    ``n`` of ``n`` correct bound the precision at ``alpha ** (1 / n)``, so
    ``n = ceil(ln alpha / ln target)``: 59 for 95 % at 95 % confidence.
    """
    _check(target, confidence_level)
    n = max(1, math.ceil(math.log(1 - confidence_level) / math.log(target)))
    while n > 1 and precision_lower_bound(n - 1, n - 1, confidence_level) >= target:  # float rounding
        n -= 1
    while precision_lower_bound(n, n, confidence_level) < target:
        n += 1
    return n


def _smallest(meets, start) -> np.ndarray:
    """Per element, the smallest integer ``m >= start`` with ``meets(m)``; NaN beyond the search limit.

    ``meets`` takes an array of candidates and must stay true once true
    (more reviews never show less); a bisection over all elements at once.
    """
    start = np.asarray(start, float)
    low, high = start - 1, start + _SEARCH_LIMIT
    reachable = meets(high)
    while np.any(high - low > 1):
        middle = np.floor((low + high) / 2)
        ok = meets(middle)
        low, high = np.where(ok, low, middle), np.where(ok, middle, high)
    return np.where(reachable, high, np.nan)


def reviews_needed(precision, target: float, confidence_level: float, min_reviews: int = 1):
    """How many reviewed labels, at an observed ``precision``, would show ``target``.

    The smallest ``n`` (at least ``min_reviews``) whose bound with
    ``precision * n`` correct meets the target; ``None`` (NaN in arrays) when
    ``precision`` does not exceed the target: no number of such reviews will
    ever show it.
    """
    _check(target, confidence_level)
    precision = np.asarray(precision, float)

    def meets(n):
        return (n >= max(1, min_reviews)) & (precision_lower_bound(precision * n, n, confidence_level) >= target)

    needed = np.where(precision > target, _smallest(meets, np.ones_like(precision)), np.nan)
    if needed.ndim == 0:
        return None if np.isnan(needed) else int(needed)
    return needed


@dataclass(frozen=True)
class Outcome:
    """One reviewed proposal: its class, the confidence it came with, whether a person kept it."""

    label: str
    confidence: Optional[float]
    correct: bool


@dataclass(frozen=True)
class Threshold:
    """A confidence threshold and what the reviews at or above it show."""

    threshold: float
    reviewed: int
    correct: int
    lower_bound: float

    @property
    def precision(self) -> float:
        return self.correct / self.reviewed


def lowest_threshold(
    outcomes: Iterable[Outcome], target: float, confidence_level: float, min_reviews: int = 1,
) -> Optional[Threshold]:
    """The lowest confidence whose reviewed labels at or above it show ``target``.

    Candidates are the reviewed confidences themselves; labels with equal
    confidences are taken or left together. The bound need not fall
    monotonically with the threshold, so every candidate is tried and the
    lowest that meets the target (with at least ``min_reviews`` labels above
    it) wins. Labels without a confidence cannot be ranked and are left out.

    Returns:
        the :class:`Threshold`, or ``None`` when no threshold meets the target.
    """
    _check(target, confidence_level)
    confidences, reviewed, correct = _cumulative(outcomes)
    bounds = precision_lower_bound(correct, reviewed, confidence_level)
    meets = (reviewed >= min_reviews) & (bounds >= target)
    if not meets.any():
        return None
    i = int(np.flatnonzero(meets)[-1])
    return Threshold(float(confidences[i]), int(reviewed[i]), int(correct[i]), float(bounds[i]))


def _cumulative(outcomes: Iterable[Outcome]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each candidate threshold, from the highest: the threshold, the ranked reviews at or
    above it, and those kept. Equal confidences make one candidate."""
    scored = sorted(((o.confidence, o.correct) for o in outcomes if o.confidence is not None), reverse=True)
    confidences = np.array([c for c, _ in scored], float)
    reviewed = np.arange(1, len(scored) + 1)
    correct = np.cumsum([k for _, k in scored], dtype=int)
    group_ends = np.r_[confidences[1:] != confidences[:-1], True] if scored else np.zeros(0, bool)
    return confidences[group_ends], reviewed[group_ends], correct[group_ends]


@dataclass(frozen=True)
class ClassThreshold:
    """The threshold a class's labels are auto-accepted at, and where it comes from.

    Attributes:
        label: the class.
        reviewed: its reviewed labels with a confidence.
        source: :data:`OWN` (its own reviews), :data:`OVERALL` (too few of its
            own: the threshold over all classes) or :data:`NONE` (its own
            reviews, or all reviews, cannot show the target: not auto-accepted).
        threshold: the threshold found (its own or the overall one), or ``None``.
    """

    label: str
    reviewed: int
    source: str
    threshold: Optional[Threshold]


@dataclass(frozen=True)
class ThresholdPlan:
    """The thresholds a set of reviews supports, per class and over all classes.

    Attributes:
        target, confidence_level: what the thresholds were chosen for.
        min_reviews: reviewed labels a class needs for a threshold of its own.
        overall: the threshold over all reviewed labels, or ``None``.
        classes: class → :class:`ClassThreshold`, for each reviewed class
            (empty when thresholds are not per class).
    """

    target: float
    confidence_level: float
    min_reviews: int
    overall: Optional[Threshold]
    classes: dict[str, ClassThreshold] = field(default_factory=dict)

    def threshold_for(self, label: str) -> Optional[float]:
        """The confidence a label of this class needs to be auto-accepted; ``None``: never."""
        entry = self.classes.get(label)
        chosen = self.overall if entry is None else entry.threshold
        return None if chosen is None else chosen.threshold

    def supports(self, classes: Iterable[str]) -> bool:
        """Whether a label of any of ``classes`` can be auto-accepted."""
        return any(self.threshold_for(name) is not None for name in classes)

    def passing(self, outcomes: Iterable[Outcome]) -> tuple[int, int]:
        """``(correct, reviewed)`` among the reviewed labels at or above their class's threshold."""
        passed = [o.correct for o in outcomes if o.confidence is not None
                  and (t := self.threshold_for(o.label)) is not None and o.confidence >= t]
        return sum(passed), len(passed)


def choose_thresholds(
    outcomes: Sequence[Outcome],
    target: float,
    confidence_level: float,
    *,
    per_class: bool = True,
    min_reviews: Optional[int] = None,
) -> ThresholdPlan:
    """The lowest thresholds whose reviews show ``target`` precision at ``confidence_level``.

    With ``per_class``, a class with at least ``min_reviews`` reviewed labels
    gets the threshold its own reviews support (or none: its reviews show it
    cannot be trusted that far), and the other classes share the threshold of
    all reviews.

    Args:
        outcomes: the reviewed proposals.
        min_reviews: reviewed labels (with a confidence) a class needs for a
            threshold of its own; by default :func:`fewest_reviews`, the fewest
            that can show the target at all.
    """
    _check(target, confidence_level)
    min_reviews = fewest_reviews(target, confidence_level) if min_reviews is None else max(1, min_reviews)
    overall = lowest_threshold(outcomes, target, confidence_level, min_reviews)
    classes = {}
    if per_class:
        by_class: dict[str, list[Outcome]] = defaultdict(list)
        for outcome in outcomes:
            if outcome.confidence is not None:
                by_class[outcome.label].append(outcome)
        for label in sorted(by_class):
            own = by_class[label]
            if len(own) >= min_reviews:
                found = lowest_threshold(own, target, confidence_level, min_reviews)
                classes[label] = ClassThreshold(label, len(own), OWN if found else NONE, found)
            else:
                classes[label] = ClassThreshold(label, len(own), OVERALL if overall else NONE, overall)
    return ThresholdPlan(target, confidence_level, min_reviews, overall, classes)


@dataclass(frozen=True)
class Shortfall:
    """Why reviews cannot show a target yet, and about how many more they need.

    "More reviews at confidence ≥ t" counts reviewed labels that confident:
    reviewing samples also brings less confident ones.

    Attributes:
        reviewed, correct: the reviewed labels with a confidence, and those kept.
        lower_bound: what all of them show now.
        more_if_all_correct, all_correct_threshold: the fewest further reviews
            that could show the target, every one kept, of labels at or above
            that confidence (``None``: out of reach).
        more_at_observed, observed_threshold, observed_precision: the fewest
            further reviews at or above a threshold that show the target if
            they are as precise as those seen there (``None``: no threshold
            shows a precision above the target).
    """

    target: float
    confidence_level: float
    reviewed: int
    correct: int
    lower_bound: float
    more_if_all_correct: Optional[int]
    all_correct_threshold: Optional[float] = None
    more_at_observed: Optional[int] = None
    observed_threshold: Optional[float] = None
    observed_precision: Optional[float] = None

    def describe(self) -> str:
        level = f"{self.confidence_level:.0%} confidence"
        if self.reviewed == 0:
            now = "no reviewed label with a confidence yet"
        else:
            now = (f"{self.reviewed} reviewed label(s) with a confidence, {self.correct} kept "
                   f"(precision {self.correct / self.reviewed:.3f}, at least {self.lower_bound:.3f} at {level})")
        parts = [f"the reviews cannot show a precision of {self.target:.3g} at {level}: {now}"]
        if self.more_if_all_correct is not None:
            where = ("" if self.all_correct_threshold is None
                     else f" with a confidence ≥ {self.all_correct_threshold:.3f}")
            parts.append(f"at least {self.more_if_all_correct} more reviewed label(s){where} are needed, "
                         "even if every one is kept")
        if self.more_at_observed is not None:
            parts.append(f"about {self.more_at_observed} more with a confidence ≥ {self.observed_threshold:.3f} "
                         f"at the precision seen there ({self.observed_precision:.3f})")
        elif self.reviewed:
            parts.append("no confidence threshold has shown a precision above the target so far: lower the "
                         "target, or review more to find out whether the surest labels are more precise")
        return "; ".join(parts)


def shortfall(
    outcomes: Iterable[Outcome], target: float, confidence_level: float, min_reviews: int = 1,
) -> Shortfall:
    """How far reviews are from showing ``target``, at the threshold nearest to it: see :class:`Shortfall`.

    Every candidate threshold is tried: the fewest further reviews, all kept,
    any threshold needs; and, among thresholds whose reviews are more precise
    than the target, the fewest further reviews at that precision.
    """
    _check(target, confidence_level)
    confidences, reviewed, correct = _cumulative(outcomes)
    n, k = (int(reviewed[-1]), int(correct[-1])) if len(reviewed) else (0, 0)
    if not n:
        needed = max(fewest_reviews(target, confidence_level), min_reviews)
        return Shortfall(target, confidence_level, 0, 0, 0.0, needed)
    # an estimate ("about"): evenly spread candidates suffice, and keep large review sets fast
    spread = np.unique(np.linspace(0, len(reviewed) - 1, min(len(reviewed), _SHORTFALL_CANDIDATES)).round())
    confidences, reviewed, correct = (a[spread.astype(int)] for a in (confidences, reviewed, correct))

    def all_kept(m):
        return ((reviewed + m >= min_reviews)
                & (precision_lower_bound(correct + m, reviewed + m, confidence_level) >= target))

    more_kept = _smallest(all_kept, np.zeros(len(reviewed)))
    more_seen = reviews_needed(correct / reviewed, target, confidence_level, min_reviews) - reviewed
    more_seen = np.maximum(more_seen, more_kept)  # NaN stays NaN
    best_kept = None if np.all(np.isnan(more_kept)) else int(np.nanargmin(more_kept))
    best_seen = None if np.all(np.isnan(more_seen)) else int(np.nanargmin(more_seen))
    return Shortfall(
        target, confidence_level, n, k, precision_lower_bound(k, n, confidence_level),
        None if best_kept is None else int(more_kept[best_kept]),
        None if best_kept is None else float(confidences[best_kept]),
        None if best_seen is None else int(more_seen[best_seen]),
        None if best_seen is None else float(confidences[best_seen]),
        None if best_seen is None else float(correct[best_seen] / reviewed[best_seen]),
    )


CONFIRMED = "confirmed"
"""An audit whose interval lies at or above the target."""
CONSISTENT = "consistent with target"
"""An audit measuring at least the target, whose interval still reaches below it."""
UNDER = "measured under target"
"""An audit measuring less than the target, whose interval still reaches it: audit more, or review."""
BELOW = "below target"
"""An audit whose whole interval lies below the target: the threshold is too low for this class."""
NOT_AUDITED = "not audited yet"
FLAGGED_VERDICTS = (UNDER, BELOW)
"""Verdicts that flag a class for attention."""


def audit_verdict(correct: int, audited: int, target: float, confidence_level: float) -> str:
    """What an audit of ``audited`` auto-accepted labels, ``correct`` of them kept, says about ``target``.

    Judged on the two-sided Clopper–Pearson interval at ``confidence_level``:
    :data:`CONFIRMED`, :data:`CONSISTENT`, :data:`UNDER`, :data:`BELOW` or
    :data:`NOT_AUDITED`.
    """
    _check(target, confidence_level)
    if audited == 0:
        return NOT_AUDITED
    low, high = precision_interval(correct, audited, confidence_level)
    if low >= target:
        return CONFIRMED
    if high < target:
        return BELOW
    return CONSISTENT if correct / audited >= target else UNDER
