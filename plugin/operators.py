"""FiftyOne App operators: forms that gather parameters and call the library.

The work is done by :func:`gemini_annotate.pipeline.run_annotation` and the
functions of :mod:`gemini_annotate.review`, exactly as from Python or the CLI;
an operator only reads its form, reports progress and refreshes the App.

Every operator can also be called from Python, with the same behaviour as in
the App (delegation included), once the plugin is installed
(``gemini-annotate plugin-install``)::

    import fiftyone.operators as foo

    annotate = foo.get_operator("@gemini-annotate/gemini-annotate/annotate_with_gemini")
    summary = annotate(dataset.take(20), classes=["cat", "dog"])      # runs now
    annotate(dataset, classes=["cat", "dog"], delegate=True)          # queued for
    # `fiftyone delegated launch`
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any, Optional

import fiftyone.core.labels as fol
import fiftyone.operators as foo
import fiftyone.operators.types as types
from fiftyone.operators.executor import ExecutionOptions
from pydantic import ValidationError

from . import review, runs
from .config import CONSENSUS_TASKS, DEFAULT_LABEL_FIELD, DEFAULT_MODEL, AnnotateConfig
from .costs import PRICES_ENV, money, online_and_batch_cost, price_sentence, typical_output_tokens, user_prices
from .estimate import preview_run
from .form_errors import form_problems, plain_validation_error
from .gemini import API_KEY_ENV_VARS, MissingApiKeyError, resolve_api_key
from .model_profiles import model_name_warning
from .output_fields import output_field_problem
from .pipeline import AnnotationStopped, RunProgress, run_annotation
from .review.evaluation import class_score
from .review.status import person_reviewed_labels, person_reviews_changed, without_person_reviews
from .run_records import RunSummary, load_run_summary
from .sync import outside_event_loop
from .tasks import TASKS
from .vocabulary import REVIEW_ATTRIBUTE

PLUGIN_NAME = "@gemini-annotate/gemini-annotate"
DELEGATE_ABOVE = 200
"""Samples above which the form proposes delegated execution by default."""

IF_LABELED_CHOICES = {
    "skip": "Skip them (re-running resumes an interrupted run)",
    "replace_unreviewed": "Replace labels nobody reviewed; keep accepted, edited and hand-drawn ones",
    "new_field": "Write this run into a new field",
    "overwrite": "Overwrite the field, reviewed labels included",
}
FORM_LABELS = {
    "task": "Task", "classes": "Class names", "multi_label": "Every class that applies",
    "confidence": "Ask for a confidence per object", "consensus": "Answers per image", "prompt": "Custom prompt",
    "model": "Model", "label_field": "Label field", "if_labeled": "Samples already labeled",
    "new_label_field": "New label field",
}
"""The annotate form's label of each parameter, which its error sentences name."""
FORM_PARAMS = ("classes_from", "classes_field", "new_label_field")
"""Parameters of the annotate form beside the :class:`AnnotateConfig` fields."""
_CLASS_FIELD_TYPES = (fol.Detections, fol.Polylines, fol.Keypoints, fol.Classifications,
                      fol.Detection, fol.Polyline, fol.Keypoint, fol.Classification)


class GeminiOperator(foo.Operator):
    """Base of this plugin's operators: a stable URI and a Python ``__call__``."""

    def __init__(self, _builtin: bool = False):
        super().__init__(_builtin)
        self.plugin_name = PLUGIN_NAME  # replaced by FiftyOne's registration when loaded

    def _run_from_python(self, samples, params: dict, *, delegate: bool = False):
        """Runs this operator on ``samples`` through FiftyOne's executor, as the App would."""
        ctx = {"view": samples.view()}

        def execute():
            return foo.execute_operator(self.uri, ctx, params=params, request_delegation=delegate)

        return outside_event_loop(execute)


def _api_key(ctx) -> Optional[str]:
    """The key of the plugin secrets (``GEMINI_API_KEY``, ``GOOGLE_API_KEY``), else of the
    environment, as :func:`~gemini_annotate.gemini.resolve_api_key` reads it; ``None`` if none."""
    secret = next((value for value in map(ctx.secret, API_KEY_ENV_VARS) if value and value.strip()), None)
    try:
        return resolve_api_key(secret)
    except MissingApiKeyError:
        return None


def _label_fields(samples, types_=_CLASS_FIELD_TYPES) -> list[str]:
    schema = samples.get_field_schema(embedded_doc_type=fol.Label)
    return [name for name, f in schema.items() if getattr(f, "document_type", None) in types_]


def _free_field_name(samples, base: str) -> str:
    n = 2
    while samples._dataset.has_field(f"{base}_{n}"):
        n += 1
    return f"{base}_{n}"


def config_from_params(params: dict[str, Any], samples=None) -> AnnotateConfig:
    """The run configuration an annotate form (or a queued shard) describes.

    Every :class:`AnnotateConfig` field is read from the parameter of the same
    name; empty ones keep the default, and ``multi_label`` and ``confidence``
    count only for the tasks the form shows them for (a hidden checkbox may
    keep its value when the task changes). Two form choices add to that:
    ``classes_from="field"`` takes the classes from the distinct labels of
    ``classes_field`` in ``samples``' dataset, and ``if_labeled="new_field"``
    writes into ``new_label_field``.
    """
    options = {name: value for name, value in params.items()
               if name in AnnotateConfig.model_fields and value not in (None, "")}
    task = TASKS.get(options.get("task", "detect"))
    for name, shown in (("multi_label", task is not None and task.multi_label_type is not None),
                        ("confidence", task is not None and task.spatial),
                        ("consensus", task is not None and task.name in CONSENSUS_TASKS),
                        ("escalate_to", task is not None and task.name in CONSENSUS_TASKS),
                        ("escalate_support", task is not None and task.name in CONSENSUS_TASKS)):
        if not shown:  # the form hides the input for this task, and may still hold its old value
            options.pop(name, None)
    if params.get("classes_from") == "field" and params.get("classes_field") and samples is not None:
        options["classes"] = review.field_classes(samples._dataset, params["classes_field"]) or None
    if options.get("if_labeled") == "new_field":
        label_field = options.get("label_field", DEFAULT_LABEL_FIELD)
        default = _free_field_name(samples, label_field) if samples is not None else label_field
        options.update(label_field=params.get("new_label_field") or default, if_labeled="skip")
    return AnnotateConfig(**options)


