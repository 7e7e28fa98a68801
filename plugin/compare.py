"""Which setup labels this dataset best for the money: candidates run and scored on reviewed samples.

:func:`compare` takes candidate setups (models, prompts, thinking levels, image
sizes, mask forms, consensus, hints, ...), runs each on the samples whose truth
is known: the labels people kept on reviewed samples of a run's field, or a
ground-truth field. Each candidate is a normal recorded run into its own field
(``compare_<name>``: re-running a comparison resumes each candidate where it
stopped, and a candidate whose options changed starts over). Each is scored
against that reference with FiftyOne's evaluation (mAP when every candidate's
labels are ranked, else F1) and priced from the tokens its replies reported.
The report gives the Pareto front of quality against cost and recommends the
cheapest candidate within a tolerance of the best quality, with what labeling
the rest of the collection with it would cost, online and through the Batch API.

    import gemini_annotate

    report = gemini_annotate.compare(dataset, [
        {"name": "lite", "model": "gemini-2.5-flash-lite"},
        {"name": "flash"},
        {"name": "flash_low", "media_resolution": "low"},
        {"name": "pro", "model": "gemini-3-pro-preview"},
    ], reference_field="gemini", classes=["car", "person"])
    print(report.describe())
    report.figure().show()
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import fiftyone as fo
import fiftyone.core.labels as fol
from fiftyone import ViewField as F
from fiftyone.operators.store import ExecutionStore

from .compare_figure import PlotPoint, pareto_figure, save_pareto_png
from .config import DEFAULT_LABEL_FIELD, AnnotateConfig
from .costs import PRICES_AS_OF, cost, load_prices, price_for
from .job import AnnotationStopped, ProgressCallback
from .labels import field_value, labels_in
from .pareto import (
    Projection,
    Recommendation,
    SetupPoint,
    pareto_front,
    project_cost,
    quality_metric,
    recommend,
)
from .pipeline import run_annotation
from .review.evaluation import all_ranked
from .review.status import ReviewError, label_path
from .vocabulary import (
    KEPT_STATUSES,
    REVIEW_ATTRIBUTE,
    RUN_ATTRIBUTE,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PARTIAL,
    reviewed_field,
)

DEFAULT_TOLERANCE = 0.02
"""How much quality below the best the recommendation accepts for a lower cost (absolute: 0.02 F1 or mAP)."""
DEFAULT_PREFIX = "compare_"
"""The candidates' fields are ``<prefix><name>``; the reviewed reference is copied to ``<prefix>reference``."""
COMPARE_STORE = "gemini_annotate_compare"
"""The execution store (one per dataset) holding each candidate's configuration and usage so far."""
RESUMABLE_OPTIONS = ("max_requests", "max_tokens", "concurrency", "timeout", "max_attempts", "base_url",
                     "retry_failed", "if_labeled", "run_key", "label_field", "shard", "num_shards")
"""Options that change how a candidate runs, not what it asks: changing them resumes the candidate."""

CandidateSpec = Union[AnnotateConfig, Mapping[str, Any]]


class CompareError(ReviewError):
    """A comparison that cannot be made as asked (no reference, no candidates); the message says why."""


