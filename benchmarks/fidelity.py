"""Fidelity of conversion: known labels → Gemini-style replies → this package's labels.

The emulator's oracle answers each request with the known labels of the image
it recognises, written in the form the request asks for (boxes, polygon masks,
PNG masks). The package converts the replies back through the real SDK and
pipeline, and this script compares what it stored with what is known:

- box edges: the largest error, in units of the image side (the 0–1000 grid
  allows 0.0005), and the mean box IoU;
- masks: the IoU of each instance mask, and of each outline (``fo.Polylines``),
  with the known mask, over objects at least 32 px a side. Both sides are
  drawn by code outside the package, so a mistake in the package is not
  repeated by the measure: instance masks by OpenCV, stretched over their
  box as the App draws them (each pixel takes the mask cell under its
  centre), outlines by pycocotools. The mask IoU is also given with both
  sides drawn by FiftyOne's ``Detection.to_segmentation`` ("FO draw"), which
  floors each box to whole pixels and resizes the mask bilinearly: a mask
  may land a pixel off, costing small objects IoU that is the drawing's,
  not the package's;
- FiftyOne's own ``evaluate_detections(..., use_masks=True)``: precision and
  recall at IoU 0.5, recall at IoU 0.9 (Gemini gives no confidence, so no mAP).

Known labels: the six COCO images of ``tests/data`` (instance masks) and
synthetic images with exactly known shapes; each also as EXIF-rotated copies in
all eight orientations (pixels stored turned, the EXIF tag turning them back),
which must give the same numbers.

    python benchmarks/fidelity.py                 # everything
    python benchmarks/fidelity.py --orientations 1 6 --forms png
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")

import cv2  # noqa: E402
import fiftyone as fo  # noqa: E402
import numpy as np  # noqa: E402
from PIL import ExifTags, Image  # noqa: E402
from pycocotools import mask as coco_mask  # noqa: E402

import gemini_annotate  # noqa: E402
from gemini_annotate.emulator import EmulatorServer, LabelIndex, Oracle  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO_DIR = os.path.join(REPO, "tests", "data", "coco_val_tiny")

FORMS = {
    "boxes": dict(task="detect"),
    "polygon": dict(task="segment", mask_form="polygon"),
    "png": dict(task="segment", mask_form="png"),
}
ORIENTATIONS = (1, 2, 3, 4, 5, 6, 7, 8)
MIN_SIDE = 32
"""Mask IoUs are averaged over objects at least this many pixels a side."""
QUANTIZATION_BOUND = 0.0005

# For each EXIF orientation, what turns upright pixels into the pixels a camera
# with that orientation stores: the inverse of the transpose that turns them
# upright (each is its own inverse but the two quarter turns, 6 and 8).
_TO_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270,
}


@dataclass
class FidelityResult:
    """What one run over one dataset in one reply form gave back."""

    dataset: str
    form: str
    orientation: int
    objects: int = 0
    matched: int = 0
    failed_samples: int = 0
    max_edge_error: float = 0.0
    edges_within_bound: bool = True
    box_iou: float = 0.0
    mask_objects: int = 0
    mask_iou: Optional[float] = None
    mask_iou_min: Optional[float] = None
    mask_iou_fiftyone: Optional[float] = None
    outline_iou: Optional[float] = None
    eval_precision: Optional[float] = None
    eval_recall: Optional[float] = None
    eval_recall_90: Optional[float] = None
    low_iou: list = field(default_factory=list)


# datasets


def load_coco(name: Optional[str] = None) -> fo.Dataset:
    """The six COCO images with ``ground_truth`` boxes and instance masks."""
    dataset = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset,
        data_path=os.path.join(COCO_DIR, "images"),
        labels_path=os.path.join(COCO_DIR, "labels.json"),
        label_types=["segmentations"],
        label_field="ground_truth",
        name=name or _unique("fidelity-coco"),
        progress=False,
    )
    dataset.compute_metadata(progress=False)
    return dataset


SHAPES = ("rectangle", "ellipse", "triangle", "star", "rotated rectangle")


def make_synthetic(directory: str, count: int = 6, seed: int = 0, name: Optional[str] = None,
                   size: tuple[int, int] = (640, 480)) -> fo.Dataset:
    """Images of filled shapes whose masks are known to the pixel, as ``ground_truth``.

    Each image has a smooth random background and 4–7 shapes of 10–260 px that
    do not overlap; each shape's mask is exactly the pixels painted.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    width, height = size
    samples = []
    for i in range(count):
        low = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
        taken = np.zeros((height, width), bool)
        detections = []
        for _ in range(40):
            if len(detections) >= rng.integers(4, 8):
                break
            label = str(rng.choice(SHAPES))
            mask = _shape_mask(label, rng, width, height)
            if mask is None or (mask & cv2.dilate(taken.astype(np.uint8), np.ones((5, 5))).astype(bool)).any():
                continue
            taken |= mask
            image[mask] = rng.integers(0, 256, 3)
            detections.append(fo.Detection.from_mask(mask, label=label))
        path = os.path.join(directory, f"synthetic-{seed}-{i}.png")
        Image.fromarray(image).save(path)
        samples.append(fo.Sample(filepath=path, ground_truth=fo.Detections(detections=detections)))
    dataset = fo.Dataset(name or _unique("fidelity-synthetic"))
    dataset.add_samples(samples, progress=False)
    dataset.compute_metadata(progress=False)
    return dataset