CLASSES_HINTS = {
    "classify": "Comma-separated, required: the closed set of classes to choose from",
    "caption": "Comma-separated (optional; captions ignore them)",
    "vqa": "Comma-separated (optional; answers ignore them)",
}
"""The Class names hint per task: classify needs classes, the others may leave them out."""


def _config_or_problem(params: dict[str, Any], dataset, inputs: Optional[types.Object] = None
                       ) -> tuple[Optional[AnnotateConfig], str]:
    """The form's configuration, or ``None`` and one plain sentence saying what to change.

    With ``inputs``, the form's property at fault is marked invalid with the sentence too.
    """
    try:
        config = config_from_params(params, dataset)
    except ValidationError as e:
        for problem in form_problems(e, FORM_LABELS):
            prop = inputs.properties.get(problem.field) if inputs is not None and problem.field else None
            if prop is not None:
                prop.invalid, prop.error_message = True, problem.sentence
        return None, plain_validation_error(e, FORM_LABELS)
    except ValueError as e:  # e.g. the classes of a label field that cannot be read
        return None, str(e)
    problem = output_field_problem(dataset, config)
    return (None, problem) if problem else (config, "")


def _progress_label(progress: RunProgress) -> str:
    if progress.message:
        return progress.message
    return (f"{progress.finished}/{progress.total} samples "
            f"({progress.failed} failed, {progress.labels} labels)")


def _summary_markdown(summary: RunSummary, model: str) -> str:
    lines = [f"- {line.strip()}" for line in summary.describe().splitlines()]
    return "\n".join(lines + [f"- {_reported_cost(summary, model)}"])


def _reported_cost(summary: RunSummary, model: str) -> str:
    """What the tokens Gemini reported for a run cost, online and with the Batch API."""
    online, batch = online_and_batch_cost(summary.input_tokens, summary.output_tokens + summary.thought_tokens,
                                          model, user_prices())
    return (f"cost of the {summary.input_tokens:,} input and {summary.output_tokens + summary.thought_tokens:,} "
            f"output tokens Gemini reported: {money(online)} online, {money(batch)} with the Batch API")


def _stopped(error: AnnotationStopped) -> RuntimeError:
    """The error the App shows for a stopped run: why it stopped, and what it had done."""
    return RuntimeError(f"{error}\n{error.summary.describe()}")


def _summary_output():
    outputs = types.Object()
    outputs.str("summary", label="Gemini run", view=types.MarkdownView())
    return types.Property(outputs)