@dataclass
class CandidateResult:
    """One candidate's run and scores.

    Attributes:
        name: the candidate's name; its labels are in ``label_field``.
        options: the options it sets beside the shared ones.
        status: ``done``; ``stopped`` part way (a budget, refusals: ``reason``
            says which; running the comparison again resumes it); or ``failed``
            (invalid options, an unknown model, a bad key: nothing answered).
        samples: reference samples; ``labeled`` of them got an answer,
            ``failed_samples`` failed (``failure_reasons``: reason → count).
        requests, input_tokens, output_tokens, thought_tokens, wall_seconds:
            as its replies reported, over all its runs (resumed ones added).
        cost: US dollars for those tokens (thinking billed as output), or
            ``None`` when its model has no price.
        precision, recall, f1, mAP, per_class: against the reference (``None``
            unless it is done); ``quality`` is the compared metric.
        on_front: on the Pareto front of quality and cost.
        projection: what labeling the rest of the collection with it would
            cost (online and Batch), at its measured cost per sample.
    """

    name: str
    label_field: str
    options: dict[str, Any]
    status: str = "done"
    reason: Optional[str] = None
    model: Optional[str] = None
    batch: bool = False
    samples: int = 0
    labeled: int = 0
    failed_samples: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    thought_tokens: int = 0
    wall_seconds: float = 0.0
    cost: Optional[float] = None
    precision: Optional[float] = None
    recall: Optional[float] = None
    f1: Optional[float] = None
    mAP: Optional[float] = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    quality: Optional[float] = None
    on_front: bool = False
    projection: Optional[Projection] = None

    @property
    def point(self) -> SetupPoint:
        return SetupPoint(self.name, self.quality if self.status == "done" else None, self.cost)


@dataclass
class CompareReport:
    """What each candidate achieved and cost, the Pareto front, and the recommendation.

    Attributes:
        reference: where the truth came from.
        samples: reference samples every candidate ran on.
        rest: samples of the collection outside the reference (the projection's).
        metric: ``mAP`` or ``F1``: the quality compared.
        tolerance: the quality below the best the recommendation accepts.
        iou: the IoU an object match needs.
        candidates: one :class:`CandidateResult` each, in the order given.
        front: the names on the Pareto front, cheapest first.
        recommendation: the cheapest candidate within ``tolerance`` of the
            best, or ``None`` when no candidate was measured.
    """

    reference: str
    samples: int
    rest: int
    metric: str
    tolerance: float
    iou: float
    candidates: list[CandidateResult]
    front: list[str]
    recommendation: Optional[Recommendation]

    def candidate(self, name: str) -> CandidateResult:
        return next(c for c in self.candidates if c.name == name)

    @property
    def recommended(self) -> Optional[CandidateResult]:
        return self.candidate(self.recommendation.name) if self.recommendation else None

    def describe(self) -> str:
        """The table, the front and the recommendation, as text for a terminal or the App."""
        def num(value: Optional[float], digits: int = 3) -> str:
            return "–" if value is None else f"{value:.{digits}f}"

        header = (f"{'candidate':<22}{'status':<9}{self.metric:>7}{'prec':>7}{'recall':>7}{'F1':>7}"
                  f"{'requests':>9}{'in tok':>10}{'out tok':>9}{'cost $':>10}{'wall s':>8}{'failed':>7}  front")
        lines = [f"compare on {self.samples} reference sample(s) ({self.reference}); quality: {self.metric}"
                 f" (objects matched at IoU {self.iou}); prices as of {PRICES_AS_OF}, indicative", header]
        for c in self.candidates:
            lines.append(
                f"{c.name[:21]:<22}{c.status:<9}{num(c.quality):>7}{num(c.precision):>7}{num(c.recall):>7}"
                f"{num(c.f1):>7}{c.requests:>9}{c.input_tokens:>10,}{c.output_tokens + c.thought_tokens:>9,}"
                f"{num(c.cost, 4):>10}{c.wall_seconds:>8.1f}{c.failed_samples:>7}  {'*' if c.on_front else ''}")
        for c in self.candidates:
            if c.reason:
                lines.append(f"  {c.name}: {c.status}: {c.reason}")
            for reason, count in sorted(c.failure_reasons.items(), key=lambda kv: -kv[1])[:3]:
                lines.append(f"  {c.name}: {count} sample(s) failed: {reason}")
            if c.cost is None and c.status == "done":
                lines.append(f"  {c.name}: no price known for {c.model}; pass prices= to compare its cost")
        lines.append(f"Pareto front (cheapest first): {', '.join(self.front) or 'none'}")
        lines.extend(self._describe_recommendation())
        return "\n".join(lines)

    def _describe_recommendation(self) -> list[str]:
        if self.recommendation is None:
            return ["no recommendation: no candidate finished with a price"]
        r, chosen = self.recommendation, self.recommended
        lines = [f"recommended: {r.name} ({self.metric} {chosen.quality:.3f}, ${chosen.cost:.4f}): the cheapest "
                 f"within {r.tolerance} of the best, {r.best} ({r.best_quality:.3f})"]
        if chosen.projection is not None and self.rest:
            p = chosen.projection
            lines.append(f"the other {p.samples:,} sample(s) with it: about ${p.online:,.2f} online, "
                         f"${p.batch:,.2f} through the Batch API (${p.cost_per_sample:.6f} per sample measured)")
        return lines

    def to_dict(self) -> dict:
        """Plain values (JSON-ready)."""
        return asdict(self)

    def plot_points(self) -> list[PlotPoint]:
        chosen = self.recommendation.name if self.recommendation else None
        return [PlotPoint(c.name, c.cost, c.quality, c.on_front, c.name == chosen)
                for c in self.candidates if c.point.measured]

    def figure(self):
        """The Pareto plot as a plotly figure (the App, notebooks)."""
        floor = self.recommendation.floor if self.recommendation else None
        return pareto_figure(self.plot_points(), metric=self.metric, samples=self.samples, floor=floor)

    def save_png(self, path: str) -> str:
        """The Pareto plot as a PNG file (matplotlib); returns ``path``."""
        floor = self.recommendation.floor if self.recommendation else None
        return save_pareto_png(self.plot_points(), path, metric=self.metric, samples=self.samples, floor=floor)