def _shape_mask(label: str, rng: np.random.Generator, width: int, height: int) -> Optional[np.ndarray]:
    side = int(rng.integers(10, 260))
    cx, cy = int(rng.integers(side // 2 + 2, width - side // 2 - 2)), int(rng.integers(2 + side // 2, max(3 + side // 2, height - side // 2 - 2)))
    canvas = np.zeros((height, width), np.uint8)
    if label == "rectangle":
        w, h = side, int(side * rng.uniform(0.4, 1.0))
        cv2.rectangle(canvas, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), 1, -1)
    elif label == "ellipse":
        cv2.ellipse(canvas, (cx, cy), (side // 2, int(side * rng.uniform(0.2, 0.5))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif label == "rotated rectangle":
        box = cv2.boxPoints(((cx, cy), (side, side * rng.uniform(0.3, 0.8)), float(rng.uniform(0, 90))))
        cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 1)
    else:
        corners = 3 if label == "triangle" else 10
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners)) if corners == 3 else np.linspace(0, 2 * np.pi, corners, endpoint=False)
        radii = np.full(corners, side / 2) if corners == 3 else np.where(np.arange(corners) % 2, side / 4, side / 2)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    mask = canvas.astype(bool)
    ys, xs = np.nonzero(mask)
    if len(xs) < 10 or len(xs) < 0.25 * np.ptp(xs + 1) * np.ptp(ys + 1):  # no slivers
        return None
    if xs.min() == 0 or ys.min() == 0 or xs.max() >= width - 1 or ys.max() >= height - 1:
        return None
    return mask


def exif_rotated_copy(dataset: fo.Dataset, orientation: int, directory: str,
                      name: Optional[str] = None) -> fo.Dataset:
    """A copy whose files store the pixels turned, with an EXIF tag that turns them back.

    Shown with the orientation applied, each copy looks exactly like its
    original, so the original's ``ground_truth`` is the copy's ground truth.
    JPEG originals are re-saved as JPEG (quality 95), others as PNG (lossless,
    its EXIF in an ``eXIf`` chunk).
    """
    os.makedirs(directory, exist_ok=True)
    samples = []
    for sample in dataset.select_fields("ground_truth"):
        with Image.open(sample.filepath) as img:
            upright = img.convert("RGB")
            is_jpeg = img.format == "JPEG"
        stored = upright.transpose(_TO_STORED[orientation]) if orientation != 1 else upright
        exif = Image.Exif()
        exif[0x0112] = orientation
        stem = os.path.splitext(os.path.basename(sample.filepath))[0]
        path = os.path.join(directory, f"{stem}-o{orientation}.{'jpg' if is_jpeg else 'png'}")
        if is_jpeg:
            stored.save(path, "JPEG", quality=95, exif=exif)
        else:
            stored.save(path, "PNG", exif=exif)
        samples.append(fo.Sample(filepath=path, ground_truth=sample.ground_truth.copy()))
    copy = fo.Dataset(name or _unique(f"fidelity-o{orientation}"))
    copy.add_samples(samples, progress=False)
    return copy


