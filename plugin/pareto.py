"""Quality per cost: the Pareto front of setups, the recommendation rule, and the projected cost.

Pure arithmetic over measured points, used by :mod:`gemini_annotate.compare`:
a setup is a name, a quality (higher is better; ``None`` when it could not be
measured) and a cost (US dollars for the samples it labeled; ``None`` when its
model has no price).

    >>> points = [SetupPoint("lite", 0.70, 0.01), SetupPoint("flash", 0.86, 0.05), SetupPoint("pro", 0.87, 0.30)]
    >>> pareto_front(points)
    ['lite', 'flash', 'pro']
    >>> recommend(points, tolerance=0.02).name
    'flash'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

QUALITY_METRICS = ("mAP", "F1")
"""The quality a comparison ranks by: mAP when every setup's labels are ranked, else F1."""


@dataclass(frozen=True)
class SetupPoint:
    """One setup's measured quality and cost."""

    name: str
    quality: Optional[float]
    cost: Optional[float]

    @property
    def measured(self) -> bool:
        return self.quality is not None and self.cost is not None


@dataclass(frozen=True)
class Recommendation:
    """The cheapest setup within ``tolerance`` of the best quality.

    Attributes:
        name: the recommended setup.
        best: the setup of the best quality.
        best_quality: its quality.
        tolerance: how much quality below the best was accepted.
    """

    name: str
    best: str
    best_quality: float
    tolerance: float

    @property
    def floor(self) -> float:
        """The lowest quality accepted."""
        return self.best_quality - self.tolerance


@dataclass(frozen=True)
class Projection:
    """What labeling more samples with a setup would cost, at its measured cost per sample."""

    samples: int
    cost_per_sample: float
    online: float
    batch: float


def dominates(a: SetupPoint, b: SetupPoint) -> bool:
    """Whether ``a`` is at least as good and as cheap as ``b``, and strictly better in one.

    >>> dominates(SetupPoint("a", 0.9, 1.0), SetupPoint("b", 0.8, 1.0))
    True
    >>> dominates(SetupPoint("a", 0.9, 1.0), SetupPoint("b", 0.9, 1.0))
    False
    """
    if not (a.measured and b.measured):
        return False
    return a.quality >= b.quality and a.cost <= b.cost and (a.quality > b.quality or a.cost < b.cost)


def pareto_front(points: Sequence[SetupPoint]) -> list[str]:
    """The names of the measured setups no other setup dominates, cheapest first."""
    measured = [p for p in points if p.measured]
    front = [p for p in measured if not any(dominates(q, p) for q in measured)]
    return [p.name for p in sorted(front, key=lambda p: (p.cost, -p.quality, p.name))]


def recommend(points: Sequence[SetupPoint], tolerance: float) -> Optional[Recommendation]:
    """The cheapest measured setup whose quality is within ``tolerance`` of the best one's.

    Ties in cost go to the better quality, then to the name. ``None`` when no
    setup was measured (all failed, or none has a price).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be at least 0, got {tolerance}")
    measured = [p for p in points if p.measured]
    if not measured:
        return None
    best = max(measured, key=lambda p: (p.quality, -p.cost))
    eligible = [p for p in measured if p.quality >= best.quality - tolerance - 1e-12]
    chosen = min(eligible, key=lambda p: (p.cost, -p.quality, p.name))
    return Recommendation(name=chosen.name, best=best.name, best_quality=best.quality, tolerance=tolerance)


def quality_metric(mean_aps: Sequence[Optional[float]]) -> str:
    """``"mAP"`` when every setup measured has one (all ranked), else ``"F1"``: one scale for all.

    >>> quality_metric([0.5, 0.6]), quality_metric([0.5, None]), quality_metric([])
    ('mAP', 'F1', 'F1')
    """
    return "mAP" if mean_aps and all(m is not None for m in mean_aps) else "F1"


def project_cost(cost: float, samples_done: int, samples_more: int, *, batch_discount: float = 0.5) -> Projection:
    """The cost of ``samples_more`` samples at the measured ``cost`` of ``samples_done``, online
    and through the Batch API (``batch_discount`` off).

    >>> project_cost(0.02, 100, 10_000)
    Projection(samples=10000, cost_per_sample=0.0002, online=2.0, batch=1.0)
    """
    if samples_done <= 0:
        raise ValueError("a projection needs a cost measured on at least one sample")
    per_sample = cost / samples_done
    online = per_sample * samples_more
    return Projection(samples=samples_more, cost_per_sample=per_sample, online=round(online, 10),
                      batch=round(online * (1.0 - batch_discount), 10))
