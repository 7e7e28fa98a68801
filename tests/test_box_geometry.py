"""The box formula, exactly: Gemini's [ymin, xmin, ymax, xmax] in 0–1000 ↔ FiftyOne's [x, y, w, h]."""

from __future__ import annotations

import numpy as np
import pytest

from gemini_annotate.boxes import box_2d_to_relative, relative_to_box_2d
from gemini_annotate.items import ConversionReport, read_box_2d


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


RAW_BOXES = [
    # (id, raw box_2d, kept box or None, (report, reason) or None when nothing was repaired or dropped)
    ("ordered", [100, 200, 300, 600], [100, 200, 300, 600], None),
    ("swapped_corners", [300, 600, 100, 200], [100, 200, 300, 600], ("repaired", "box corners were swapped")),
    ("swapped_y_only", [300, 200, 100, 600], [100, 200, 300, 600], ("repaired", "box corners were swapped")),
    ("out_of_range_clipped", [-20, 950, 400, 1040], [0, 950, 400, 1000], ("repaired", "box clipped to the image")),
    ("clipped_on_two_sides", [-20, 200, 300, 1200], [0, 200, 300, 1000], ("repaired", "box clipped to the image")),
    ("numbers_as_strings", ["100", "200", "300.5", 400], [100, 200, 300.5, 400], None),
    ("box_written_as_a_string", "[100, 200, 300, 600]", [100, 200, 300, 600], None),
    ("floats", [100.4, 200.6, 300.2, 600.9], [100.4, 200.6, 300.2, 600.9], None),
    ("zero_width", [100, 200, 300, 200], None, ("dropped", "box has no area")),
    ("zero_height", [100, 200, 100, 400], None, ("dropped", "box has no area")),
    ("zero_height_after_clipping", [1100, 200, 1200, 600], None, ("dropped", "box has no area")),
    ("three_numbers", [100, 200, 300], None, ("dropped", "box_2d is not 4 numbers")),
    ("string_without_commas", "100 200 300 400", None, ("dropped", "box_2d is not 4 numbers")),
    ("not_numbers", ["a", "b", "c", "d"], None, ("dropped", "box_2d is not 4 numbers")),
    ("one_not_a_number", [100, "a", 300, 400], None, ("dropped", "box_2d is not 4 numbers")),
    ("nan", [100, float("nan"), 300, 400], None, ("dropped", "box_2d has a non-finite value")),
    ("infinite", [0, 0, float("inf"), 3], None, ("dropped", "box_2d has a non-finite value")),
    ("null", None, None, ("dropped", "box_2d is not 4 numbers")),
]


@pytest.mark.parametrize("raw, expected, note", [b[1:] for b in RAW_BOXES], ids=[b[0] for b in RAW_BOXES])
def test_raw_boxes_are_validated_ordered_and_clipped(raw, expected, note):
    report = ConversionReport()
    assert read_box_2d(raw, report) == expected
    if note is None:
        assert not report.repaired and not report.dropped
    else:
        kind, reason = note
        assert getattr(report, kind)[reason] == 1
