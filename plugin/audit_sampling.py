"""Which auto-accepted labels an audit draws: a stratified random sample, pure and reproducible.

Strata are a label's class and its confidence band (the low, middle and high
thirds of the candidates' confidence range, by default), so the audit also
checks the labels just above a threshold, where mistakes are likeliest. Each
stratum gets a share of the draw proportional to its size (largest
remainders), so the audit's precision estimates the auto-accepted labels'
precision without weights; within a stratum the labels are drawn at random
with the given seed.

Example::

    >>> candidates = [AuditCandidate(f"id{i}", "cat" if i % 4 else "dog", i / 100) for i in range(100)]
    >>> len(stratified_draw(candidates, 10, seed=1))
    10
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Mapping, Optional, Sequence

DEFAULT_BANDS = 3


@dataclass(frozen=True)
class AuditCandidate:
    """An auto-accepted label that an audit may draw."""

    label_id: str
    label: str
    confidence: Optional[float]


def confidence_band(confidence: Optional[float], low: float, high: float, bands: int = DEFAULT_BANDS) -> int:
    """The band (0 = least sure) of ``confidence`` among ``bands`` equal slices of ``[low, high]``.

    A label without a confidence is put in band 0.
    """
    if confidence is None or high <= low:
        return 0
    return min(bands - 1, max(0, int((confidence - low) / (high - low) * bands)))


def allocate(sizes: Mapping[Hashable, int], n: int) -> dict:
    """Splits ``n`` draws among strata in proportion to their sizes (largest remainders).

    Ties of remainders go to the larger stratum, then to the first key in
    sorted order, so the split is the same on every run. No stratum gets more
    than it has; ``n`` above the total takes everything.
    """
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    quotas = {key: n * size / total for key, size in sizes.items()}
    counts = {key: math.floor(q) for key, q in quotas.items()}
    order = sorted(sizes, key=lambda key: (-(quotas[key] - counts[key]), -sizes[key], key))
    for key in order[: n - sum(counts.values())]:
        counts[key] += 1
    return counts


def stratified_draw(
    candidates: Sequence[AuditCandidate], n: int, seed: int = 0, bands: int = DEFAULT_BANDS,
) -> list[str]:
    """The ids of ``n`` candidates drawn at random, stratified by class and confidence band.

    The same candidates and seed draw the same ids, whatever order the
    candidates come in.

    Args:
        candidates: the labels to draw from.
        n: how many to draw (all of them when there are fewer).
        seed: the random seed.
        bands: confidence bands per class.

    Returns:
        the drawn label ids, by stratum (class, then band from least sure).
    """
    if n < 0:
        raise ValueError(f"an audit draws a number of labels, not {n}")
    known = [c.confidence for c in candidates if c.confidence is not None]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    strata: dict[tuple[str, int], list[str]] = defaultdict(list)
    for c in candidates:
        strata[(c.label, confidence_band(c.confidence, low, high, bands))].append(c.label_id)
    counts = allocate({key: len(ids) for key, ids in strata.items()}, n)
    rng = random.Random(seed)
    drawn = []
    for key in sorted(strata):
        drawn.extend(rng.sample(sorted(strata[key]), counts[key]))
    return drawn
