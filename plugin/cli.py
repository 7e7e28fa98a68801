"""The gemini-annotate command: pre-annotate FiftyOne datasets with Google Gemini, for people to review.

Each command's options: gemini-annotate COMMAND --help. The Gemini API key is
read from GEMINI_API_KEY (or GOOGLE_API_KEY), Label Studio's from
LABEL_STUDIO_API_KEY (or FiftyOne's FIFTYONE_LABELSTUDIO_API_KEY); neither is
ever an option.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence, get_args

from .config import (
    DEFAULT_LABEL_FIELD,
    DEFAULT_MODEL,
    TASK_NAMES,
    ApiKind,
    IfLabeledPolicy,
    ImageTransport,
    MaskFormChoice,
    MediaResolution,
    ThinkingLevel,
    UnknownLabelPolicy,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each command's ``handler`` default names its function
    in :mod:`gemini_annotate.cli_commands`, which :func:`main` imports once the options parse."""
    def choices(literal) -> list[str]:
        return list(get_args(literal))

    description, epilog = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(prog="gemini-annotate", description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_job_options(p: argparse.ArgumentParser) -> None:
        """The options describing a job, shared by annotate and estimate."""
        p.add_argument("dataset", help="the FiftyOne dataset's name")
        p.add_argument("--task", default="detect", choices=list(TASK_NAMES))
        p.add_argument("--classes", help='comma-separated class names, or JSON {"name": "description"}')
        p.add_argument("--multi-label", action="store_true", default=None,
                       help="classify: every class that applies (fo.Classifications)")
        p.add_argument("--confidence", action="store_true", default=None,
                       help="detect, segment, points: ask for a 0-1 confidence per object (ranks them; mAP)")
        p.add_argument("--consensus", type=int, metavar="N",
                       help="ask N times per image and fuse the answers: confidence from their agreement "
                            "(N requests per image)")
        p.add_argument("--escalate-to", metavar="MODEL",
                       help="cascade: send the samples the run's model was unsure about to this stronger model")
        p.add_argument("--escalate-below", type=float, metavar="C",
                       help="cascade: escalate a sample when a label most answers agree on has confidence < C")
        p.add_argument("--escalate-support", type=float, metavar="S",
                       help="cascade: escalate a sample when under this share of its proposed objects have a "
                            "majority of the answers (needs --consensus >= 2)")
        p.add_argument("--escalate-majority-only", action="store_true", default=None,
                       help="cascade: the samples not escalated keep only the objects most answers proposed")
        p.add_argument("--prompt", help="a prompt replacing the task's default; {field} names a sample field")
        p.add_argument("--class-descriptions", metavar="JSON",
                       help='what classes mean, {"name": "description"} (or give --classes as that JSON)')
        p.add_argument("--hint", dest="hints", action="append",
                       help="a note the prompt adds, e.g. a negative hint from reviews (repeatable)")
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
    p.add_argument("--requests-per-minute", type=int,
                   help="your tier's requests-per-minute quota: requests are paced to it (default: learned "
                        "from Gemini's 429s); each of --num-shards parts gets its share")
    p.add_argument("--tokens-per-minute", type=int,
                   help="your tier's input-tokens-per-minute quota, paced like --requests-per-minute")
    p.add_argument("--shard", type=int, help="run only this shard of the job (0-based)")
    p.add_argument("--num-shards", type=int, help="how many shards the job is split into")
    p.add_argument("--workers", type=int,
                   help="run the job in this many local processes (a shard each), when one core is the bound")
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
    p.set_defaults(handler="cmd_annotate")

    p = sub.add_parser("estimate", help="what a job would send and cost, before running it")
    add_job_options(p)
    p.add_argument("--if-labeled", choices=choices(IfLabeledPolicy),
                   help="count the samples a run with this policy would send")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(handler="cmd_estimate")

    p = sub.add_parser("demo", help="offline demo: the built-in emulator pre-annotates shipped images")
    p.add_argument("--name", help="the demo dataset's name (rebuilt on every run; default gemini-annotate-demo)")
    p.add_argument("--api", default="generate_content", choices=choices(ApiKind))
    p.add_argument("--app", action="store_true", help="open the result in the FiftyOne App")
    p.add_argument("--port", type=int, default=5151)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--remote", action="store_true", help="serve the App without opening a browser")
    p.set_defaults(handler="cmd_demo")

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
    p.add_argument("--noise-profile", help="model-like noise instead: perfect, pro, flash or lite (README); "
                                           "by-model: each request's model name picks lite, flash or pro")
    p.add_argument("--rate-limit", type=float, default=0.0, help="share of 429 answers")
    p.add_argument("--server-error", type=float, default=0.0, help="share of 500/503 answers")
    p.add_argument("--slow", type=float, default=0.0, help="share of very slow answers")
    p.add_argument("--truncate", type=float, default=0.0, help="share of truncated answers")
    p.add_argument("--retry-delay", type=float, default=1.0)
    p.add_argument("--quota-requests-per-minute", type=int,
                   help="a hidden quota enforced as Gemini does (429 with QuotaFailure and RetryInfo)")
    p.add_argument("--quota-tokens-per-minute", type=int, help="a hidden input-tokens-per-minute quota")
    p.add_argument("--quota-requests-per-day", type=int, help="a daily request quota (resets at midnight Pacific)")
    p.set_defaults(handler="cmd_emulator")

    p = sub.add_parser("runs", help="list, inspect or delete the gemini-annotate runs of a dataset")
    p.add_argument("dataset")
    p.add_argument("run", nargs="?", help="inspect (or delete) this run")
    p.add_argument("--delete", action="store_true", help="delete the run's record")
    p.add_argument("--delete-labels", action="store_true",
                   help="with --delete: also delete the fields it wrote (labels, outlines, status, reason, "
                        "reviewed, proposed)")
    p.set_defaults(handler="cmd_runs")

    p = sub.add_parser("files", help="File API uploads remembered for a dataset")
    p.add_argument("dataset")
    p.add_argument("--delete", action="store_true", help="delete them from the File API and forget them")
    p.add_argument("--base-url", help="the endpoint they were uploaded to (emulator, gateway)")
    p.set_defaults(handler="cmd_files")

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
    p.set_defaults(handler="cmd_review")

    p = sub.add_parser("promote", help="copy accepted, edited and added labels into a ground-truth field")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--to", default="ground_truth", help="the ground-truth field")
    p.add_argument("--view-tag")
    p.add_argument("--include-auto-accepted", action="store_true",
                   help="also promote auto-accepted labels, which no person checked")
    p.set_defaults(handler="cmd_promote")

    p = sub.add_parser("evaluate", help="precision and recall of the pre-annotations on reviewed samples")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--gt-field", help="default: the labels reviewers kept in the pre-annotation field")
    p.add_argument("--eval-key")
    p.add_argument("--iou", type=float, default=0.5, help="IoU an object match needs (not used for classifications)")
    p.add_argument("--view-tag")
    p.add_argument("--reliability-png", metavar="PATH",
                   help="also draw the reliability diagram (confidence vs what reviewers kept) to a PNG")
    p.set_defaults(handler="cmd_evaluate")

    p = sub.add_parser("compare", help="run candidate setups on reviewed samples: quality per cost, a recommendation")
    p.add_argument("dataset")
    p.add_argument("--candidate", action="append", default=[], metavar="KEY=VALUE,...",
                   help="a candidate's options, e.g. name=lite,model=gemini-2.5-flash-lite,media_resolution=low "
                        "(repeatable; or a JSON object)")
    p.add_argument("--candidates", metavar="FILE", help="a JSON file: a list of candidates (objects of options)")
    p.add_argument("--gt-field", help="the reference: a ground-truth field (default: --reference-field)")
    p.add_argument("--reference-field", help="the reference: the labels people kept on the reviewed samples of "
                                             f"this field (default {DEFAULT_LABEL_FIELD})")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="recommend the cheapest within this much quality of the best (default 0.02)")
    p.add_argument("--task", default="detect", choices=list(TASK_NAMES))
    p.add_argument("--classes", help="comma-separated, or JSON {\"name\": \"description\"} (default: the "
                                     "reference's classes)")
    p.add_argument("--prefix", default="compare_", help="each candidate writes into <prefix><name>")
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--base-url", help="send requests to this endpoint (emulator, gateway)")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--max-requests", type=int, help="each candidate stops (resumably) after this many requests")
    p.add_argument("--prices", help="a JSON file of prices per model overriding the built-in table")
    p.add_argument("--png", metavar="PATH", help="draw the Pareto plot of quality vs cost to a PNG")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--view-tag")
    p.set_defaults(handler="cmd_compare")

    p = sub.add_parser("calibrate", help="fit a run's confidences to what reviewers kept; later runs use the fit")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--run-key", help="the run whose confidences to fit (default: the field's latest)")
    p.add_argument("--apply", action="store_true",
                   help="also rewrite the field's confidences to the calibrated ones (originals kept)")
    p.add_argument("--view-tag")
    p.set_defaults(handler="cmd_calibrate")

    p = sub.add_parser("auto-accept", help="accept the labels Gemini is surest of, at a precision the reviews show")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--target-precision", type=float, default=0.95,
                   help="the precision auto-accepted labels must have (default 0.95)")
    p.add_argument("--confidence-level", type=float, default=0.95,
                   help="how sure the reviews must make that precision (default 0.95)")
    p.add_argument("--global-only", dest="per_class", action="store_false",
                   help="one threshold for all classes (default: per class where a class has enough reviews)")
    p.add_argument("--min-reviews", type=int,
                   help="reviewed labels a class needs for a threshold of its own (default: the fewest that "
                        "can show the target)")
    p.add_argument("--dry-run", action="store_true", help="report the thresholds, change nothing")
    p.add_argument("--view-tag", help="only auto-accept labels of samples with this tag")
    p.set_defaults(handler="cmd_auto_accept")

    p = sub.add_parser("audit", help="tag a stratified random sample of auto-accepted labels for people to check")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("-n", "--count", type=int, default=50, help="labels to draw (default 50)")
    p.add_argument("--seed", type=int, default=0, help="the random seed (the same seed draws the same labels)")
    p.add_argument("--tag", default="audit", help="the label tag of the drawn labels (default audit)")
    p.add_argument("--view-tag")
    p.set_defaults(handler="cmd_audit")

    p = sub.add_parser("audit-report", help="the precision of auto-accepted labels people checked in an audit")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--target-precision", type=float,
                   help="judge against this precision (default: the one the labels were auto-accepted for)")
    p.add_argument("--confidence-level", type=float, default=0.95, help="the intervals' level (default 0.95)")
    p.add_argument("--tag", default="audit")
    p.add_argument("--view-tag")
    p.set_defaults(handler="cmd_audit_report")

    p = sub.add_parser("review-queue", help="the unreviewed samples, the most expected mistakes first")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("-n", "--count", type=int, default=20, help="how many to print or tag (default 20)")
    p.add_argument("--tag", help="tag the first samples of the queue with this sample tag instead of printing them")
    p.add_argument("--view-tag")
    p.set_defaults(handler="cmd_review_queue")

    p = sub.add_parser("labelstudio-send", help="send pre-annotations to Label Studio for correction")
    p.add_argument("dataset")
    p.add_argument("--label-field", default=DEFAULT_LABEL_FIELD)
    p.add_argument("--anno-key", required=True, help="a name for this review round")
    p.add_argument("--url", required=True, help="Label Studio's URL")
    p.add_argument("--project-name")
    p.add_argument("--view-tag")
    p.set_defaults(handler="cmd_labelstudio_send")

    p = sub.add_parser("labelstudio-load", help="load the corrections of a review round from Label Studio")
    p.add_argument("dataset")
    p.add_argument("--anno-key", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--cleanup", action="store_true", help="delete the round's tasks from Label Studio afterwards")
    p.set_defaults(handler="cmd_labelstudio_load")

    p = sub.add_parser("plugin-install", help="link this plugin into FiftyOne's plugins directory")
    p.add_argument("--plugins-dir", help="default: fiftyone's plugins_dir setting")
    p.set_defaults(handler="cmd_plugin_install")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    commands = importlib.import_module(".cli_commands", __package__)  # loads FiftyOne: after parsing
    return commands.run(args)


if __name__ == "__main__":
    sys.exit(main())
