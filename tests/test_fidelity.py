"""Fidelity: known labels → oracle replies in each form → stored labels, compared.

Uses ``benchmarks/fidelity.py`` (the harness that prints the full table) on the
COCO images and synthetic shapes, also as EXIF-rotated copies in all eight
orientations, and holds the numbers to what the project promises:

- every box edge within the 0–1000 quantisation bound (0.0005 of the side);
- mean mask IoU ≥ 0.95 over objects at least 32 px a side, in both mask forms,
  with the masks drawn by the harness (OpenCV, pycocotools) and again by
  FiftyOne, never by this package, so a mistake it makes is not measured away;
- the same numbers on every EXIF-rotated copy;
- resizing before sending moves no label.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

_HARNESS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "fidelity.py")
_spec = importlib.util.spec_from_file_location("fidelity_harness", _HARNESS)
fidelity = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fidelity)

SYNTHETIC_IMAGES = 4


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """The COCO set and a synthetic set, each with ``ground_truth`` masks."""
    made = {"coco": fidelity.load_coco(),
            "synthetic": fidelity.make_synthetic(str(tmp_path_factory.mktemp("synthetic")), SYNTHETIC_IMAGES)}
    yield made
    for dataset in made.values():
        dataset.delete()


@pytest.fixture(scope="module")
def upright_results(originals):
    """Results of every form on the original (orientation 1) files, evaluation included."""
    return {(name, form): fidelity.measure(dataset, form, dataset_label=name)
            for name, dataset in originals.items() for form in fidelity.FORMS}


def assert_promises_kept(result):
    label = f"{result.dataset}/{result.form}/exif {result.orientation}"
    assert result.failed_samples == 0, label
    assert result.matched == result.objects, label
    assert result.edges_within_bound, f"{label}: box edge off by {result.max_edge_error:.6f}"
    if result.form != "boxes":
        assert result.mask_objects > 0, label
        assert result.mask_iou >= 0.95, f"{label}: mean mask IoU {result.mask_iou:.4f}"
        # FiftyOne's drawing floors boxes to whole pixels, costing 0.01–0.03
        # (measured 0.968–0.983), and the promise holds even so
        assert result.mask_iou_fiftyone >= 0.95, f"{label}: mean mask IoU drawn by FiftyOne {result.mask_iou_fiftyone:.4f}"
        assert result.outline_iou >= 0.95, f"{label}: mean outline IoU {result.outline_iou:.4f}"


@pytest.mark.parametrize("form", list(fidelity.FORMS))
@pytest.mark.parametrize("name", ["coco", "synthetic"])
def test_every_form_recovers_the_known_labels(upright_results, name, form):
    result = upright_results[(name, form)]

    assert_promises_kept(result)
    # FiftyOne's own evaluation (dense mask IoUs for the mask forms) finds them all
    assert result.eval_precision >= 0.99 and result.eval_recall >= 0.99


def test_png_masks_are_recovered_to_the_pixel_on_synthetic_shapes(upright_results):
    assert upright_results[("synthetic", "png")].mask_iou >= 0.999


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_rotated_copies_give_the_same_numbers(originals, upright_results, tmp_path, orientation):
    for name, original in originals.items():
        copy = fidelity.exif_rotated_copy(original, orientation, str(tmp_path / name))
        try:
            for form in ("polygon", "png"):
                result = fidelity.measure(copy, form, orientation=orientation, dataset_label=name, evaluate=False)
                upright = upright_results[(name, form)]
                assert_promises_kept(result)
                assert result.max_edge_error == pytest.approx(upright.max_edge_error, abs=1e-9)
                assert result.mask_iou == pytest.approx(upright.mask_iou, abs=1e-3)
        finally:
            copy.delete()


def test_resizing_before_sending_moves_no_label(originals, upright_results):
    for form in ("boxes", "polygon"):
        result = fidelity.measure(originals["coco"], form, dataset_label="coco", evaluate=False, max_image_side=256)

        assert result.edges_within_bound and result.matched == result.objects
        if form == "polygon":  # polygons do not depend on the size Gemini saw
            assert result.mask_iou == pytest.approx(upright_results[("coco", "polygon")].mask_iou, abs=1e-3)