class AnnotateWithGemini(GeminiOperator):
    """Sends the chosen samples to Gemini and stores its answers as labels to review."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="annotate_with_gemini",
            label="Annotate with Gemini",
            description="Pre-annotate samples with Google Gemini for people to review",
            icon="auto_awesome",
            dynamic=True,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_execution_options(self, ctx):
        return ExecutionOptions(
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=len(ctx.target_view()) > DELEGATE_ABOVE,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view()
        _whole_dataset_notice(inputs, ctx)
        self._task_inputs(inputs, ctx)
        self._output_inputs(inputs, ctx, target)
        self._check_and_preview(inputs, ctx, target)
        return types.Property(inputs, view=types.View(label="Annotate with Gemini"))

    @staticmethod
    def _task_inputs(inputs: types.Object, ctx) -> None:
        """What to ask: the task, its classes (typed or from a field), its options and prompt."""
        params = ctx.params
        inputs.enum(
            "task", list(TASKS), default="detect", required=True, label="Task",
            view=types.DropdownView(),
        )
        inputs.md("\n".join(f"- **{t.name}**: {t.description}" for t in TASKS.values()), name="task_help")
        class_fields = _label_fields(ctx.dataset)
        if class_fields:
            sources = types.RadioGroup(orientation="horizontal")
            sources.add_choice("typed", label="Type the classes")
            sources.add_choice("field", label="Classes of a label field")
            inputs.enum("classes_from", sources.values(), default="typed", label="Classes", view=sources)
        if params.get("classes_from") == "field" and class_fields:
            inputs.enum("classes_field", class_fields, default=class_fields[0], required=True,
                        label="Take the classes from", view=types.DropdownView())
            field = params.get("classes_field") or class_fields[0]
            names = review.field_classes(ctx.dataset, field)
            inputs.view("classes_found", types.Notice(
                label=f"{len(names)} classes: {', '.join(names[:30])}{' …' if len(names) > 30 else ''}"))
        task = params.get("task") or "detect"
        if not (params.get("classes_from") == "field" and class_fields):
            inputs.str("classes", label="Class names",
                       description=CLASSES_HINTS.get(task, "Comma-separated (empty: every object Gemini finds)"))
        if task == "classify":
            inputs.bool("multi_label", default=False, label="Every class that applies",
                        description="Several classes per image (fo.Classifications) instead of exactly one",
                        view=types.CheckboxView())
        if task in TASKS and TASKS[task].spatial:
            inputs.bool("confidence", default=False, label="Ask for a confidence per object",
                        description="Gemini's own 0–1 estimate, not calibrated: it ranks the labels, so the "
                                    "evaluation can report mAP",
                        view=types.CheckboxView())
        if task in CONSENSUS_TASKS:
            inputs.int("consensus", default=1, label="Answers per image",
                       description="Above 1: ask that many times and fuse the answers; each label's confidence "
                                   "then comes from how many answers agree on it (N requests per image)",
                       view=types.FieldView())
            inputs.str("escalate_to", label="Escalate unsure samples to (optional)",
                       description="A stronger model (e.g. gemini-3-pro-preview) that labels again the samples "
                                   "this model was unsure about: failed or partial replies, and by the share "
                                   "below; its labels replace the first ones", view=types.FieldView())
            inputs.float("escalate_support", label="Escalate below agreed share (optional)",
                         description="A sample escalates when fewer of the objects its answers proposed than this "
                                     "share (e.g. 0.2) have a majority of the answers: crowded images of small "
                                     "objects (needs answers per image above 1)",
                         view=types.FieldView())
        if task == "vqa":  # the question travels as the prompt (see prompts.vqa_question)
            inputs.str("prompt", required=True, label="Question",
                       description="May name sample fields as {field}", view=types.TextFieldView(multiline=True))
        else:
            inputs.str("prompt", label="Custom prompt (optional)",
                       description="Replaces the task's default prompt; may name sample fields as {field}",
                       view=types.TextFieldView(multiline=True))

    @staticmethod
    def _output_inputs(inputs: types.Object, ctx, target) -> None:
        """Which model, into which field, and what to do with samples already labeled there."""
        params = ctx.params
        inputs.str("model", default=DEFAULT_MODEL, required=True, label="Model",
                   description="A Gemini model name, such as gemini-3-flash-preview or gemini-2.5-flash")
        inputs.str("label_field", default=DEFAULT_LABEL_FIELD, required=True, label="Label field",
                   description="The field that receives the pre-annotations")
        label_field = params.get("label_field") or DEFAULT_LABEL_FIELD
        if ctx.dataset.has_field(label_field) and len(target.exists(label_field)):
            choices = types.RadioGroup()
            for value, label in IF_LABELED_CHOICES.items():
                choices.add_choice(value, label=label)
            inputs.enum("if_labeled", choices.values(), default="skip", view=choices,
                        label=f"Samples already labeled in {label_field!r}")
            if params.get("if_labeled") == "new_field":
                inputs.str("new_label_field", default=_free_field_name(ctx.dataset, label_field),
                           required=True, label="New label field")
        inputs.int("requests_per_minute", label="Requests per minute (optional)",
                   description="Your tier's quota for this model: requests are paced to it. Empty: learned "
                               "from Gemini's 429s. Shards each get their share")
        inputs.int("tokens_per_minute", label="Input tokens per minute (optional)",
                   description="Your tier's token quota for this model, paced like requests")
        inputs.int("workers", default=1, min=1, max=64, label="Worker processes",
                   description="Above 1: the run is split between that many local processes, for when one "
                               "CPU core is the bound (110–180 images/s each)", view=types.FieldView())

    @staticmethod
    def _check_and_preview(inputs: types.Object, ctx, target) -> None:
        """Says what is wrong with the form, or what the run will send and what to mind."""
        config, sentence = _config_or_problem(ctx.params, ctx.dataset, inputs)
        if config is None:
            # invalid=True makes FiftyOne's validation refuse the form: the App disables Execute
            inputs.view("invalid", types.Error(label="Check the form", description=sentence),
                        invalid=True, error_message=sentence)
            return
        unknown_model = model_name_warning(config.model)
        if unknown_model:
            inputs.view("model_warning", types.Warning(label="Unknown model name", description=unknown_model))
        preview = preview_run(target, config)
        inputs.view("preview", types.Notice(label="What will be sent", description=preview.describe()))
        output_tokens = typical_output_tokens(config.task) * preview.requests
        inputs.view("estimate", types.Notice(
            label="Estimated cost: " + price_sentence(preview.estimated_tokens, output_tokens, config.model,
                                                      preview.requests, user_prices()),
            description=f"Output assumes a typical {config.task} reply ({typical_output_tokens(config.task)} "
                        f"tokens; thinking extra). Your own prices: a JSON file named by ${PRICES_ENV}."))
        if preview.reviewed_labels:
            inputs.view("overwrite_warning", types.Warning(
                label=f"Overwriting replaces {preview.reviewed_labels} label(s) people reviewed or drew",
                description="Choose 'replace unreviewed' to keep them."))
        if _api_key(ctx) is None:
            inputs.view("no_key", types.Warning(
                label="No Gemini API key",
                description="Set the plugin secret GEMINI_API_KEY (or GEMINI_API_KEY / GOOGLE_API_KEY "
                            "in the environment of the App and of `fiftyone delegated launch`)."))

    def execute(self, ctx):
        config, sentence = _config_or_problem(ctx.params, ctx.dataset)
        if config is None:
            raise ValueError(sentence)
        target = ctx.target_view()
        api_key = _api_key(ctx)
        if ctx.delegated:
            return self._execute_delegated(ctx, target, config, api_key)
        return self._execute_with_progress(ctx, target, config, api_key)

    @staticmethod
    def _execute_delegated(ctx, target, config, api_key):
        def report(progress: RunProgress) -> None:
            ctx.set_progress(progress=progress.fraction, label=_progress_label(progress))

        try:
            summary = run_annotation(target, config, api_key=api_key, progress=report)
        except AnnotationStopped as e:
            raise _stopped(e) from e
        return {"summary": _summary_markdown(summary, config.model), **summary.to_dict()}

    @staticmethod
    def _execute_with_progress(ctx, target, config, api_key):
        # The run happens in a thread of its own with its own event loop, so it
        # never blocks or shares the App server's loop; this generator (iterated
        # by the server off its loop) only relays throttled progress events.
        events: queue.Queue = queue.Queue()
        outcome: dict[str, Any] = {}

        def job():
            try:
                outcome["summary"] = run_annotation(target, config, api_key=api_key, progress=events.put)
            except Exception as e:  # raised again below, in the App's request
                outcome["error"] = e
            finally:
                events.put(None)

        threading.Thread(target=job, name="gemini-annotate-operator", daemon=True).start()
        while (event := events.get()) is not None:
            yield ctx.trigger("set_progress", {"progress": event.fraction, "label": _progress_label(event)})
        yield ctx.trigger(UPDATE_MODAL_SAMPLES, {"samples": review_status_patches(
            target.limit(UPDATE_AT_MOST), config.label_field)} if False else {"samples": {}})
        yield ctx.trigger("reload_samples")
        yield ctx.trigger("reload_dataset")
        error = outcome.get("error")
        if isinstance(error, AnnotationStopped):  # a plain sentence, not a traceback
            yield ctx.trigger("notify", {"message": f"Run stopped: {error}", "variant": "error"})
            yield ctx.trigger("show_output", {
                "outputs": _summary_output().to_json(),
                "results": {"summary": f"**Run stopped**: {error}\n\n{_summary_markdown(error.summary, config.model)}"},
            })
            return
        if error is not None:
            raise error
        summary: RunSummary = outcome["summary"]
        yield ctx.trigger("notify", {"message": summary.describe().splitlines()[0], "variant": "success"})
        yield ctx.trigger("show_output", {
            "outputs": _summary_output().to_json(),
            "results": {"summary": _summary_markdown(summary, config.model)},
        })

    def resolve_output(self, ctx):
        return _summary_output()

    def __call__(self, samples, task: str = "detect", *, classes=None, prompt: Optional[str] = None,
                 model: str = DEFAULT_MODEL, label_field: str = DEFAULT_LABEL_FIELD,
                 if_labeled: str = "skip", delegate: bool = False, **options):
        """Runs the operator on a collection, as from the App.

        Args:
            samples: the dataset or view to annotate.
            task, classes, prompt, model, label_field, if_labeled: as in the form
                (``classes`` a list or a comma-separated string;
                ``if_labeled="new_field"`` writes into ``new_label_field``,
                by default the first free ``<label_field>_<n>``).
            delegate: queue the run for ``fiftyone delegated launch`` instead
                of running it now.
            **options: other :class:`~gemini_annotate.config.AnnotateConfig`
                fields (``concurrency``, ``api``, ``base_url``, ...) and the
                form's ``classes_from``, ``classes_field``, ``new_label_field``.

        Returns:
            the :class:`~gemini_annotate.run_records.RunSummary` of an immediate run,
            or FiftyOne's ``ExecutionResult`` of a delegated one (its
            ``result["id"]`` is the queued operation).
        """
        unknown = set(options) - set(AnnotateConfig.model_fields) - set(FORM_PARAMS)
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}")
        if isinstance(classes, (list, tuple)):
            classes = ",".join(classes)  # the form's classes are a string, and FiftyOne checks
        params = {"task": task, "classes": classes, "prompt": prompt, "model": model,
                  "label_field": label_field, "if_labeled": if_labeled, **options}
        config = config_from_params(params, samples)  # checked now; names the run (and a new field)
        if if_labeled == "new_field":
            params["new_label_field"] = config.label_field
        result = self._run_from_python(samples, params, delegate=delegate)
        if delegate:
            return result
        summary = load_run_summary(samples, config.resolved_run_key)
        if summary is not None and summary.stopped:  # the App showed it; Python raises it
            raise AnnotationStopped(summary.stopped, summary)
        return summary


REVIEWABLE_TYPES = (fol.Label,)
"""Fields whose labels carry a review status (not the text of captions and answers)."""
EVALUABLE_TYPES = (fol.Detections, fol.Polylines, fol.Keypoints, fol.Classification)
"""Fields :func:`gemini_annotate.review.evaluate` can score."""


def _reviewable_fields(dataset, types_: tuple[type, ...] = REVIEWABLE_TYPES) -> list[str]:
    """The fields runs wrote whose labels are of ``types_``, in run order."""
    def holds(name: str) -> bool:
        label_type = getattr(dataset.get_field(name), "document_type", None)  # None: a text field
        return label_type is not None and issubclass(label_type, types_)

    return [name for name in review.pre_annotation_fields(dataset) if holds(name)]


def _pre_annotation_field_input(inputs, ctx, *, name="label_field", label="Pre-annotation field",
                                types_: tuple[type, ...] = REVIEWABLE_TYPES):
    """Adds a dropdown of the fields runs wrote (holding ``types_``); returns the chosen one (or ``None``)."""
    fields = _reviewable_fields(ctx.dataset, types_)
    if not fields:
        inputs.view("no_runs", types.Warning(
            label="No Gemini pre-annotations to work on yet",
            description="Run 'Annotate with Gemini' first (captions and answers are text, with no labels "
                        "to review; multi-label classifications cannot be evaluated)."))
        return None
    default = field_under_review(ctx.dataset, fields)
    chosen = ctx.params.get(name) or default
    inputs.enum(name, fields, default=default, required=True, label=label, view=types.DropdownView())
    return chosen if chosen in fields else default


def field_under_review(dataset, fields: list[str]) -> str:
    """The newest of ``fields`` in which a person reviewed something (the run being reviewed),
    else the newest: a segment run's outline field, say, is not where the review happens."""
    for name in reversed(fields):
        if person_reviewed_labels(dataset, name):
            return name
    return fields[-1]