@dataclass(frozen=True)
class _Reference:
    field: str
    description: str
    sample_ids: list[str]
    classes: tuple[str, ...]


def compare(
    samples: fo.core.collections.SampleCollection,
    candidates: Sequence[CandidateSpec],
    gt_field: Optional[str] = None,
    *,
    reference_field: Optional[str] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    prices: Union[str, Mapping, None] = None,
    label_field_prefix: str = DEFAULT_PREFIX,
    iou: float = 0.5,
    api_key: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    **options: Any,
) -> CompareReport:
    """Runs each candidate setup on the reference samples and compares quality per cost.

    Args:
        samples: the collection: its reference samples are run and scored; the
            others are what the projection prices.
        candidates: :class:`AnnotateConfig` objects (taken as they are, but for
            their field; without classes they get the reference's), or
            mappings of options laid over ``options`` (``model``, ``prompt``, ``thinking_level``,
            ``media_resolution``, ``max_image_side``, ``mask_form``,
            ``consensus``, ``hints``, ``classes`` with descriptions, ...), each
            with an optional ``name`` (else one is made from its options).
        gt_field: a ground-truth field: samples where it is set are the reference.
        reference_field: else, a pre-annotation field people reviewed (default
            ``"gemini"``): its reviewed samples are the reference, and the labels
            people kept there (accepted, edited, added) the truth; rejected ones
            are not.
        tolerance: the quality (absolute) the recommendation may give up for a lower cost.
        prices: prices overriding the built-in table (see :func:`gemini_annotate.costs.load_prices`).
        label_field_prefix: each candidate writes into ``<prefix><name>``.
        iou: the IoU an object match needs.
        api_key: the key for every candidate's requests (never stored).
        progress: called as each candidate's run advances.
        **options: options shared by every candidate given as a mapping (``task``,
            ``classes``, ``base_url``, budgets, ...). Without ``classes``, the
            reference's classes are asked for.

    Returns:
        a :class:`CompareReport`

    Raises:
        CompareError: no reference sample (nothing reviewed), or no candidate.
    """
    if not candidates:
        raise CompareError("compare needs at least one candidate")
    if tolerance < 0:
        raise CompareError(f"tolerance is the quality given up for a lower cost: at least 0, got {tolerance}")
    reference = _resolve_reference(samples, gt_field, reference_field, label_field_prefix)
    view = samples.select(reference.sample_ids)
    shared = {"classes": reference.classes or None, **options}
    table = load_prices(prices)
    results = [_run_candidate(view, name, spec, shared, label_field_prefix, api_key, progress)
               for name, spec in _named(candidates)]
    for result in results:
        _score(view, result, reference.field, iou)
        _price(result, table)
    metric = quality_metric([c.mAP for c in results if c.status == "done"])
    for c in results:
        c.quality = (c.mAP if metric == "mAP" else c.f1) if c.status == "done" else None
    points = [c.point for c in results]
    front = pareto_front(points)
    rest = len(samples) - len(reference.sample_ids)
    for c in results:
        c.on_front = c.name in front
        if c.cost is not None and c.labeled:  # projected from the online price, whatever the candidate used
            price = price_for(c.model, table)
            online = cost(c.input_tokens, c.output_tokens + c.thought_tokens, price)
            c.projection = project_cost(online, c.labeled, rest, batch_discount=price.batch_discount)
    return CompareReport(reference=reference.description, samples=len(reference.sample_ids), rest=rest,
                         metric=metric, tolerance=tolerance, iou=iou, candidates=results, front=front,
                         recommendation=recommend(points, tolerance))