# drawing, with no code of the package


def shown_size(path: str) -> tuple[int, int]:
    """A JPEG or PNG file's ``(width, height)`` as the App shows it: turned by its EXIF orientation."""
    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def mask_on_frame(mask: np.ndarray, bounding_box: Sequence[float], frame: tuple[int, int]) -> np.ndarray:
    """An instance mask drawn by OpenCV on a ``(width, height)`` frame, stretched over its relative box.

    Each frame pixel takes the mask cell under its centre (nearest neighbour),
    as the App draws a mask over its box. A cell edge exactly on a pixel
    centre is a tie either side of which is right (odd 0–1000 edges on the
    500-px-wide COCO images): OpenCV and the package may break it apart,
    moving that mask a pixel.
    """
    width, height = frame
    mask = np.asarray(mask, dtype=np.uint8)
    x, y, box_width, box_height = bounding_box
    if box_width <= 0 or box_height <= 0 or mask.size == 0:
        return np.zeros((height, width), dtype=bool)
    # frame pixel c has its centre at c + 0.5 in pixels; OpenCV puts the centre
    # of mask cell j at j, so the cell spans [j - 0.5, j + 0.5)
    sx = mask.shape[1] / (box_width * width)
    sy = mask.shape[0] / (box_height * height)
    frame_to_mask = np.array([[sx, 0.0, (0.5 - x * width) * sx - 0.5],
                              [0.0, sy, (0.5 - y * height) * sy - 0.5]])
    drawn = cv2.warpAffine(mask, frame_to_mask, (width, height),
                           flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return drawn.astype(bool)


def outline_on_frame(shapes: Sequence[Sequence[Sequence[float]]], frame: tuple[int, int]) -> np.ndarray:
    """Closed outlines of relative ``(x, y)`` points, filled by pycocotools on a ``(width, height)`` frame.

    pycocotools is the rasteriser COCO's own polygon masks are made with; its
    pixel ``i`` covers ``[i, i + 1)``, as in FiftyOne.
    """
    width, height = frame
    polygons = [[c for x, y in shape for c in (x * width, y * height)] for shape in shapes if len(shape) >= 3]
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))).astype(bool)


def drawn_by_fiftyone(detection: fo.Detection, frame: tuple[int, int]) -> np.ndarray:
    """A detection's instance mask as FiftyOne's ``to_segmentation`` draws it on a ``(width, height)`` frame."""
    return detection.to_segmentation(frame_size=frame, target=1).mask.astype(bool)


# measuring


def annotate_with_oracle(dataset: fo.Dataset, form: str, label_field: str, **options) -> gemini_annotate.RunSummary:
    """Runs the package on ``dataset`` against an oracle answering from its ``ground_truth``."""
    oracle = Oracle(LabelIndex.from_samples(dataset, "ground_truth"))
    with EmulatorServer(oracle) as server:
        return gemini_annotate.annotate(
            dataset, label_field=label_field, base_url=server.url, api_key="emulator",
            **FORMS[form], **options,
        )


