"""FiftyOne App operators: forms that gather parameters and call the library.

The work is done by :func:`gemini_annotate.pipeline.run_annotation`, exactly as
from Python or the CLI; an operator only builds an
:class:`~gemini_annotate.config.AnnotateConfig` from its form, reports progress
and reloads the App.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Optional

import fiftyone.operators as foo
import fiftyone.operators.types as types

from .config import DEFAULT_LABEL_FIELD, DEFAULT_MODEL, AnnotateConfig
from .gemini import API_KEY_ENV_VARS, GeminiError
from .media import estimate_image_tokens
from .pipeline import AnnotationStopped, RunProgress, run_annotation
from .tasks import TASKS

SECRET_NAME = "GEMINI_API_KEY"
DELEGATE_ABOVE = 200
"""Samples above which the form proposes delegated execution."""


def config_from_params(params: dict[str, Any]) -> AnnotateConfig:
    """The run configuration an operator's form describes."""
    options = {
        "task": params.get("task") or "detect",
        "classes": params.get("classes") or None,
        "prompt": params.get("prompt") or None,
        "label_field": params.get("label_field") or DEFAULT_LABEL_FIELD,
        "model": params.get("model") or DEFAULT_MODEL,
        "if_labeled": params.get("if_labeled") or "skip",
    }
    for name in ("api", "concurrency", "base_url", "max_objects", "run_key", "retry_failed",
                 "mask_form", "mask_threshold", "question", "multi_label", "image_transport",
                 "uri_field", "reference_images", "media_resolution", "batch"):
        if params.get(name) not in (None, ""):
            options[name] = params[name]
    return AnnotateConfig(**options)


def _api_key(ctx) -> Optional[str]:
    for name in (SECRET_NAME, *API_KEY_ENV_VARS):
        value = ctx.secret(name) if hasattr(ctx, "secret") else None
        if value:
            return value
    return None


def _progress_label(progress: RunProgress) -> str:
    if progress.message:
        return progress.message
    return (f"{progress.finished}/{progress.total} samples "
            f"({progress.failed} failed, {progress.labels} labels)")


class AnnotateWithGemini(foo.Operator):
    """Sends the chosen samples to Gemini and stores its answers as labels to review."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="annotate_with_gemini",
            label="Annotate with Gemini",
            description="Pre-annotate samples with Google Gemini for people to review",
            dynamic=True,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view()
        inputs.enum(
            "task", list(TASKS), default="detect", required=True, label="Task",
            description="; ".join(f"{t.name}: {t.description}" for t in TASKS.values()),
            view=types.DropdownView(),
        )
        inputs.str("classes", label="Classes",
                   description="Comma-separated class names to look for (empty: whatever Gemini finds)")
        inputs.str("prompt", label="Custom prompt", description="Replaces the task's default prompt")
        inputs.str("model", default=DEFAULT_MODEL, required=True, label="Model")
        inputs.str("label_field", default=DEFAULT_LABEL_FIELD, required=True, label="Label field",
                   description="The field that receives the pre-annotations")
        inputs.enum(
            "if_labeled", ["skip", "replace_unreviewed", "overwrite"], default="skip",
            label="Samples that already have labels in this field",
            description="skip them; replace only labels nobody reviewed; or overwrite everything",
            view=types.RadioGroup(),
        )
        count = len(target)
        tokens = self._token_estimate(target)
        inputs.view("preview", types.Notice(
            label=f"{count} sample(s) → {count} request(s), about {tokens:,} input tokens for images"
        ))
        if _api_key(ctx) is None and not ctx.params.get("base_url"):
            inputs.view("no_key", types.Warning(
                label="No Gemini API key found: set GEMINI_API_KEY in the environment of the "
                      "FiftyOne App (the plugin secret) before running."
            ))
        return types.Property(inputs, view=types.View(label="Annotate with Gemini"))

    @staticmethod
    def _token_estimate(target) -> int:
        try:
            widths, heights = target.values(["metadata.width", "metadata.height"])
        except Exception:
            return 0
        max_side = AnnotateConfig.model_fields["max_image_side"].default
        return sum(estimate_image_tokens(w, h, max_side=max_side) if w and h else 258
                   for w, h in zip(widths, heights))

    def resolve_delegation(self, ctx):
        if ctx.params.get("delegate") is not None:
            return bool(ctx.params["delegate"])
        return len(ctx.target_view()) > DELEGATE_ABOVE

    def execute(self, ctx):
        config = config_from_params(ctx.params)
        target = ctx.target_view()
        api_key = _api_key(ctx)
        if ctx.delegated:
            summary = run_annotation(
                target, config, api_key=api_key,
                progress=lambda p: ctx.set_progress(progress=p.fraction, label=_progress_label(p)),
            )
            return summary.to_dict()
        return self._execute_with_progress(ctx, target, config, api_key)

    def _execute_with_progress(self, ctx, target, config, api_key):
        events: queue.Queue = queue.Queue()
        outcome: dict[str, Any] = {}

        def job():
            try:
                outcome["summary"] = run_annotation(target, config, api_key=api_key, progress=events.put)
            except (AnnotationStopped, GeminiError) as e:
                outcome["error"] = e
            finally:
                events.put(None)

        threading.Thread(target=job, name="gemini-annotate-operator", daemon=True).start()
        while (event := events.get()) is not None:
            yield ctx.trigger("set_progress", {"progress": event.fraction, "label": _progress_label(event)})
        yield ctx.trigger("reload_dataset")
        if "error" in outcome:
            raise RuntimeError(str(outcome["error"]))
        yield ctx.trigger("notify", {"message": outcome["summary"].describe().splitlines()[0],
                                      "variant": "success"})


def register_operators(plugin) -> None:
    """Registers this package's operators on a FiftyOne plugin context."""
    plugin.register(AnnotateWithGemini)
