"""A FiftyOne annotation backend for Label Studio that carries every label type a run writes.

FiftyOne's own Label Studio backend makes the project, uploads the images and
records the round (``anno_key``) well, and this backend keeps all of that. It
replaces the two ends that lose what review needs: what the tasks show, and
how a person's results are read back (:mod:`gemini_annotate.labelstudio_convert`).
FiftyOne's exporter gives multi-label classes one region with a list of ids
and its importer gives keypoints new ids, so kept labels would count as
rejected and added; it has no control for text at all.

The round's kind (``boxes``, ``masks``, ...) and its number of class slots are
part of the backend's config, so they are stored with the annotation run.
"""

from __future__ import annotations

from typing import Any, Optional

import fiftyone as fo
import fiftyone.utils.labelstudio as fouls

from . import labelstudio_convert as convert


class GeminiLabelStudioBackendConfig(fouls.LabelStudioBackendConfig):
    """FiftyOne's Label Studio config plus what a round of gemini-annotate shows.

    Args:
        kind: one of :data:`gemini_annotate.labelstudio_convert.KINDS`.
        slots: the class drop-downs of a ``classes`` round.
        header: a line shown above the controls (a ``vqa`` run's question).
    """

    def __init__(self, name: Optional[str], label_schema: dict, *, kind: str = "boxes", slots: int = 0,
                 header: Optional[str] = None, **kwargs: Any):
        # named as FiftyOne's own backend so its credentials (FIFTYONE_LABELSTUDIO_*) apply
        super().__init__(name or "labelstudio", label_schema, **kwargs)
        self.kind = kind
        self.slots = slots
        self.header = header


class GeminiLabelStudioBackend(fouls.LabelStudioBackend):
    """FiftyOne's Label Studio backend with gemini-annotate's labeling config and predictions."""

    @property
    def supported_scalar_types(self) -> list:
        return [fo.StringField]  # captions and answers, shown in a TextArea

    def upload_annotations(self, samples: fo.core.collections.SampleCollection, anno_key: str,
                           launch_editor: bool = False) -> fouls.LabelStudioAnnotationResults:
        config = self.config
        (label_field, label_info), = config.label_schema.items()
        api = self.connect_to_api()
        samples.compute_metadata()
        # FiftyOne has no public way to upload tasks with predictions of our own:
        # its API object's project client, task preparation and upload are reused
        project = api._client.start_project(
            title=config.project_name or f"FiftyOne_{samples._root_dataset.name}",
            label_config=convert.labeling_config(config.kind, label_field, label_info.get("classes") or (),
                                                 slots=config.slots, header=config.header),
        )
        tasks, _, _ = api._prepare_tasks(samples, {}, config.media_field)
        ids, widths, heights, values = samples.values(["id", "metadata.width", "metadata.height", label_field])
        predictions = {sample_id: convert.to_results(value, config.kind, label_field, (width, height))
                       for sample_id, width, height, value in zip(ids, widths, heights, values)}
        uploaded_tasks = api._upload_tasks(project, tasks, {label_field: predictions})
        id_map = {label_field: {sample_id: [r["id"] for r in results] for sample_id, results in predictions.items()}}
        results = fouls.LabelStudioAnnotationResults(samples, config, anno_key, id_map, project.id, uploaded_tasks,
                                                     backend=self)
        if launch_editor:
            results.launch_editor()
        return results

    def download_annotations(self, results: Any) -> dict:
        raise NotImplementedError("load the round with gemini_annotate.annotation_tool.load_corrections")


def annotated_tasks(results: fouls.LabelStudioAnnotationResults) -> dict[str, list[dict]]:
    """Sample id → the results of the latest annotation a person submitted on its task.

    Tasks nobody submitted are left out.
    """
    from label_studio_sdk import Client  # lazy: an optional dependency, installed apart

    client = Client(results.config.url, results.config.api_key)
    project = client.get_project(results.project_id)
    submitted = {}
    for task in project.get_tasks(selected_ids=list(results.uploaded_tasks)):
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not task.get("is_labeled") or not annotations:
            continue
        latest = max(annotations, key=lambda a: a.get("updated_at") or a.get("created_at") or "")
        submitted[results.uploaded_tasks[task["id"]]] = latest.get("result") or []
    return submitted
