"""The round trip through an annotation tool: pre-annotations out, corrections back.

Built on FiftyOne's annotation API (``annotate`` / ``load_annotations``), so any
backend FiftyOne supports can be used. Label Studio, the one tested, goes
through gemini-annotate's own backend (:mod:`gemini_annotate.labelstudio_backend`),
which shows every label type a run writes: boxes, masks (brush), polygons,
points, classes, and captions and answers (text); see
:mod:`gemini_annotate.labelstudio_convert`. What this adds is the review
bookkeeping: before corrections are merged, Gemini's proposals are kept
(``<field>_proposed``), and afterwards every label of the samples a person
submitted gets its review status (see
:func:`gemini_annotate.review.apply_corrections`); text has no label to carry
one, so its status goes into ``<field>_review``.

Label Studio needs ``label-studio-sdk<2`` in this environment (FiftyOne's
integration uses the 1.x client; ``tests/labelstudio/install_sdk.sh`` installs
it without the second OpenCV it names); the server itself runs anywhere.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import fiftyone as fo
from fiftyone import ViewField as F

from . import labelstudio_convert, review
from .labels import labels_in
from .labelstudio_backend import GeminiLabelStudioBackendConfig, annotated_tasks
from .vocabulary import ACCEPTED, ADDED, EDITED, REJECTED, RUN_METHOD, proposed_field, reviewed_field

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

    In Label Studio each label type is shown with the control people correct
    it with (see :mod:`gemini_annotate.labelstudio_convert`): boxes as
    rectangles, instance masks as brush masks, ``segment`` outlines as
    polygons, points as key points, a class as radio buttons, multi-label
    classes as one drop-down per class, captions and answers as a text area.

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
    schema_field = samples.get_field(label_field)
    if isinstance(schema_field, fo.StringField) and backend == DEFAULT_BACKEND:
        return samples.annotate(anno_key, backend=GeminiLabelStudioBackendConfig, label_field=label_field,
                                label_type="scalar", kind="text", header=_run_question(samples, label_field),
                                **backend_options)
    review.label_path(samples, label_field)  # a label field, or a clear error
    label_type = schema_field.document_type
    names = set(classes or ())
    if not names:
        names.update(review.field_classes(samples, label_field))
        for config in _run_configs(samples, label_field):
            if config.classes:
                names.update(config.classes)
    if not names:
        raise review.ReviewError(f"{label_field!r} has no labels and its runs named no classes: pass classes=")
    options = dict(label_field=label_field, label_type=_ANNOTATION_TYPES.get(label_type.__name__, "detections"),
                   classes=sorted(names))
    if backend == DEFAULT_BACKEND:
        has_masks = issubclass(label_type, fo.Detections) and _all_or_none(
            samples, label_field, "detections", F("mask").exists(), "have an instance mask")
        kind = labelstudio_convert.label_kind(label_type, has_masks)
        if kind == "masks":
            options["label_type"] = "instances"
        elif kind == "polygons" and _all_or_none(samples, label_field, "polylines", F("filled") == True,  # noqa: E712
                                                 "are filled polygons"):
            options["label_type"] = "polygons"
        slots = labelstudio_convert.class_slots(samples.values(label_field)) if kind == "classes" else 0
        return samples.annotate(anno_key, backend=GeminiLabelStudioBackendConfig, kind=kind, slots=slots,
                                **options, **backend_options)
    return samples.annotate(anno_key, backend=backend, **options, **backend_options)


def _all_or_none(samples: fo.core.collections.SampleCollection, label_field: str, list_field: str,
                 condition: Any, what: str) -> bool:
    """Whether every label of the field meets ``condition`` (``False`` when none does).

    FiftyOne sends one label type per round (boxes or masks, polylines or
    polygons) and leaves the others out of the round's view; a field mixing
    them could not come back whole, so it is refused.
    """
    total = samples.count(f"{label_field}.{list_field}")
    meeting = samples.filter_labels(label_field, condition).count(f"{label_field}.{list_field}")
    if 0 < meeting < total:
        raise review.ReviewError(f"{meeting} of the {total} labels in {label_field!r} {what} and the others do "
                                 "not: a Label Studio round shows one kind; send them as separate views")
    return total > 0 and meeting == total


def _run_configs(samples: fo.core.collections.SampleCollection, label_field: str) -> list:
    configs = [samples.get_run_info(key).config for key in samples.list_runs(method=RUN_METHOD)]
    return [config for config in configs if config.label_field == label_field]


def _run_question(samples: fo.core.collections.SampleCollection, label_field: str) -> Optional[str]:
    """The question of the latest ``vqa`` run into the field, shown above its answers."""
    questions = [config.question or config.prompt for config in _run_configs(samples, label_field)
                 if config.task == "vqa"]
    return questions[-1] if questions else None


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
    config = dataset.get_annotation_info(anno_key).config
    schema = config.label_schema
    if len(schema) != 1:
        raise review.ReviewError(f"annotation run {anno_key!r} covers {len(schema)} fields; "
                                 "a review round covers exactly one pre-annotation field")
    (label_field,) = schema
    round_samples = dataset.load_annotation_view(anno_key)
    if isinstance(config, GeminiLabelStudioBackendConfig):
        results = dataset.load_annotation_results(anno_key, **backend_options)
        counts = _load_label_studio(round_samples, label_field, config, annotated_tasks(results), submitted)
        if cleanup:
            results.cleanup()
        return counts
    if submitted is None:
        submitted = submitted_samples(dataset.load_annotation_results(anno_key, **backend_options))
    submitted = list(submitted)
    review.keep_proposals(round_samples.select(submitted), label_field)
    before = {sid: review.labels_in(value) for sid, value in zip(*round_samples.values(["id", label_field]))}
    dataset.load_annotations(anno_key, unexpected="ignore", cleanup=cleanup, **backend_options)
    return review.apply_corrections(round_samples, label_field, before, submitted)


def _load_label_studio(
    round_samples: fo.core.collections.SampleCollection,
    label_field: str,
    config: GeminiLabelStudioBackendConfig,
    annotated: dict[str, list[dict]],
    submitted: Optional[Iterable[str]],
) -> review.CorrectionCounts:
    """Reads the submitted tasks of a round made by gemini-annotate's Label Studio backend."""
    reviewed = [sid for sid in (annotated if submitted is None else submitted) if sid in annotated]
    view = round_samples.select(reviewed)
    ids, widths, heights, values = view.values(["id", "metadata.width", "metadata.height", label_field])
    corrected = {
        sid: labelstudio_convert.from_results(annotated[sid], config.kind, label_field, (width, height),
                                              labels_in(value))
        for sid, width, height, value in zip(ids, widths, heights, values)
    }
    if config.kind == "text":
        return _apply_text_corrections(view, label_field, dict(zip(ids, values)), corrected)
    review.keep_proposals(view, label_field)
    before = {sid: labels_in(value) for sid, value in zip(*round_samples.values(["id", label_field]))}
    if corrected:
        round_samples._dataset.set_values(label_field, corrected, key_field="id")
    return review.apply_corrections(round_samples, label_field, before, reviewed)