# the reference


def _resolve_reference(samples, gt_field: Optional[str], reference_field: Optional[str], prefix: str) -> _Reference:
    if gt_field and reference_field:
        raise CompareError("give the reference as gt_field (a ground-truth field) or as reference_field "
                           "(a reviewed pre-annotation field), not both")
    if gt_field:
        path = label_path(samples, gt_field)
        having = samples.exists(gt_field)
        if len(having) == 0:
            raise CompareError(f"no sample has labels in {gt_field!r}: compare needs samples whose truth is known")
        return _Reference(gt_field, f"ground truth {gt_field!r}", having.values("id"),
                          tuple(sorted(having.distinct(f"{path}.label"))))
    field_name = reference_field or DEFAULT_LABEL_FIELD
    flag = reviewed_field(field_name)
    if not samples._dataset.has_field(field_name):
        raise CompareError(f"no field {field_name!r}: name the reviewed field (reference_field) or a "
                           "ground-truth field (gt_field)")
    path = label_path(samples, field_name)
    reviewed = samples.match(F(flag) == True) if samples._dataset.has_field(flag) else samples.limit(0)  # noqa: E712
    if len(reviewed) == 0:
        raise CompareError(
            f"no sample is marked reviewed for {field_name!r}: compare scores each candidate against labels "
            "people reviewed. Review some samples of that run first (accept, reject, edit, then mark them "
            "reviewed), or give a ground-truth field (gt_field)")
    target = f"{prefix}reference"
    kept = F(REVIEW_ATTRIBUTE).is_in(KEPT_STATUSES) | ~F(RUN_ATTRIBUTE).exists()
    truth = reviewed.filter_labels(field_name, kept, only_matches=False)
    label_type = samples._dataset.get_field(field_name).document_type
    ids, values = truth.values(["id", field_name])
    copies = {i: _copy_value(label_type, v) for i, v in zip(ids, values)}
    dataset = samples._dataset
    if dataset.has_field(target):
        dataset.clear_sample_field(target)
    else:
        dataset.add_sample_field(target, fo.EmbeddedDocumentField, embedded_doc_type=label_type)
    dataset.set_values(target, copies, key_field="id")
    return _Reference(target, f"labels people kept in {field_name!r}, copied to {target!r}", list(ids),
                      tuple(sorted(truth.distinct(f"{path}.label"))))


def _copy_value(label_type: type, value: Optional[fol.Label]) -> Optional[fol.Label]:
    return None if value is None else field_value(label_type, [label.copy() for label in labels_in(value)])


# the candidates