def _chosen_field(ctx, types_: tuple[type, ...] = REVIEWABLE_TYPES) -> str:
    """The pre-annotation field a review form names (the latest run's by default)."""
    fields = _reviewable_fields(ctx.dataset, types_)
    if not fields:
        raise review.ReviewError("this dataset has no Gemini pre-annotations yet: run 'Annotate with Gemini' first")
    field = ctx.params.get("label_field") or field_under_review(ctx.dataset, fields)
    if field not in fields:
        raise review.ReviewError(f"{field!r} holds no Gemini pre-annotations this operator works on; "
                                 f"choose one of {', '.join(fields)}")
    return field


def _view_target(ctx) -> Optional[str]:
    """The form's dataset / view / selection choice (FiftyOne moves it out of ``ctx.params``)."""
    return ctx.params.get("view_target") or ctx.request_params.get("view_target")


UPDATE_MODAL_SAMPLES = f"{PLUGIN_NAME}/update_modal_samples"
"""This plugin's App-side operator (``app/refresh_samples.js``): writes new label attributes into
the App's copies of samples opened in the modal, which no built-in reload reaches."""
UPDATE_AT_MOST = 1000
"""Samples whose review statuses are sent to it at most (a person opens far fewer in the modal)."""


def _refresh_app(ctx, label_field: Optional[str] = None) -> None:
    """Makes the App show what the operator changed in the database: the dataset (sidebar,
    counts), the grid, and, for ``label_field``'s review statuses, the samples opened in the
    modal (tooltips, colors), without a page reload.

    Args:
        label_field: the field whose review statuses changed in the operator's target, if any.
    """
    if label_field is not None:
        changed = ctx.target_view().limit(UPDATE_AT_MOST)
        ctx.trigger(UPDATE_MODAL_SAMPLES, {"samples": review_status_patches(changed, label_field)})
    ctx.ops.reload_samples()
    ctx.ops.reload_dataset()


