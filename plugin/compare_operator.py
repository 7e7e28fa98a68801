"""The App operator comparing setups: candidates in a form, the report and its Pareto plot out.

A thin layer over :func:`gemini_annotate.compare.compare`: the form gathers the
reference (a reviewed pre-annotation field, or a ground-truth field), the
candidates (model, thinking level, media resolution, image size, consensus,
mask form, hints) and the tolerance; the output is the report as a table and
the plotly Pareto plot of quality against cost.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence, get_args

import fiftyone.core.labels as fol
import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import review
from .compare import DEFAULT_TOLERANCE, CompareReport, compare
from .config import DEFAULT_MODEL, MaskFormChoice, MediaResolution, ThinkingLevel
from .costs import PRICES
from .operators import GeminiOperator, _api_key, _label_fields, _reviewable_fields

CANDIDATE_OPTIONS = ("name", "model", "thinking_level", "media_resolution", "max_image_side", "consensus",
                     "mask_form", "confidence", "hints")
"""The options a candidate of the form may set (others are shared: task, classes)."""
_COMPARABLE = (fol.Detections, fol.Polylines, fol.Keypoints, fol.Classification)


def _candidate_form() -> types.Object:
    candidate = types.Object()
    candidate.str("name", label="Name", description="its field is compare_<name>")
    models = types.Dropdown()
    for model in PRICES:
        models.add_choice(model, label=model)
    candidate.enum("model", models.values(), default=DEFAULT_MODEL, label="Model", view=models)
    for name, literal, label in (("thinking_level", ThinkingLevel, "Thinking level"),
                                 ("media_resolution", MediaResolution, "Media resolution"),
                                 ("mask_form", MaskFormChoice, "Mask form (segment)")):
        candidate.enum(name, list(get_args(literal)), label=label, view=types.DropdownView())
    candidate.int("max_image_side", label="Largest image side sent (px)")
    candidate.int("consensus", default=1, min=1, max=15, label="Answers per image (consensus)")
    candidate.bool("confidence", default=False, label="Ask a confidence per object (mAP)")
    candidate.str("hints", label="Hints for the prompt", description="one per line, e.g. negative hints")
    return candidate


def candidates_from_form(rows: Sequence[dict]) -> list[dict[str, Any]]:
    """The form's candidate rows as option overrides: empty fields left out, hints split by line."""
    candidates = []
    for row in rows or ():
        candidate = {k: v for k, v in row.items() if k in CANDIDATE_OPTIONS and v not in (None, "", [])}
        if isinstance(candidate.get("hints"), str):
            candidate["hints"] = [line for line in candidate["hints"].splitlines() if line.strip()]
        candidates.append(candidate)
    return candidates


def compare_markdown(report: CompareReport) -> str:
    """The report as a markdown table, with reasons and the recommendation."""
    def num(value: Optional[float], digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [f"**{report.samples} reference sample(s)** ({report.reference}); quality: {report.metric}", "",
             f"| candidate | status | {report.metric} | precision | recall | F1 | requests | input tokens | "
             "output tokens | cost $ | wall s | failed | front |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in report.candidates:
        lines.append(f"| {c.name} | {c.status} | {num(c.quality)} | {num(c.precision)} | {num(c.recall)} | "
                     f"{num(c.f1)} | {c.requests} | {c.input_tokens:,} | {c.output_tokens + c.thought_tokens:,} | "
                     f"{num(c.cost, 4)} | {c.wall_seconds:.1f} | {c.failed_samples} | {'★' if c.on_front else ''} |")
    lines.append("")
    lines += [f"- **{c.name}** {c.status}: {c.reason}" for c in report.candidates if c.reason]
    recommendation = report.describe().split("Pareto front", 1)[1]
    lines.append("Pareto front" + recommendation.replace("\n", "\n\n"))
    return "\n".join(lines)


class CompareSetups(GeminiOperator):
    """Runs candidate setups on reviewed samples and compares their quality per cost."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compare_setups",
            label="Compare Gemini setups (quality per cost)",
            description="Run candidate models, prompts and options on the reviewed samples, score them against "
                        "what people kept, and recommend the cheapest within a tolerance of the best",
            icon="compare_arrows",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        reviewed = _reviewable_fields(ctx.dataset)
        references = types.Dropdown()
        for name in reviewed:
            references.add_choice(f"reviewed:{name}", label=f"Labels reviewers kept in {name!r}")
        for name in _label_fields(ctx.dataset, _COMPARABLE):
            if name not in reviewed and not name.startswith("compare_") and not name.endswith("_proposed"):
                references.add_choice(f"gt:{name}", label=f"Ground truth {name!r}")
        if not references.choices:
            inputs.view("no_reference", types.Warning(
                label="Nothing to compare against",
                description="Review some samples of a Gemini run (or add a ground-truth field) first."))
            return types.Property(inputs, view=types.View(label="Compare Gemini setups"))
        default = references.choices[0].value
        inputs.enum("reference", references.values(), default=default, required=True, label="Reference",
                    view=references)
        kind, _, field = (ctx.params.get("reference") or default).partition(":")
        if kind == "reviewed":
            count = review.review_counts(ctx.target_view(), field).reviewed_samples
            note = types.Notice(label=f"each candidate runs on the {count} reviewed sample(s)") if count else \
                types.Warning(label=f"No sample is marked reviewed for {field!r}", description="Review some first.")
            inputs.view("reference_note", note)
        inputs.list("candidates", _candidate_form(), required=True, label="Candidates",
                    description="each a normal run into its own field; running again resumes")
        inputs.float("tolerance", default=DEFAULT_TOLERANCE, min=0.0, max=1.0, label="Tolerance",
                     description="recommend the cheapest candidate within this much quality of the best")
        return types.Property(inputs, view=types.View(label="Compare Gemini setups"))

    def execute(self, ctx):
        kind, _, field = ctx.params["reference"].partition(":")
        report = compare(ctx.target_view(), candidates_from_form(ctx.params.get("candidates")),
                         gt_field=field if kind == "gt" else None,
                         reference_field=field if kind == "reviewed" else None,
                         tolerance=float(ctx.params.get("tolerance", DEFAULT_TOLERANCE)), api_key=_api_key(ctx))
        ctx.trigger("reload_dataset")
        return {"report": compare_markdown(report), "figure": json.loads(report.figure().to_json()),
                "recommended": report.recommendation.name if report.recommendation else None}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Candidates compared", view=types.MarkdownView())
        figure = (ctx.results or {}).get("figure")
        if figure:
            outputs.plot("figure", label="Quality vs cost: the Pareto front", data=figure["data"],
                         layout=figure["layout"])
        return types.Property(outputs)

    def __call__(self, samples, candidates: Sequence[dict], *, reference_field: Optional[str] = None,
                 gt_field: Optional[str] = None, tolerance: float = DEFAULT_TOLERANCE):
        reference = f"gt:{gt_field}" if gt_field else f"reviewed:{reference_field or 'gemini'}"
        params = {"reference": reference, "candidates": list(candidates), "tolerance": tolerance}
        return self._run_from_python(samples, params).result


def register_compare_operator(plugin) -> None:
    """Registers the compare operator on a FiftyOne plugin context."""
    plugin.register(CompareSetups)