def candidate_from_text(text: str) -> dict[str, Any]:
    """A candidate from ``key=value,key=value`` (the CLI's ``--candidate``), or from a JSON object.

    Values are text; the configuration converts them (``consensus=3``). A value
    holding commas (a prompt, hints) needs the JSON form.

    >>> candidate_from_text("name=lite,model=gemini-2.5-flash-lite,media_resolution=low")
    {'name': 'lite', 'model': 'gemini-2.5-flash-lite', 'media_resolution': 'low'}
    """
    text = text.strip()
    if text.startswith("{"):
        return dict(json.loads(text))
    candidate = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"a candidate is key=value pairs separated by commas; {part!r} is not one")
        candidate[key.strip()] = value.strip()
    return candidate


def load_candidates(path: str) -> list[dict[str, Any]]:
    """The candidates of a JSON file: a list of objects of options (each with an optional ``name``)."""
    with open(path) as f:
        candidates = json.load(f)
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise ValueError(f"{path}: a candidates file holds a JSON list of objects of options")
    return candidates


def _named(candidates: Sequence[CandidateSpec]) -> list[tuple[str, CandidateSpec]]:
    """Each candidate with a unique name: its own ``name``, else one made from its options."""
    named, seen = [], {}
    for spec in candidates:
        if isinstance(spec, AnnotateConfig):
            base = _name_from(_overrides_of(spec))
        else:
            base = str(spec.get("name") or _name_from({k: v for k, v in spec.items() if k != "name"}))
        name = slug(base) or "default"
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name}_{seen[name]}", spec))
    return named


def slug(text: str) -> str:
    """A name fit for a field: letters, digits and underscores.

    >>> slug("gemini-2.5-flash-lite low")
    'gemini_2_5_flash_lite_low'
    """
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def _name_from(overrides: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in overrides.items() if k not in RESUMABLE_OPTIONS and k != "classes"}
    parts = [str(shown.pop("model"))] if "model" in shown else []
    parts += [f"{k}_{v}" if not isinstance(v, (list, tuple, dict)) else k for k, v in shown.items()]
    return " ".join(parts) or "default"


def _overrides_of(config: AnnotateConfig) -> dict[str, Any]:
    defaults = AnnotateConfig(task=config.task, classes=config.classes, question=config.question)
    return {k: v for k, v in config.model_dump().items() if v != getattr(defaults, k)}


def _candidate_config(name: str, spec: CandidateSpec, shared: Mapping[str, Any], prefix: str) -> AnnotateConfig:
    if isinstance(spec, AnnotateConfig):
        fields = spec.model_dump()
        if not spec.classes and shared.get("classes"):
            fields["classes"] = shared["classes"]
    else:
        fields = {**shared, **{k: v for k, v in spec.items() if k != "name"}}
    fields.update(label_field=f"{prefix}{name}", run_key=None)
    return AnnotateConfig(**fields)


def _what_it_asks(config: AnnotateConfig) -> dict:
    record = config.to_record()
    # as the store gives it back (tuples become lists), so an unchanged candidate compares equal
    return json.loads(json.dumps({k: v for k, v in record.items() if k not in RESUMABLE_OPTIONS}))


def _store(dataset: fo.Dataset) -> ExecutionStore:
    return ExecutionStore.create(COMPARE_STORE, dataset_id=dataset._doc.id)


USAGE = ("requests", "input_tokens", "output_tokens", "thought_tokens")


