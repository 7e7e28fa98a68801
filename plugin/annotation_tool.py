"""The round trip through an annotation tool: pre-annotations out, corrections back.

Built on FiftyOne's annotation API (``annotate`` / ``load_annotations``), so any
backend FiftyOne supports can be used; Label Studio is the one tested. What this
adds is the review bookkeeping: before corrections are merged, Gemini's
proposals are kept (``<field>_proposed``), and afterwards every label of the
samples a person submitted gets its review status (see
:func:`gemini_annotate.review.apply_corrections`).

Label Studio needs ``label-studio-sdk<2`` in this environment (FiftyOne's
integration uses the 1.x client; ``tests/labelstudio/install_sdk.sh`` installs
it without the second OpenCV it names); the server itself runs anywhere.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import fiftyone as fo

from . import review
from .vocabulary import RUN_METHOD

DEFAULT_BACKEND = "labelstudio"


def send_for_review(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    anno_key: str,
    *,
    backend: str = DEFAULT_BACKEND,
    classes: Optional[Iterable[str]] = None,
    **backend_options: Any,
) -> Any:
    """Uploads samples and their pre-annotations to an annotation tool.

    Args:
        samples: the samples to review.
        label_field: the pre-annotation field; its labels are shown to the
            annotators as the starting point.
        anno_key: the FiftyOne annotation key of this review round.
        backend: a FiftyOne annotation backend (``labelstudio``, ``cvat``, ...).
        classes: the classes annotators may use; by default the field's labels
            plus the classes the field's runs asked for.
        **backend_options: the backend's options (``url``, ``api_key``,
            ``project_name``, ...).

    Returns:
        FiftyOne's annotation results.
    """
    review.label_path(samples, label_field)  # a label field, or a clear error
    label_type = samples.get_field(label_field).document_type
    names = set(classes or ())
    if not names:
        names.update(review.field_classes(samples, label_field))
        for key in samples.list_runs(method=RUN_METHOD):
            config = samples.get_run_info(key).config
            if config.label_field == label_field and config.classes:
                names.update(config.classes)
    if not names:
        raise review.ReviewError(f"{label_field!r} has no labels and its runs named no classes: pass classes=")
    return samples.annotate(
        anno_key,
        backend=backend,
        label_field=label_field,
        label_type=_ANNOTATION_TYPES.get(label_type.__name__, "detections"),
        classes=sorted(names),
        **backend_options,
    )


_ANNOTATION_TYPES = {
    "Detections": "detections",
    "Detection": "detection",
    "Polylines": "polylines",
    "Keypoints": "keypoints",
    "Classification": "classification",
    "Classifications": "classifications",
}


def load_corrections(
    samples: fo.core.collections.SampleCollection,
    anno_key: str,
    *,
    submitted: Optional[Iterable[str]] = None,
    cleanup: bool = False,
    **backend_options: Any,
) -> review.CorrectionCounts:
    """Loads a review round's corrections and records what people did.

    Args:
        samples: the collection the round was sent from.
        anno_key: the round's annotation key.
        submitted: ids of the samples a person submitted; by default asked of
            the tool (Label Studio: its tasks with an annotation). Only these
            samples get review statuses and count as reviewed.
        cleanup: delete the round's tasks from the tool afterwards.
        **backend_options: credentials (``url``, ``api_key``).

    Returns:
        a :class:`gemini_annotate.review.CorrectionCounts`.
    """
    dataset = samples._dataset
    schema = dataset.get_annotation_info(anno_key).config.label_schema
    if len(schema) != 1:
        raise review.ReviewError(f"annotation run {anno_key!r} covers {len(schema)} fields; "
                                 "a review round covers exactly one pre-annotation field")
    (label_field,) = schema
    round_samples = dataset.load_annotation_view(anno_key)
    if submitted is None:
        submitted = submitted_samples(dataset.load_annotation_results(anno_key, **backend_options))
    submitted = list(submitted)
    review.keep_proposals(round_samples.select(submitted), label_field)
    before = {sid: review.labels_in(value) for sid, value in zip(*round_samples.values(["id", label_field]))}
    dataset.load_annotations(anno_key, unexpected="ignore", cleanup=cleanup, **backend_options)
    return review.apply_corrections(round_samples, label_field, before, submitted)


def submitted_samples(results: Any) -> list[str]:
    """The samples of a Label Studio round whose task a person submitted."""
    from label_studio_sdk import Client  # lazy: an optional dependency, installed apart (see above)

    client = Client(results.config.url, results.config.api_key)
    project = client.get_project(results.project_id)
    tasks = project.get_tasks(selected_ids=list(results.uploaded_tasks))
    return [results.uploaded_tasks[t["id"]] for t in tasks if t.get("is_labeled")]