def review_status_patches(samples, label_field: str) -> dict[str, dict[str, dict[str, str]]]:
    """``{sample id: {label id: {"review": status}}}`` for the labels of ``label_field`` in ``samples``."""
    path = review.label_path(samples, label_field)
    ids, label_ids, statuses = samples.values(["id", f"{path}.id", f"{path}.{REVIEW_ATTRIBUTE}"])
    patches = {}
    for sample_id, labels, values in zip(ids, label_ids, statuses):
        labels = labels if isinstance(labels, list) else [labels]
        values = values if isinstance(values, list) else [values]
        patches[sample_id] = {lid: {REVIEW_ATTRIBUTE: v} for lid, v in zip(labels, values) if lid and v}
    return patches


def _whole_dataset_notice(inputs: types.Object, ctx) -> None:
    """Says so when, with nothing selected and no view, the target is the whole dataset."""
    if ctx.selected or ctx.selected_labels or len(ctx.view) != len(ctx.dataset):
        return
    inputs.view("whole_dataset", types.Notice(
        label=f"Nothing selected: this applies to the whole dataset ({len(ctx.dataset)} samples)",
        description="Select samples (or labels) in the App, or filter a view, to narrow it."))


def _markdown_lines(text: str) -> str:
    """Lines of a ``describe()`` as a Markdown list: one item per line, not one run-on block."""
    return "\n".join(f"- {line.strip()}" for line in text.splitlines() if line.strip())


def _message_output(label: str):
    outputs = types.Object()
    outputs.str("message", label=label, view=types.MarkdownView())
    return types.Property(outputs)


STATUS_ACTIONS = {
    review.ACCEPTED: "Accept",
    review.REJECTED: "Reject",
    review.UNREVIEWED: "Reset to unreviewed",
}