def measure(dataset: fo.Dataset, form: str, *, orientation: int = 1, dataset_label: str = "",
            evaluate: bool = True, **options) -> FidelityResult:
    """Annotates a dataset in one reply form and compares the result with its ground truth."""
    field_name = f"fid_{form}"
    summary = annotate_with_oracle(dataset, form, field_name, **options)
    result = FidelityResult(dataset_label or dataset.name, form, orientation,
                            failed_samples=summary.failed)
    box_ious, mask_ious, fiftyone_ious, outline_ious, edge_errors = [], [], [], [], []
    polylines_field = f"{field_name}_polylines"
    fields = ["ground_truth", field_name] + ([polylines_field] if form != "boxes" else [])
    rows = dataset.select_fields(fields)
    for sample in rows:
        frame = shown_size(sample.filepath)
        gts = [gt for gt in sample.ground_truth.detections if not gt.get_attribute_value("iscrowd", False)] \
            if sample.ground_truth else []
        preds = list(sample[field_name].detections) if sample[field_name] else []
        outlines = {p.instance.id: p for p in sample[polylines_field].polylines} \
            if form != "boxes" and sample[polylines_field] else {}
        result.objects += len(gts)
        for gt, pred in _match(gts, preds):
            result.matched += 1
            edge_errors.append(_edge_error(gt.bounding_box, pred.bounding_box))
            box_ious.append(_box_iou(gt.bounding_box, pred.bounding_box))
            w, h = gt.bounding_box[2] * frame[0], gt.bounding_box[3] * frame[1]
            if form == "boxes" or min(w, h) < MIN_SIDE or gt.mask is None:
                continue
            truth = mask_on_frame(gt.mask, gt.bounding_box, frame)
            iou = _iou(truth, mask_on_frame(pred.mask, pred.bounding_box, frame))
            mask_ious.append(iou)
            fiftyone_ious.append(_iou(drawn_by_fiftyone(gt, frame), drawn_by_fiftyone(pred, frame)))
            if iou < 0.9:
                result.low_iou.append((os.path.basename(sample.filepath), gt.label, round(w), round(h), round(iou, 3)))
            outline = outlines.get(pred.instance.id)
            if outline is not None:
                outline_ious.append(_iou(truth, outline_on_frame(outline.points, frame)))
    result.max_edge_error = max(edge_errors, default=0.0)
    result.edges_within_bound = result.max_edge_error <= QUANTIZATION_BOUND + 1e-9
    result.box_iou = float(np.mean(box_ious)) if box_ious else 0.0
    result.mask_objects = len(mask_ious)
    if mask_ious:
        result.mask_iou, result.mask_iou_min = float(np.mean(mask_ious)), float(np.min(mask_ious))
        result.mask_iou_fiftyone = float(np.mean(fiftyone_ious))
    if outline_ious:
        result.outline_iou = float(np.mean(outline_ious))
    if evaluate:
        result.eval_precision, result.eval_recall = _evaluate(dataset, field_name, form, 0.5)
        result.eval_recall_90 = _evaluate(dataset, field_name, form, 0.9)[1]
    return result


def _evaluate(dataset: fo.Dataset, field_name: str, form: str, iou: float) -> tuple[float, float]:
    """Precision and recall of FiftyOne's COCO-style evaluation (masks for segmentations).

    Gemini gives no calibrated confidence, so there is no mAP to compute.
    """
    eval_key = f"ev_{form}_{round(iou * 100)}"
    evaluation = dataset.evaluate_detections(
        field_name, gt_field="ground_truth", eval_key=eval_key, method="coco", iou=iou,
        use_masks=form != "boxes", iscrowd="iscrowd", progress=False,
    )
    metrics = evaluation.metrics()
    dataset.delete_evaluation(eval_key)
    return metrics["precision"], metrics["recall"]


def _match(gts: Sequence[fo.Detection], preds: Sequence[fo.Detection]) -> Iterable[tuple]:
    """Pairs each known object with the same-label prediction whose box overlaps it most."""
    free = list(preds)
    for gt in gts:
        candidates = [p for p in free if p.label == gt.label]
        if not candidates:
            continue
        best = max(candidates, key=lambda p: _box_iou(gt.bounding_box, p.bounding_box))
        if _box_iou(gt.bounding_box, best.bounding_box) > 0.5:
            free.remove(best)
            yield gt, best


