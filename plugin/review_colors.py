"""Labels drawn by review status: a FiftyOne color scheme on the dataset, set by a run.

A reviewer sees at a glance what still needs a look: unreviewed labels in
amber, auto-accepted in blue, accepted in green, rejected in red, edited in
purple, drawn by a person in cyan. A run sets this for the fields it writes
unless the dataset's color scheme already says how to draw that field (the
user's choice stands).
"""

from __future__ import annotations

import fiftyone as fo

from .vocabulary import (
    ACCEPTED,
    ADDED,
    AUTO_ACCEPTED,
    EDITED,
    REJECTED,
    REVIEW_ATTRIBUTE,
    UNREVIEWED,
)

REVIEW_COLORS = {
    UNREVIEWED: "#ffb000",
    AUTO_ACCEPTED: "#3d8bfd",
    ACCEPTED: "#2ca02c",
    REJECTED: "#e3242b",
    EDITED: "#a05ad8",
    ADDED: "#17becf",
}
"""One color per review status: bright, told apart on photographs and by colour-blind eyes
in the pairs that matter most (amber waiting vs green accepted vs red rejected)."""


def review_color_field(path: str) -> dict:
    """The color scheme entry that draws the labels of ``path`` by their review status."""
    return {"path": path, "colorByAttribute": REVIEW_ATTRIBUTE,
            "valueColors": [{"value": status, "color": color} for status, color in REVIEW_COLORS.items()]}


def color_by_review_status(dataset: fo.Dataset, paths: list[str]) -> list[str]:
    """Makes the App draw the labels of ``paths`` by review status, leaving alone any path the
    dataset's color scheme already customises; returns the paths it set."""
    scheme = dataset.app_config.color_scheme or fo.ColorScheme()
    customised = {entry.get("path") for entry in scheme.fields or []}
    added = [path for path in paths if path not in customised]
    if added:
        scheme.fields = list(scheme.fields or []) + [review_color_field(path) for path in added]
        if scheme.color_by is None:
            scheme.color_by = "value"
        dataset.app_config.color_scheme = scheme
        dataset.save()
    return added
