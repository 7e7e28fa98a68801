"""Scale-out on FiftyOne's own engine: one job, split into shards, run as delegated operations.

Each shard is an ``annotate_with_gemini`` operation queued for FiftyOne's
delegated executor; any number of ``fiftyone delegated launch`` workers, on
one machine or several sharing the database, pick them up. Samples are split
by id (:func:`gemini_annotate.selection.shard_of`), so shards never overlap; each
shard resumes like any run; the run record adds their summaries up
(:func:`gemini_annotate.run_records.load_run_summary`).

Example::

    import gemini_annotate
    from gemini_annotate.shards import queue_annotation_shards

    config = gemini_annotate.AnnotateConfig(task="detect", classes=("person",), concurrency=32)
    queue_annotation_shards(dataset, config, num_shards=4)
    # then, on each worker machine:  fiftyone delegated launch
"""

from __future__ import annotations

from typing import Any, Optional

import fiftyone as fo
import fiftyone.operators as foo

from .config import AnnotateConfig
from .output_fields import check_output_fields
from .run_records import clear_shard_summaries, record_run

ANNOTATE_OPERATOR_URI = "@gemini-annotate/gemini-annotate/annotate_with_gemini"


def shard_params(config: AnnotateConfig, shard: int, num_shards: int) -> dict[str, Any]:
    """The operator parameters that run one shard of a configured job."""
    params = {k: v for k, v in config.model_dump().items() if v is not None}
    if config.classes:
        params["classes"] = list(config.classes)
    params.update(shard=shard, num_shards=num_shards, delegate=True)
    return params


def queue_annotation_shards(
    samples: fo.core.collections.SampleCollection,
    config: AnnotateConfig,
    num_shards: int,
    *,
    delegation_target: Optional[str] = None,
) -> list[str]:
    """Queues a job as ``num_shards`` delegated operations, one per shard.

    The run is recorded first, so the shards only update it. The plugin must be
    installed where this is called and on every worker (``gemini-annotate
    plugin-install``), and the workers need the API key in their environment
    (``GEMINI_API_KEY``) or as the plugin secret.

    Args:
        samples: the dataset or view to annotate.
        config: the job; its ``shard``/``num_shards`` are replaced.
        num_shards: how many operations to queue.
        delegation_target: an optional orchestrator to queue them on.

    Returns:
        the ids of the queued delegated operations, shard 0 first
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    config = config.model_copy(update={"shard": 0, "num_shards": num_shards})
    AnnotateConfig.model_validate(config.model_dump())
    check_output_fields(samples, config)  # refused here, not by every shard on its worker
    record_run(samples, config)
    clear_shard_summaries(samples._dataset, config.resolved_run_key)
    view = samples if isinstance(samples, fo.DatasetView) else samples.view()
    ids = []
    for shard in range(num_shards):
        result = foo.execute_operator(
            ANNOTATE_OPERATOR_URI,
            ctx={"view": view, "params": shard_params(config, shard, num_shards)},
            request_delegation=True,
            delegation_target=delegation_target,
        )
        ids.append(str(result.result["id"]))
    return ids
