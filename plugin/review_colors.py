"""Labels drawn by review status: a FiftyOne color scheme on the dataset, set by a run.

A reviewer sees at a glance what still needs a look: unreviewed labels in
amber, auto-accepted in sky blue, accepted in bluish green, rejected in
magenta, edited in white, drawn by a person in cyan (the field itself, in the
sidebar, in amber). A run sets this for the fields it writes unless the
dataset's color scheme already says how to draw that field (the user's choice
stands), and saves a view of each field with its rejected labels hidden
(``<field>: rejected hidden``), for looking at what is kept.
"""

from __future__ import annotations

import fiftyone as fo
from fiftyone import ViewField as F

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
    AUTO_ACCEPTED: "#56b4e9",
    ACCEPTED: "#00d68f",
    REJECTED: "#ff2bd6",
    EDITED: "#ffffff",
    ADDED: "#00e5ff",
}
"""One color per review status: bright and saturated, seen on photographs, and told apart by
colour-blind eyes in the pairs that matter most: amber waiting, bluish green accepted,
magenta rejected (not red against green, which red-green colour blindness merges)."""
FIELD_COLOR = REVIEW_COLORS[UNREVIEWED]
"""The field's own color (sidebar, and any label drawn without a status)."""
REJECTED_HIDDEN_VIEW = "{field}: rejected hidden"
"""The name of the saved view of a field without its rejected labels."""


def review_color_field(path: str) -> dict:
    """The color scheme entry that draws the labels of ``path`` by their review status."""
    return {"path": path, "fieldColor": FIELD_COLOR, "colorByAttribute": REVIEW_ATTRIBUTE,
            "valueColors": [{"value": status, "color": color} for status, color in REVIEW_COLORS.items()]}


def save_rejected_hidden_view(dataset: fo.Dataset, field: str) -> str:
    """Saves (once) the view of ``dataset`` showing ``field`` without its rejected labels; returns its name.

    A run saves it for a field that exists; rejecting labels saves it for theirs."""
    name = REJECTED_HIDDEN_VIEW.format(field=field)
    if not dataset.has_saved_view(name):
        kept = dataset.filter_labels(field, F(REVIEW_ATTRIBUTE) != REJECTED, only_matches=False)
        dataset.save_view(name, kept, description=f"{field} without the labels reviewers rejected")
    return name


def color_by_review_status(dataset: fo.Dataset, paths: list[str]) -> list[str]:
    """Makes the App draw the labels of ``paths`` by review status, leaving alone any path the
    dataset's color scheme already customises, and saves each path's view with rejected labels
    hidden; returns the paths it colored."""
    for path in paths:
        if dataset.has_field(path):  # a first run records itself before writing its field
            save_rejected_hidden_view(dataset, path)
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