def _apply_text_corrections(
    view: fo.core.collections.SampleCollection,
    label_field: str,
    before: dict[str, Optional[str]],
    after: dict[str, Optional[str]],
) -> review.CorrectionCounts:
    """Review statuses of captions and answers, in ``<field>_review``.

    Unchanged text is ``accepted``, changed text ``edited`` (Gemini's kept in
    ``<field>_proposed``), text a person cleared ``rejected`` (Gemini's stays,
    as rejected labels do), text written where there was none ``added``.
    """
    counts = review.CorrectionCounts(reviewed_samples=len(after))
    statuses, texts, proposals = {}, {}, {}
    for sample_id, new in after.items():
        old = (before.get(sample_id) or "").strip() or None
        if old is None and new is None:
            continue
        if old is None:
            statuses[sample_id], texts[sample_id] = ADDED, new
        elif new is None:
            statuses[sample_id] = REJECTED
        elif new == old:
            statuses[sample_id] = ACCEPTED
        else:
            statuses[sample_id], texts[sample_id], proposals[sample_id] = EDITED, new, old
        setattr(counts, statuses[sample_id], getattr(counts, statuses[sample_id]) + 1)
    dataset = view._dataset
    for field, values in ((label_field, texts), (proposed_field(label_field), proposals),
                          (text_review_field(label_field), statuses)):
        if values:
            dataset.set_values(field, values, key_field="id")
    if after:
        dataset.set_values(reviewed_field(label_field), dict.fromkeys(after, True), key_field="id")
    return counts


def text_review_field(label_field: str) -> str:
    """The sample field holding the review status of a caption or answer (text has no label to carry it)."""
    return f"{label_field}_review"


def submitted_samples(results: Any) -> list[str]:
    """The samples of a Label Studio round whose task a person submitted."""
    from label_studio_sdk import Client  # lazy: an optional dependency, installed apart (see above)

    client = Client(results.config.url, results.config.api_key)
    project = client.get_project(results.project_id)
    tasks = project.get_tasks(selected_ids=list(results.uploaded_tasks))
    return [results.uploaded_tasks[t["id"]] for t in tasks if t.get("is_labeled")]
