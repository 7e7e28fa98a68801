"""The fields a job writes, checked before any request: a field holding another type is refused."""

from __future__ import annotations

from typing import Optional

import fiftyone as fo

from .config import AnnotateConfig
from .tasks import get_task


def output_field_problem(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> Optional[str]:
    """Why a field a job of ``config`` writes already holds something else, or ``None``.

    Writing detections into a classification field (or the other way round)
    would fail sample after sample; every front door asks this first.
    """
    expected = {**get_task(config.task).output_fields(config), config.status_field: str, config.reason_field: str}
    for name, kind in expected.items():
        schema_field = samples._dataset.get_field(name)  # a view may hide the field, not its contents
        if schema_field is None:
            continue
        if kind is str:
            if isinstance(schema_field, fo.StringField):
                continue
            wanted = "text (StringField)"
        else:
            if getattr(schema_field, "document_type", None) is kind:
                continue
            wanted = kind.__name__
        found = getattr(schema_field, "document_type", None) or type(schema_field)
        return (f"{name!r} already holds {found.__name__}, not {wanted}, which a {config.task} run "
                f"writes there: choose another label field")
    return None


def check_output_fields(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> None:
    """Raises ``ValueError`` with :func:`output_field_problem`'s reason, if there is one."""
    problem = output_field_problem(samples, config)
    if problem:
        raise ValueError(problem)