def _run_candidate(view, name: str, spec: CandidateSpec, shared: Mapping[str, Any], prefix: str,
                   api_key: Optional[str], progress: Optional[ProgressCallback]) -> CandidateResult:
    overrides = _overrides_of(spec) if isinstance(spec, AnnotateConfig) else {
        k: v for k, v in spec.items() if k != "name"}
    result = CandidateResult(name=name, label_field=f"{prefix}{name}", options=_plain(overrides),
                             samples=len(view))
    try:
        config = _candidate_config(name, spec, shared, prefix)
    except ValueError as e:
        result.status, result.reason = "failed", f"invalid options: {e}"
        return result
    result.model, result.batch = config.model, config.batch
    store = _store(view._dataset)
    stored = store.get(result.label_field) or {}
    asks = _what_it_asks(config)
    if stored.get("asks") != asks:  # a new candidate, or one whose options changed: it starts over
        stored = {"asks": asks, "usage": dict.fromkeys(USAGE, 0), "wall_seconds": 0.0}
        config = config.model_copy(update={"if_labeled": "overwrite"})
    started = time.monotonic()
    summary = None
    try:
        summary = run_annotation(view, config, api_key=api_key, progress=progress)
    except AnnotationStopped as e:  # a budget, refusals, an unknown model: what was done is kept
        summary = e.summary
        result.status, result.reason = "stopped", str(e)
    except Exception as e:  # noqa: BLE001 (one candidate's failure is its row, the others still run)
        result.status, result.reason = "failed", f"{type(e).__name__}: {e}"
    if summary is not None:
        for name_ in USAGE:
            stored["usage"][name_] += getattr(summary, name_)
    stored["wall_seconds"] += time.monotonic() - started
    store.set(result.label_field, stored)
    for name_ in USAGE:
        setattr(result, name_, stored["usage"][name_])
    result.wall_seconds = stored["wall_seconds"]
    _count_samples(view, config, result)
    return result


def _count_samples(view, config: AnnotateConfig, result: CandidateResult) -> None:
    has_statuses = view._dataset.has_field(config.status_field)
    statuses = view.count_values(config.status_field) if has_statuses else {}
    result.labeled = statuses.get(STATUS_OK, 0) + statuses.get(STATUS_PARTIAL, 0)
    result.failed_samples = statuses.get(STATUS_FAILED, 0)
    if result.failed_samples:
        failed = view.match(F(config.status_field) == STATUS_FAILED)
        result.failure_reasons = {str(k): v for k, v in failed.count_values(config.reason_field).items()}
    if result.status == "stopped":  # a stop before any answer (unknown model, bad key) is a failure
        if result.labeled:
            result.reason += " (run the comparison again to resume)"
        else:
            result.status = "failed"
    if result.status == "done" and result.labeled + result.failed_samples < result.samples:
        result.status = "stopped"
        result.reason = (f"{result.samples - result.labeled - result.failed_samples} sample(s) not answered "
                         "(run the comparison again to resume)")


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


# scores and prices


def _score(view, result: CandidateResult, truth_field: str, iou: float) -> None:
    """Scores a finished candidate against the reference with FiftyOne's evaluation."""
    if result.status != "done" or not view._dataset.has_field(result.label_field):
        return
    label_type = view._dataset.get_field(result.label_field).document_type
    eval_key = f"{result.label_field}_eval"
    if view._dataset.has_evaluation(eval_key):
        view._dataset.delete_evaluation(eval_key)
    if issubclass(label_type, fol.Classification):
        evaluation = view.evaluate_classifications(result.label_field, gt_field=truth_field, eval_key=eval_key,
                                                   progress=False)
        ranked = False
    else:
        ranked = all_ranked(view, result.label_field)
        evaluation = view.evaluate_detections(result.label_field, gt_field=truth_field, eval_key=eval_key, iou=iou,
                                              compute_mAP=ranked, iou_threshs=[iou] if ranked else None,
                                              progress=False)
    metrics = evaluation.metrics()
    result.precision, result.recall = float(metrics["precision"]), float(metrics["recall"])
    result.f1 = float(metrics["fscore"])
    result.per_class = {name: {k: float(v) for k, v in row.items()} for name, row in evaluation.report().items()
                        if name not in ("micro avg", "macro avg", "weighted avg", "accuracy")}
    if ranked:
        mean_ap = float(evaluation.mAP())
        result.mAP = mean_ap if mean_ap >= 0 else None


def _price(result: CandidateResult, table) -> None:
    if result.model is None:
        return
    result.cost = cost(result.input_tokens, result.output_tokens + result.thought_tokens,
                       price_for(result.model, table), batch=result.batch)