def _edges(box: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return x, y, x + w, y + h


def _edge_error(a: Sequence[float], b: Sequence[float]) -> float:
    return max(abs(p - q) for p, q in zip(_edges(a), _edges(b)))


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax0, ay0, ax1, ay1 = _edges(a)
    bx0, by0, bx1, by1 = _edges(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# the report


def run(forms: Sequence[str] = tuple(FORMS), orientations: Sequence[int] = ORIENTATIONS,
        synthetic: int = 6, max_image_side: Optional[int] = None) -> list[FidelityResult]:
    """Measures every form on the COCO and synthetic sets and their EXIF-rotated copies."""
    workdir = tempfile.mkdtemp(prefix="gemini-fidelity-")
    made: list[fo.Dataset] = []
    results = []
    options = {"max_image_side": max_image_side} if max_image_side else {}
    try:
        originals = {"coco": load_coco(), "synthetic": make_synthetic(os.path.join(workdir, "synthetic"), synthetic)}
        made += originals.values()
        for orientation in orientations:
            for label, original in originals.items():
                dataset = original if orientation == 1 else exif_rotated_copy(
                    original, orientation, os.path.join(workdir, f"{label}-o{orientation}"))
                if dataset is not original:
                    made.append(dataset)
                for form in forms:
                    results.append(measure(dataset, form, orientation=orientation,
                                           dataset_label=label, **options))
    finally:
        for dataset in made:
            if fo.dataset_exists(dataset.name):
                dataset.delete()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def format_table(results: Sequence[FidelityResult]) -> str:
    def num(value: Optional[float], digits: int = 4) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    header = (f"{'set':<10} {'form':<8} {'exif':>4} {'objects':>7} {'matched':>7} {'failed':>6} "
              f"{'max edge err':>12} {'box IoU':>7} {'n≥32px':>6} {'mask IoU':>8} {'min':>6} "
              f"{'FO draw':>7} {'outline':>7} {'P@.5':>6} {'R@.5':>6} {'R@.9':>6}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.dataset:<10} {r.form:<8} {r.orientation:>4} {r.objects:>7} {r.matched:>7} "
            f"{r.failed_samples:>6} {r.max_edge_error:>12.6f} {r.box_iou:>7.4f} {r.mask_objects:>6} "
            f"{num(r.mask_iou):>8} {num(r.mask_iou_min, 3):>6} {num(r.mask_iou_fiftyone):>7} "
            f"{num(r.outline_iou):>7} "
            f"{num(r.eval_precision, 3):>6} {num(r.eval_recall, 3):>6} {num(r.eval_recall_90, 3):>6}"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forms", nargs="+", choices=list(FORMS), default=list(FORMS))
    parser.add_argument("--orientations", nargs="+", type=int, choices=ORIENTATIONS, default=list(ORIENTATIONS))
    parser.add_argument("--synthetic", type=int, default=6, help="synthetic images to generate")
    parser.add_argument("--max-image-side", type=int, help="downscale images to this side before sending")
    args = parser.parse_args(argv)
    results = run(args.forms, args.orientations, args.synthetic, args.max_image_side)
    print(format_table(results))
    low = [(r.dataset, r.form, r.orientation, *item) for r in results for item in r.low_iou]
    if low:
        print(f"\nobjects ≥{MIN_SIDE} px with mask IoU < 0.9 (set, form, exif, file, label, w, h, IoU):")
        for row in low[:40]:
            print("  ", row)
    bound_ok = all(r.edges_within_bound for r in results)
    masks_ok = all(r.mask_iou is None or min(r.mask_iou, r.mask_iou_fiftyone) >= 0.95 for r in results)
    print(f"\nevery box edge within {QUANTIZATION_BOUND} of the image side: {bound_ok}")
    print(f"mean mask IoU ≥ 0.95 (objects ≥ {MIN_SIDE} px, drawn by OpenCV and by FiftyOne) "
          f"in every form and orientation: {masks_ok}")
    return 0 if bound_ok and masks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