class ReviewGeminiLabels(GeminiOperator):
    """Accepts or rejects pre-annotations: the selected labels, or those of a view."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="review_gemini_labels",
            label="Accept or reject Gemini labels",
            description="Set the review status of the selected pre-annotations (or of a view's)",
            icon="fact_check",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, allow_selected_labels=True, action_description="Review",
                           selected_labels_label="Selected labels")
        choices = types.RadioGroup(orientation="horizontal")
        for value, label in STATUS_ACTIONS.items():
            choices.add_choice(value, label=label)
        inputs.enum("status", choices.values(), default=review.ACCEPTED, required=True,
                    label="Review", view=choices)
        field = _pre_annotation_field_input(inputs, ctx)
        if field is None:
            return types.Property(inputs, view=types.View(label="Review Gemini labels"))
        inputs.str("classes", label="Only these classes (optional)", description="Comma-separated")
        status = ctx.params.get("status") or review.ACCEPTED
        candidates = review.only_classes(ctx.target_view(), field, ctx.params.get("classes"))
        overrides = person_reviews_changed(candidates, field, status)
        if overrides:
            undone = ", ".join(f"{n} {current}" for current, n in sorted(overrides.items()))
            # labels picked one by one are meant as picked; a selection of samples is not
            picked = _view_target(ctx) == "SELECTED_LABELS"
            inputs.bool("change_reviewed", default=picked, view=types.CheckboxView(),
                        label=f"Also change labels a person already reviewed ({undone})",
                        description="Unchecked, only labels nobody reviewed yet change")
        labels = self._labels(ctx, field)
        count = labels.count(review.label_path(labels, field))
        action = STATUS_ACTIONS.get(status, "Review")
        kept = sum(overrides.values()) if not self._change_reviewed(ctx) else 0
        note = (f"; {kept} label(s) a person already reviewed keep their status" if kept else
                f"; this overrides {sum(overrides.values())} earlier review(s)" if overrides else "")
        inputs.view("preview", types.Notice(label=f"{action}: {count} label(s) in {field!r}{note}"))
        _whole_dataset_notice(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Review Gemini labels"))

    @staticmethod
    def _labels(ctx, field):
        labels = review.only_classes(ctx.target_view(), field, ctx.params.get("classes"))
        return labels if ReviewGeminiLabels._change_reviewed(ctx) else without_person_reviews(labels, field)

    @staticmethod
    def _change_reviewed(ctx) -> bool:
        choice = ctx.params.get("change_reviewed")
        return _view_target(ctx) == "SELECTED_LABELS" if choice is None else bool(choice)

    def execute(self, ctx):
        field = _chosen_field(ctx)
        status = ctx.params.get("status") or review.ACCEPTED
        changed = review.set_review_status(self._labels(ctx, field), field, status)
        _refresh_app(ctx, field)
        return {"message": f"{changed} label(s) in {field!r} now {status}"}

    def resolve_output(self, ctx):
        return _message_output("Review")

    def __call__(self, samples, label_field: str, status: str = review.ACCEPTED, *,
                 label_ids: Optional[list[str]] = None, classes: Optional[list[str]] = None,
                 change_reviewed: bool = False):
        """Sets the review status of ``label_ids`` (or all labels of ``samples``) in ``label_field``;
        labels a person already reviewed keep theirs unless ``change_reviewed``."""
        params = {"label_field": label_field, "status": status, "classes": ",".join(classes or ()),
                  "change_reviewed": change_reviewed}
        if label_ids is not None:
            samples = samples.select_labels(ids=label_ids, fields=label_field)
        return self._run_from_python(samples, params).result


class MarkSamplesReviewed(GeminiOperator):
    """Marks samples as reviewed as a whole, accepting what is left unreviewed."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="mark_samples_reviewed",
            label="Mark samples reviewed",
            description="Mark samples reviewed; their labels still unreviewed become accepted",
            icon="done_all",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view()
        field = _pre_annotation_field_input(inputs, ctx)
        if field is not None:
            count = review.only_unreviewed(target, field).count(review.label_path(target, field))
            inputs.view("preview", types.Notice(
                label=f"{len(target)} sample(s) marked reviewed; {count} unreviewed label(s) accepted"))
            _whole_dataset_notice(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Mark samples reviewed"))

    def execute(self, ctx):
        field = _chosen_field(ctx)
        target = ctx.target_view()
        accepted = review.mark_reviewed(target, field)
        _refresh_app(ctx, field)
        return {"message": f"{len(target)} sample(s) reviewed, {accepted} label(s) accepted"}

    def resolve_output(self, ctx):
        return _message_output("Reviewed")

    def __call__(self, samples, label_field: str):
        return self._run_from_python(samples, {"label_field": label_field}).result


class PromoteReviewedLabels(GeminiOperator):
    """Copies accepted, edited and hand-drawn labels into a ground-truth field."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="promote_reviewed_labels",
            label="Promote reviewed labels to ground truth",
            description="Copy accepted, edited and added labels into a ground-truth field",
            icon="upgrade",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view()
        field = _pre_annotation_field_input(inputs, ctx)
        if field is None:
            return types.Property(inputs, view=types.View(label="Promote reviewed labels"))
        inputs.str("gt_field", default="ground_truth", required=True, label="Ground-truth field")
        inputs.bool("include_auto_accepted", default=False, label="Also promote auto-accepted labels",
                    description="Labels accepted by confidence, which no person checked", view=types.CheckboxView())
        counts = review.review_counts(target, field)
        statuses = review.KEPT_STATUSES + ((review.AUTO_ACCEPTED,) if ctx.params.get("include_auto_accepted") else ())
        promoted = sum(counts.statuses.get(s, 0) for s in statuses)
        gt_field = ctx.params.get("gt_field") or "ground_truth"
        note = (f" next to the labels already in {gt_field!r}" if ctx.dataset.has_field(gt_field) else "")
        inputs.view("preview", types.Notice(
            label=f"{promoted} reviewed label(s) will be copied into {gt_field!r}{note}; "
                  f"{counts.statuses.get(review.UNREVIEWED, 0)} unreviewed and "
                  f"{counts.statuses.get(review.REJECTED, 0)} rejected stay behind"))
        _whole_dataset_notice(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Promote reviewed labels"))

    def execute(self, ctx):
        field = _chosen_field(ctx)
        gt_field = ctx.params.get("gt_field") or "ground_truth"
        promoted = review.promote(ctx.target_view(), field, gt_field,
                                  include_auto_accepted=bool(ctx.params.get("include_auto_accepted")))
        _refresh_app(ctx)
        return {"message": f"{promoted} label(s) promoted from {field!r} into {gt_field!r}"}

    def resolve_output(self, ctx):
        return _message_output("Promoted")

    def __call__(self, samples, label_field: str, gt_field: str = "ground_truth", *,
                 include_auto_accepted: bool = False):
        params = {"label_field": label_field, "gt_field": gt_field, "include_auto_accepted": include_auto_accepted}
        return self._run_from_python(samples, params).result


def evaluation_markdown(report: review.EvaluationReport) -> str:
    """An evaluation report as Markdown: scores, per-class table, review tally, how to read them."""
    ranked = report.mAP is not None
    rows = "\n".join(
        f"| {name} | {class_score(row, 'precision')} | {class_score(row, 'recall')} | "
        f"{class_score(row, 'f1-score')} | {int(row['support'])} |"
        + (f" {row['ap']:.3f} |" if ranked and "ap" in row else " – |" if ranked else "")
        for name, row in report.per_class.items()
    )
    s = report.review.statuses
    return (
        f"**{report.samples} reviewed sample(s)**{f', IoU {report.iou}' if report.iou is not None else ''}: "
        f"precision **{report.precision:.3f}**, "
        f"recall **{report.recall:.3f}**, F1 **{report.f1:.3f}**"
        f"{f', mAP **{report.mAP:.3f}**' if ranked else ''} "
        f"(TP {report.true_positives}, FP {report.false_positives}, FN {report.false_negatives})\n\n"
        f"| class | precision | recall | F1 | support |{' AP |' if ranked else ''}\n"
        f"|---|---|---|---|---|{'---|' if ranked else ''}\n{rows}\n\n"
        f"Reviewers accepted {s.get('accepted', 0)} label(s) as Gemini drew them, edited "
        f"{s.get('edited', 0)}, rejected {s.get('rejected', 0)} and drew {s.get('added', 0)} themselves.\n\n"
        f"*{report.note}*"
        + _reliability_markdown(report)
    )


def _reliability_markdown(report: review.EvaluationReport) -> str:
    """The reliability table and ECE of the proposals' confidences, when they had any."""
    if report.ece is None:
        return ""
    calibrated = (f"calibrated (raw ECE {report.raw_ece:.3f})" if report.calibrated_runs
                  else "as Gemini gave them (no calibration stored yet: run calibrate)")
    rows = "\n".join(f"| {b.lower:.1f}–{b.upper:.1f} | {b.mean_predicted:.3f} | {b.observed:.3f} | {b.count} |"
                     for b in report.reliability)
    return (f"\n\n**Confidence vs what reviewers kept**, {calibrated}: ECE **{report.ece:.3f}**\n\n"
            f"| confidence | mean | kept | labels |\n|---|---|---|---|\n{rows}")


KEPT_IN_FIELD = "(kept)"
"""The "Compare with" choice of the labels reviewers kept in the field itself (no field has this name)."""


def _compared_field(choice: Optional[str]) -> Optional[str]:
    return None if choice in (None, "", KEPT_IN_FIELD) else choice


class EvaluateGeminiLabels(GeminiOperator):
    """Scores Gemini's proposals against the labels reviewers kept."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="evaluate_gemini_labels",
            label="Evaluate Gemini against reviewed labels",
            description="Precision and recall per class of the pre-annotations on reviewed samples "
                        "(objects, or single-label classes)",
            icon="query_stats",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        field = _pre_annotation_field_input(inputs, ctx, types_=EVALUABLE_TYPES)
        if field is None:
            return types.Property(inputs, view=types.View(label="Evaluate Gemini"))
        classification = issubclass(ctx.dataset.get_field(field).document_type, fol.Classification)
        comparable = (fol.Classification,) if classification else (fol.Detections, fol.Polylines, fol.Keypoints)
        others = [f for f in _label_fields(ctx.dataset, comparable) if f != field and not f.endswith("_proposed")]
        truths = types.Dropdown()
        truths.add_choice(KEPT_IN_FIELD, label=f"Labels reviewers kept in {field!r}")
        for name in others:
            truths.add_choice(name, label=name)
        inputs.enum("gt_field", truths.values(), default=KEPT_IN_FIELD, label="Compare with", view=truths)
        inputs.str("eval_key", default=f"{field}_eval", required=True, label="Evaluation key")
        if not classification:
            inputs.float("iou", default=0.5, label="IoU threshold", min=0.05, max=0.95)
        reviewed = review.review_counts(ctx.target_view(), field).reviewed_samples
        if reviewed:
            inputs.view("preview", types.Notice(label=f"{reviewed} reviewed sample(s) will be evaluated"))
        else:
            inputs.view("none_reviewed", types.Warning(
                label="No reviewed samples yet",
                description="Mark samples reviewed (or load corrections from an annotation tool) first."))
        return types.Property(inputs, view=types.View(label="Evaluate Gemini"))

    def execute(self, ctx):
        field = _chosen_field(ctx, EVALUABLE_TYPES)
        report = review.evaluate(
            ctx.target_view(), field, gt_field=_compared_field(ctx.params.get("gt_field")),
            eval_key=ctx.params.get("eval_key") or None, iou=float(ctx.params.get("iou") or 0.5),
        )
        _refresh_app(ctx)
        results = {"report": evaluation_markdown(report), **report.to_dict()}
        if report.ece is not None:
            results["reliability_figure"] = json.loads(review.reliability_figure(report).to_json())
        return results

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Gemini vs reviewed labels", view=types.MarkdownView())
        figure = (ctx.results or {}).get("reliability_figure")
        if figure:
            outputs.plot("reliability_figure", label="Reliability diagram",
                         data=figure["data"], layout=figure["layout"])
        return types.Property(outputs)

    def __call__(self, samples, label_field: str, *, gt_field: Optional[str] = None,
                 eval_key: Optional[str] = None, iou: float = 0.5):
        params = {"label_field": label_field, "gt_field": gt_field or KEPT_IN_FIELD,
                  "eval_key": eval_key or f"{label_field}_eval", "iou": iou}
        return self._run_from_python(samples, params).result


class GeminiRuns(GeminiOperator):
    """Lists, inspects and deletes gemini-annotate runs."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="gemini_runs",
            label="Inspect or delete Gemini runs",
            description="What each run asked (prompt, model, classes), what it did, and its review progress",
            icon="history",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        keys = runs.list_runs(ctx.dataset)
        if not keys:
            inputs.view("no_runs", types.Notice(label="No Gemini runs on this dataset"))
            return types.Property(inputs, view=types.View(label="Gemini runs"))
        choices = types.Dropdown()
        for info in keys:
            choices.add_choice(info.run_key, label=info.run_key,
                               description=f"{info.task} · {info.model} · {info.label_field}")
        fields = [i.label_field for i in keys if ctx.dataset.has_field(i.label_field)]
        reviewed = field_under_review(ctx.dataset, fields) if fields else None
        default = next((i for i in reversed(keys) if i.label_field == reviewed), keys[-1])
        inputs.enum("run_key", choices.values(), default=default.run_key, required=True,
                    label="Run", view=choices)
        info = next((i for i in keys if i.run_key == ctx.params.get("run_key")), default)
        # one property per run: the App keeps a property's first value while the form is open
        inputs.md(_markdown_lines(info.describe()), name=f"details_{keys.index(info)}")
        actions = types.RadioGroup(orientation="horizontal")
        actions.add_choice("inspect", label="Inspect")
        actions.add_choice("delete", label="Delete the run")
        inputs.enum("action", actions.values(), default="inspect", view=actions, label="Action")
        if ctx.params.get("action") == "delete":
            inputs.bool("delete_labels", default=False, label=f"Also delete the field {info.label_field!r} "
                        "and its outline, status, reason, reviewed and proposed fields", view=types.CheckboxView())
        return types.Property(inputs, view=types.View(label="Gemini runs"))

    def execute(self, ctx):
        run_key = ctx.params["run_key"]
        if ctx.params.get("action") == "delete":
            deleted = runs.delete_run(ctx.dataset, run_key, delete_labels=bool(ctx.params.get("delete_labels")))
            _refresh_app(ctx)
            return {"message": f"run {run_key!r} deleted" + (f"; fields {', '.join(deleted)} deleted" if deleted else "")}
        return {"message": _markdown_lines(runs.run_info(ctx.dataset, run_key).describe())}

    def resolve_output(self, ctx):
        return _message_output("Gemini run")


class AutoAcceptGeminiLabels(GeminiOperator):
    """Accepts the unreviewed labels Gemini is surest of, at a precision the reviews so far show."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="auto_accept_gemini_labels",
            label="Auto-accept the labels Gemini is surest of",
            description="Accept unreviewed labels above a confidence threshold that reviewed samples show to "
                        "meet a target precision",
            icon="verified",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view()
        field = _pre_annotation_field_input(inputs, ctx)
        if field is None:
            return types.Property(inputs, view=types.View(label="Auto-accept"))
        inputs.float("target_precision", default=0.95, min=0.5, max=0.999, required=True, label="Target precision",
                     description="The share of auto-accepted labels that must be right")
        inputs.float("confidence_level", default=0.95, min=0.5, max=0.999, required=True, label="Confidence level",
                     description="How sure the reviews must make that precision (one-sided Clopper–Pearson bound)")
        inputs.bool("per_class", default=True, label="A threshold per class where a class has enough reviews",
                    view=types.CheckboxView())
        try:
            report = review.auto_accept(target, field, **self._options(ctx), dry_run=True)
            inputs.view("preview", types.Notice(label=f"{report.auto_accepted} of {report.labels} label(s) "
                                                      "would be auto-accepted", description=report.describe()))
        except review.ReviewError as e:
            inputs.view("refused", types.Warning(label="The reviews cannot support this target yet",
                                                 description=str(e)))
        return types.Property(inputs, view=types.View(label="Auto-accept"))

    @staticmethod
    def _options(ctx) -> dict:
        return {"target_precision": float(ctx.params.get("target_precision") or 0.95),
                "confidence_level": float(ctx.params.get("confidence_level") or 0.95),
                "per_class": ctx.params.get("per_class", True) is not False}

    def execute(self, ctx):
        field = _chosen_field(ctx)
        report = review.auto_accept(ctx.target_view(), field, **self._options(ctx))
        _refresh_app(ctx, field)
        return {"message": f"```\n{report.describe()}\n```", **report.to_dict()}

    def resolve_output(self, ctx):
        return _message_output("Auto-accepted")

    def __call__(self, samples, label_field: str, target_precision: float = 0.95, confidence_level: float = 0.95,
                 *, per_class: bool = True):
        params = {"label_field": label_field, "target_precision": target_precision,
                  "confidence_level": confidence_level, "per_class": per_class}
        return self._run_from_python(samples, params).result


AUDIT_ACTIONS = {"draw": "Draw labels to check", "report": "Report the audit"}


class AuditAutoAcceptedLabels(GeminiOperator):
    """Draws auto-accepted labels for people to check, or reports what they found."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="audit_auto_accepted_labels",
            label="Audit auto-accepted labels",
            description="Tag a stratified random sample of auto-accepted labels to check, or measure their "
                        "precision once checked",
            icon="rule",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view()
        field = _pre_annotation_field_input(inputs, ctx)
        if field is None:
            return types.Property(inputs, view=types.View(label="Audit"))
        actions = types.RadioGroup(orientation="horizontal")
        for value, label in AUDIT_ACTIONS.items():
            actions.add_choice(value, label=label)
        inputs.enum("action", actions.values(), default="draw", required=True, label="Action", view=actions)
        if (ctx.params.get("action") or "draw") == "draw":
            inputs.int("count", default=50, min=1, required=True, label="Labels to draw")
            inputs.int("seed", default=0, label="Random seed", description="The same seed draws the same labels")
            left = review.review_counts(target, field).statuses.get(review.AUTO_ACCEPTED, 0)
            inputs.view("preview", types.Notice(
                label=f"{left} auto-accepted label(s) in {field!r}; the drawn ones get the label tag "
                      f"{review.AUDIT_TAG!r} and are shown to check"))
        return types.Property(inputs, view=types.View(label="Audit auto-accepted labels"))

    def execute(self, ctx):
        field = _chosen_field(ctx)
        if ctx.params.get("action") == "report":
            report = review.audit_report(ctx.target_view(), field)
            return {"message": f"```\n{report.describe()}\n```", **report.to_dict()}
        draw = review.audit(ctx.target_view(), field, int(ctx.params.get("count") or 50),
                            seed=int(ctx.params.get("seed") or 0))
        _refresh_app(ctx)  # the drawn labels gained a tag
        ctx.ops.set_view(view=draw.view)
        return {"message": draw.describe(), "drawn": draw.drawn, "per_class": draw.per_class}

    def resolve_output(self, ctx):
        return _message_output("Audit")

    def __call__(self, samples, label_field: str, action: str = "draw", *, count: int = 50, seed: int = 0):
        params = {"label_field": label_field, "action": action, "count": count, "seed": seed}
        return self._run_from_python(samples, params).result


QUEUE_IDS_RETURNED = 100
"""Sample ids the review-queue operator returns (the App shows the whole queue as its view)."""


class ShowReviewQueue(GeminiOperator):
    """Shows the unreviewed samples, the most expected mistakes first."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="show_review_queue",
            label="Review the least sure samples first",
            description="Sort the unreviewed samples by expected mistakes: the sum of 1 - confidence over their "
                        "unreviewed labels",
            icon="sort",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view()
        field = _pre_annotation_field_input(inputs, ctx)
        if field is not None:
            pending = len(target) - review.review_counts(target, field).reviewed_samples
            inputs.view("preview", types.Notice(
                label=f"{pending} unreviewed sample(s), the most expected mistakes first",
                description=f"labels without a confidence count as {review.UNKNOWN_CONFIDENCE}"))
        return types.Property(inputs, view=types.View(label="Review queue"))

    def execute(self, ctx):
        queue = review.review_queue(ctx.target_view(), _chosen_field(ctx))
        ctx.ops.set_view(view=queue)
        return {"message": f"{len(queue)} unreviewed sample(s), least sure first", "samples": len(queue),
                "first_ids": queue.limit(QUEUE_IDS_RETURNED).values("id")}

    def resolve_output(self, ctx):
        return _message_output("Review queue")

    def __call__(self, samples, label_field: str):
        return self._run_from_python(samples, {"label_field": label_field}).result


OPERATORS = (AnnotateWithGemini, ReviewGeminiLabels, MarkSamplesReviewed, PromoteReviewedLabels,
             EvaluateGeminiLabels, GeminiRuns, AutoAcceptGeminiLabels, AuditAutoAcceptedLabels, ShowReviewQueue)


def register_operators(plugin) -> None:
    """Registers this package's operators on a FiftyOne plugin context."""
    for operator in OPERATORS:
        plugin.register(operator)
