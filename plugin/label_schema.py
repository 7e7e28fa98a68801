"""The attributes of the labels a run writes, declared in the schema without scanning the dataset.

FiftyOne's App filters a label attribute (``review``, ``gemini_model``,
``votes``...) only once the dataset's schema declares it. FiftyOne's
``add_dynamic_sample_fields`` finds undeclared attributes by aggregating over
every sample of the dataset, which costs time in proportion to the dataset,
not to the run. :class:`LabelAttributes` instead notes the attributes of the
labels as the writer writes them (a dictionary lookup per attribute) and
declares the new ones with ``add_sample_field`` on their embedded paths
(``gemini.detections.review``), so the end of a run costs the same on 1k or
1M samples.

Example::

    attributes = LabelAttributes()
    attributes.observe("gemini", fo.Detections(detections=[fo.Detection(label="cat", review="unreviewed")]))
    attributes.declare(dataset)   # declares gemini.detections.review as a StringField
"""

from __future__ import annotations

from typing import Any

import fiftyone as fo
import fiftyone.core.fields as fof
from fiftyone.core.odm.utils import get_implied_field_kwargs

from .labels import labels_in, list_field_of


def attribute_kwargs(value: Any) -> dict[str, Any]:
    """``add_sample_field`` arguments for an attribute holding ``value`` (FiftyOne's own inference)."""
    return get_implied_field_kwargs(value, dynamic=True)


def merged_kwargs(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The field kind that holds both values: a float attribute also holds ints; otherwise the first seen."""
    kinds = {old["ftype"], new["ftype"]}
    if kinds == {fof.IntField, fof.FloatField}:
        return {"ftype": fof.FloatField}
    return old


class LabelAttributes:
    """The dynamic attributes seen on written labels, by embedded path, with their field kinds."""

    def __init__(self) -> None:
        self.paths: dict[str, dict[str, Any]] = {}

    def observe(self, field_name: str, value: Any) -> None:
        """Notes the dynamic attributes of the labels in a label field's value (no I/O)."""
        if not isinstance(value, fo.Label):
            return
        list_field = list_field_of(type(value))
        prefix = f"{field_name}.{list_field}." if list_field else f"{field_name}."
        for label in labels_in(value):
            for name in label._dynamic_fields:  # FiftyOne's name for a label's custom attributes
                current = getattr(label, name, None)
                if current is None:
                    continue
                path = prefix + name
                known = self.paths.get(path)
                if known is None:
                    self.paths[path] = attribute_kwargs(current)
                elif known["ftype"] is fof.IntField and isinstance(current, float):
                    self.paths[path] = merged_kwargs(known, attribute_kwargs(current))

    def declare(self, dataset: fo.Dataset) -> list[str]:
        """Declares the attributes the schema does not have yet; returns their paths.

        Only the noted paths are looked at: no sample is read.
        """
        added = []
        for path, kwargs in sorted(self.paths.items()):
            parent = path.rsplit(".", 1)[0]
            if dataset.get_field(parent) is None or dataset.get_field(path) is not None:
                continue
            dataset.add_sample_field(path, **kwargs)
            added.append(path)
        return added
