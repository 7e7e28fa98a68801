"""The box formula, exactly: Gemini's [ymin, xmin, ymax, xmax] in 0–1000 ↔ FiftyOne's [x, y, w, h]."""

from __future__ import annotations

import numpy as np
import pytest

from gemini_annotate.convert import (
    ConversionReport,
    box_2d_to_relative,
    read_box_2d,
    relative_to_box_2d,
)


@pytest.mark.parametrize(
    "box_2d, expected",
    [
        ([0, 0, 1000, 1000], [0.0, 0.0, 1.0, 1.0]),
        ([100, 200, 300, 600], [0.2, 0.1, 0.4, 0.2]),
        ([250, 500, 750, 1000], [0.5, 0.25, 0.5, 0.5]),
        ([1, 2, 3, 4], [0.002, 0.001, 0.002, 0.002]),
    ],
)
def test_box_2d_maps_to_relative_xywh_by_the_documented_formula(box_2d, expected):
    assert box_2d_to_relative(box_2d) == pytest.approx(expected, abs=1e-12)


def test_round_trip_moves_no_edge_more_than_half_a_thousandth():
    rng = np.random.default_rng(0)
    for _ in range(20_000):
        x0, x1 = sorted(rng.uniform(0, 1, 2))
        y0, y1 = sorted(rng.uniform(0, 1, 2))
        box = [x0, y0, x1 - x0, y1 - y0]
        back = box_2d_to_relative(relative_to_box_2d(box))
        edges = (back[0], back[1], back[0] + back[2], back[1] + back[3])
        assert np.max(np.abs(np.subtract(edges, (x0, y0, x1, y1)))) <= 0.0005 + 1e-12


@pytest.mark.parametrize(
    "raw, expected, note",
    [
        ([100, 200, 300, 400], [100, 200, 300, 400], None),
        ([300, 400, 100, 200], [100, 200, 300, 400], ("repaired", "box corners were swapped")),
        ([-20, 200, 300, 1200], [0, 200, 300, 1000], ("repaired", "box clipped to the image")),
        (["100", "200", "300.5", 400], [100, 200, 300.5, 400], None),
        ([100, 200, 100, 400], None, ("dropped", "box has no area")),
        ([100, 200, 300], None, ("dropped", "box_2d is not 4 numbers")),
        ("100 200 300 400", None, ("dropped", "box_2d is not 4 numbers")),
        ([100, "a", 300, 400], None, ("dropped", "box_2d is not 4 numbers")),
        ([100, float("nan"), 300, 400], None, ("dropped", "box_2d has a non-finite value")),
        ([1100, 200, 1300, 400], None, ("dropped", "box has no area")),
    ],
)
def test_raw_boxes_are_validated_ordered_and_clipped(raw, expected, note):
    report = ConversionReport()
    assert read_box_2d(raw, report) == expected
    if note is None:
        assert not report.repaired and not report.dropped
    else:
        kind, reason = note
        assert getattr(report, kind)[reason] == 1
