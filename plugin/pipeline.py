"""The one entry of every front door: configure a job, run it online or through the Batch API.

The App operator, the Python API, the CLI and the demo all call
:func:`run_annotation` (or :func:`annotate`, its keyword form); the job it
runs is :class:`~gemini_annotate.online.OnlineAnnotationJob` or, with
``config.batch``, :class:`~gemini_annotate.batch.BatchAnnotationJob`.
"""

from __future__ import annotations

from typing import Any, Optional

import fiftyone as fo

from .batch import BatchAnnotationJob
from .cascade import run_cascade
from .config import AnnotateConfig
from .job import AnnotationStopped, ProgressCallback, RunProgress
from .online import OnlineAnnotationJob
from .progress_bar import ProgressOption, progress_reporter
from .run_records import RunSummary
from .sync import run_sync
from .workers import run_in_workers

__all__ = ["AnnotationStopped", "RunProgress", "annotate", "run_annotation"]


def annotate(
    samples: fo.core.collections.SampleCollection,
    task: str = "detect",
    *,
    classes: Optional[list[str]] = None,
    prompt: Optional[str] = None,
    label_field: str = "gemini",
    model: Optional[str] = None,
    api_key: Optional[str] = None,
    progress: ProgressOption = None,
    **options: Any,
) -> RunSummary:
    """Pre-annotates samples with Gemini and stores the labels for review.

    Args:
        samples: a FiftyOne dataset or view of images.
        task: ``"detect"`` (see :data:`gemini_annotate.tasks.TASKS` for all).
        classes: class names to look for; labels are normalised to them.
        prompt: a prompt replacing the task's default.
        label_field: the field receiving the labels.
        model: the Gemini model (default ``gemini-3-flash-preview``).
        api_key: the API key; by default ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``.
            It is used for the requests only and never stored.
        progress: whether to show a progress bar on stderr (samples/s,
            failures, ETA): ``None`` follows ``fo.config.show_progress_bars``,
            ``True``/``False`` shows or hides it; or a callable, called with a
            :class:`RunProgress` as the run advances (and no bar).
        **options: any other :class:`gemini_annotate.config.AnnotateConfig`
            field (``concurrency``, ``base_url``, ``api``, ``if_labeled``,
            ``workers``, ...).

    Returns:
        a :class:`gemini_annotate.run_records.RunSummary`

    Raises:
        AnnotationStopped: the run could not go on (bad key, unknown model, ...).

    Example::

        import fiftyone.zoo as foz
        import gemini_annotate

        dataset = foz.load_zoo_dataset("quickstart")
        gemini_annotate.annotate(dataset.take(10), task="detect", classes=["person", "dog"])
    """
    fields: dict[str, Any] = dict(task=task, classes=classes, prompt=prompt, label_field=label_field)
    if model:
        fields["model"] = model
    config = AnnotateConfig(**fields, **options)
    with progress_reporter(progress) as report:
        return run_annotation(samples, config, api_key=api_key, progress=report)


def run_annotation(
    samples: fo.core.collections.SampleCollection,
    config: AnnotateConfig,
    *,
    api_key: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> RunSummary:
    """Runs a configured job to the end; the synchronous entry of every front door.

    When the calling thread already runs an event loop (the App server, a
    notebook), the job runs on its own loop in a worker thread
    (:func:`gemini_annotate.sync.run_sync`), so the two never interfere.
    With ``config.batch`` the job goes through the Batch API
    (:mod:`gemini_annotate.batch`); with ``config.escalate_to`` it is a
    cascade of two passes (:mod:`gemini_annotate.cascade`). With ``config.workers`` above 1 the job
    runs in that many processes, a shard each (:mod:`gemini_annotate.workers`); a cascade is run
    from here, and each of its passes in the workers.
    """
    if config.escalate_to:  # two passes, each a run of its own (gemini_annotate.cascade)
        return run_cascade(samples, config, run_pass=run_annotation, api_key=api_key, progress=progress)
    if config.workers > 1:
        return run_in_workers(samples, config, api_key=api_key, progress=progress)
    job_type = BatchAnnotationJob if config.batch else OnlineAnnotationJob

    def job():
        return job_type(samples, config, api_key=api_key, progress=progress).run()

    return run_sync(job)

