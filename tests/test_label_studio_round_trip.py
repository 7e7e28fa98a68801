"""Pre-annotations out to a real Label Studio and a person's corrections back.

Label Studio is installed from PyPI into a virtualenv of its own
(tests/labelstudio/install.sh) and started on 127.0.0.1 for this module; the
1.x client FiftyOne's integration speaks goes into this Python
(tests/labelstudio/install_sdk.sh). The
"person" works through Label Studio's REST API, submitting annotations the way
its editor does: the predicted regions, changed, removed or added to.
"""

from __future__ import annotations

import copy
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid

import cv2
import numpy as np
import pytest
import requests

import gemini_annotate
from gemini_annotate import labelstudio_convert, review
from gemini_annotate.annotation_tool import load_corrections, send_for_review

pytestmark = pytest.mark.labelstudio

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
INSTALL = os.path.join(TESTS_DIR, "labelstudio", "install.sh")
INSTALL_SDK = os.path.join(TESTS_DIR, "labelstudio", "install_sdk.sh")
INSTALL_LOCK = "/tmp/gemini-annotate-install.lock"
"""The lock conftest's Chromium install holds too: parallel workers install one at a time."""
STARTUP_TIMEOUT = 240.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A Label Studio server on 127.0.0.1: (url, api token).

    ``LABEL_STUDIO_TEST_URL`` and ``LABEL_STUDIO_TEST_TOKEN`` name a running
    server to use instead (it takes minutes to start on a loaded machine).
    """
    subprocess.run(["flock", INSTALL_LOCK, "bash", INSTALL_SDK, sys.executable], check=True, capture_output=True, timeout=1200)
    if os.environ.get("LABEL_STUDIO_TEST_URL") and os.environ.get("LABEL_STUDIO_TEST_TOKEN"):
        yield os.environ["LABEL_STUDIO_TEST_URL"], os.environ["LABEL_STUDIO_TEST_TOKEN"]
        return
    venv = os.environ.get("LABEL_STUDIO_VENV", os.path.expanduser("~/.cache/gemini-annotate/label-studio"))
    subprocess.run(["flock", INSTALL_LOCK, "bash", INSTALL, venv], check=True, capture_output=True, timeout=1200)
    data_dir = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    token = secrets.token_hex(20)
    env = dict(os.environ,
               LABEL_STUDIO_USERNAME="reviewer@example.com", LABEL_STUDIO_PASSWORD=secrets.token_hex(8),
               LABEL_STUDIO_USER_TOKEN=token, LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
               LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true")
    log = open(data_dir / "server.log", "w")
    server = subprocess.Popen(
        [os.path.join(venv, "bin", "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
         "-p", str(port), "--data-dir", str(data_dir)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                if requests.get(f"{url}/api/version", timeout=10).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # still starting; a loaded machine answers its first requests slowly
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Label Studio did not start:\n{(data_dir / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


class Person:
    """Works on Label Studio tasks through its REST API, as its editor does."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def task(self, task_id: int) -> dict:
        response = self.session.get(f"{self.url}/api/tasks/{task_id}", timeout=30)
        response.raise_for_status()
        return response.json()

    def submit(self, task_id: int, result: list[dict]) -> None:
        response = self.session.post(f"{self.url}/api/tasks/{task_id}/annotations",
                                     json={"result": result}, timeout=30)
        response.raise_for_status()


def test_corrections_come_back_with_review_statuses(coco_dataset, emulator, oracle_for, label_studio):
    url, token = label_studio
    emulator(oracle_for(coco_dataset))
    view = coco_dataset.limit(3)
    gemini_annotate.annotate(view, label_field="gemini")
    anno_key = f"review_{uuid.uuid4().hex[:8]}"

    results = send_for_review(view, "gemini", anno_key, url=url, api_key=token,
                              project_name=f"gemini-annotate-{anno_key}")

    person = Person(url, token)
    task_of = {sample_id: task_id for task_id, sample_id in results.uploaded_tasks.items()}
    edited_sample, accepted_sample, untouched_sample = view.values("id")

    # sample 1: widen one box, delete another, draw a missed object
    task = person.task(task_of[edited_sample])
    regions = copy.deepcopy(task["predictions"][0]["result"])
    assert len(regions) >= 3
    edited, removed = regions[0], regions[1]
    edited["value"]["width"] *= 1.2
    added = copy.deepcopy(regions[2])
    added["id"] = "drawn1By2Hand"
    added["value"].update(x=1.0, y=1.0, width=8.0, height=8.0, rectanglelabels=["kite"])
    person.submit(task["id"], [r for r in regions if r is not removed] + [added])
    # sample 2: everything Gemini proposed is right
    task = person.task(task_of[accepted_sample])
    person.submit(task["id"], task["predictions"][0]["result"])
    # sample 3: not opened

    counts = load_corrections(coco_dataset, anno_key, url=url, api_key=token)

    assert (counts.edited, counts.rejected, counts.added, counts.reviewed_samples) == (1, 1, 1, 2)
    labels = {d.id: d for d in coco_dataset[edited_sample].gemini.detections}
    assert labels[edited["id"]].review == "edited"
    assert labels[edited["id"]].bounding_box[2] == pytest.approx(edited["value"]["width"] / 100, abs=1e-6)
    assert labels[removed["id"]].review == "rejected"  # kept, to count against Gemini
    new = [d for d in labels.values() if d.label == "kite"]
    assert len(new) == 1 and new[0].review == "added"
    others = [d for i, d in labels.items() if i not in (edited["id"], removed["id"]) and d.label != "kite"]
    assert others and all(d.review == "accepted" for d in others)
    assert {d.review for d in coco_dataset[accepted_sample].gemini.detections} == {"accepted"}
    assert {d.review for d in coco_dataset[untouched_sample].gemini.detections} == {"unreviewed"}
    assert coco_dataset[untouched_sample].gemini_reviewed is None
    # Gemini's own version of the edited box is kept for evaluation
    proposed = {d.id: d for d in coco_dataset[edited_sample].gemini_proposed.detections}
    assert proposed[edited["id"]].bounding_box[2] == pytest.approx(edited["value"]["width"] / 1.2 / 100, abs=1e-6)

    report = review.evaluate(coco_dataset, "gemini")
    assert report.samples == 2
    assert (report.false_positives, report.false_negatives) == (1, 1)  # the rejected box, the kite

    # a later run replacing unreviewed labels leaves every reviewed one as it is
    reviewed = {d.id: (d.label, d.bounding_box, d.review) for d in coco_dataset[edited_sample].gemini.detections}
    gemini_annotate.annotate(view, label_field="gemini", if_labeled="replace_unreviewed")
    after = {d.id: (d.label, d.bounding_box, d.review) for d in coco_dataset[edited_sample].gemini.detections}
    assert after == reviewed


# every label type: one run per type, five samples; the person leaves sample 0 as
# Gemini made it, changes one label on sample 1, deletes one on sample 2, draws one
# on sample 3 (where a class or a text had nothing yet) and never opens sample 4

DRAWN_ID = "drawn1By2Hand"
PERSON_TEXT = "A person's own words about this photograph."


@pytest.mark.parametrize("kind, run, field", [
    ("boxes", dict(task="detect"), "gemini"),
    ("masks", dict(task="segment"), "gemini"),
    ("polygons", dict(task="segment"), "gemini_polylines"),
    ("points", dict(task="points"), "gemini"),
    ("class", dict(task="classify", classes=["indoor", "outdoor"]), "gemini"),
    ("classes", dict(task="classify", multi_label=True), "gemini"),
    ("text", dict(task="caption"), "gemini"),
    ("text", dict(task="vqa", question="What kind of scene is this?"), "gemini"),
], ids=["boxes", "masks", "polygons", "points", "class", "classes", "caption", "vqa"])
def test_each_label_type_comes_back_with_review_statuses_and_its_geometry(
        kind, run, field, described_dataset, described_oracle, emulator, label_studio):
    url, token = label_studio
    dataset = described_dataset
    emulator(described_oracle(dataset))
    view = dataset.limit(5)
    if run.get("multi_label"):
        run = dict(run, classes=sorted(set(view.distinct("ground_truth.detections.label"))))
    gemini_annotate.annotate(view, label_field="gemini", **run)
    ids = view.values("id")
    if kind in ("class", "text"):  # Gemini gave nothing for sample 3: the person writes it
        empty = dataset[ids[3]]
        empty[field] = None
        empty.save()
    before = dict(zip(ids, view.values(field)))
    assert all(before[i] for i in ids[:3] + ids[4:]), "the run must label the samples the person works on"
    anno_key = f"review_{uuid.uuid4().hex[:8]}"

    results = send_for_review(view, field, anno_key, url=url, api_key=token,
                              project_name=f"gemini-annotate-{kind}-{anno_key}")

    assert dataset.get_annotation_info(anno_key).config.kind == kind
    person = Person(url, token)
    task_of = {sample_id: task_id for task_id, sample_id in results.uploaded_tasks.items()}
    acted = {}  # sample → (label id acted on, the region the person left)
    classes = results.config.label_schema[field].get("classes") or []
    for number, sample_id in enumerate(ids[:4]):
        task = person.task(task_of[sample_id])
        regions = copy.deepcopy(task["predictions"][0]["result"]) if task["predictions"] else []
        if number == 1:
            region = regions[0]
            _change(region, kind, dataset[sample_id].metadata, classes)
            acted[sample_id] = (_label_id(region), region)
        elif number == 2:
            gone = _label_id(regions[0])
            regions = [r for r in regions if _label_id(r) != gone]
            acted[sample_id] = (gone, None)
        elif number == 3:
            region = _drawn(kind, field, regions, classes, dataset[sample_id].metadata)
            regions.append(region)
            acted[sample_id] = (None, region)
        person.submit(task["id"], regions)

    counts = load_corrections(dataset, anno_key, url=url, api_key=token)

    if kind == "text":
        _check_text(dataset, field, ids, before, counts)
        return
    expected = dict(accepted=0, edited=1, rejected=1, added=1)
    for sample_id in ids[:4]:
        labels = {label.id: label for label in review.labels_in(dataset[sample_id][field])}
        old = {label.id: label for label in review.labels_in(before[sample_id])}
        label_id, region = acted.get(sample_id, (None, None))
        new = [i for i in labels if i not in old]
        assert len(new) == (1 if sample_id == ids[3] else 0)
        for i, label in labels.items():
            if i in new:
                assert label.review == "added"
                _assert_geometry_is(label, region, kind, dataset[sample_id].metadata)
            elif i == label_id and region is not None:
                assert label.review == "edited"
                _assert_geometry_is(label, region, kind, dataset[sample_id].metadata)
            elif i == label_id:
                assert label.review == "rejected"
                assert _iou(label, old[i], kind, dataset[sample_id].metadata) == 1.0  # Gemini's, kept to count
            else:
                assert label.review == "accepted", (i, label)
                assert _iou(label, old[i], kind, dataset[sample_id].metadata) >= 0.99
                expected["accepted"] += 1
    assert {label.review for label in review.labels_in(dataset[ids[4]][field])} == {"unreviewed"}
    assert (counts.accepted, counts.edited, counts.rejected, counts.added, counts.reviewed_samples) == (
        expected["accepted"], expected["edited"], expected["rejected"], expected["added"], 4)
    changed_id = acted[ids[1]][0]
    proposed = {label.id: label for label in review.labels_in(dataset[ids[1]][f"{field}_proposed"])}
    gemini = {label.id: label for label in review.labels_in(before[ids[1]])}
    assert _iou(proposed[changed_id], gemini[changed_id], kind, dataset[ids[1]].metadata) == 1.0  # kept for evaluation


def _label_id(region: dict) -> str:
    return str(region["id"]).split("_")[0]


def _change(region: dict, kind: str, metadata, classes: list[str]) -> None:
    """What a person does to a label in the editor, by kind."""
    value = region["value"]
    if kind == "boxes":
        value["width"] *= 0.8
    elif kind == "masks":
        size = (metadata.width, metadata.height)
        mask = labelstudio_convert.decode_mask(value["rle"], size)
        rows, columns = np.nonzero(mask)
        mask[:, : (columns.min() + columns.max()) // 2] = False  # erase the left half with the eraser
        value["rle"] = labelstudio_convert.encode_mask(mask)
    elif kind == "polygons":
        x, y = value["points"][0]
        value["points"][0] = [min(x + 3.0, 100.0) if x < 97 else x - 3.0, y]
    elif kind == "points":
        value["x"] = value["x"] + 3.0 if value["x"] < 97 else value["x"] - 3.0
    elif kind in ("class", "classes"):
        value["choices"] = [next(c for c in classes if c != value["choices"][0])]
    elif kind == "text":
        value["text"] = [PERSON_TEXT]


def _drawn(kind: str, field: str, regions: list[dict], classes: list[str], metadata) -> dict:
    """A region a person draws (or a class or text they add), as the editor submits it."""
    cls = classes[0] if classes else "person"
    base = {"id": DRAWN_ID, "from_name": field, "to_name": "image", "original_width": metadata.width,
            "original_height": metadata.height, "image_rotation": 0}
    if kind == "boxes":
        return dict(base, type="rectanglelabels",
                    value={"x": 1.0, "y": 1.0, "width": 8.0, "height": 8.0, "rotation": 0, "rectanglelabels": [cls]})
    if kind == "masks":
        mask = np.zeros((metadata.height, metadata.width), bool)
        mask[5:45, 10:70] = True
        return dict(base, type="brushlabels",
                    value={"format": "rle", "rle": labelstudio_convert.encode_mask(mask), "brushlabels": [cls]})
    if kind == "polygons":
        return dict(base, type="polygonlabels",
                    value={"points": [[2.0, 2.0], [12.0, 2.0], [7.0, 12.0]], "closed": True, "polygonlabels": [cls]})
    if kind == "points":
        return dict(base, type="keypointlabels", value={"x": 3.0, "y": 4.0, "width": 0.5, "keypointlabels": [cls]})
    if kind == "class":
        return dict(base, type="choices", value={"choices": ["indoor"]})
    if kind == "classes":
        taken = {r["value"]["choices"][0] for r in regions}
        return dict(base, from_name=f"{field}_{len(regions) + 1}", type="choices",
                    value={"choices": [next(c for c in classes if c not in taken)]})
    return dict(base, type="textarea", value={"text": [PERSON_TEXT]})


def _frame(label, kind: str, metadata) -> np.ndarray:
    size = (metadata.width, metadata.height)
    if kind == "masks":
        return labelstudio_convert.frame_mask(label, size)
    frame = np.zeros((metadata.height, metadata.width), np.uint8)
    for ring in label.points:
        cv2.fillPoly(frame, [np.round(np.asarray(ring) * size).astype(np.int32)], 1)
    return frame.astype(bool)


def _iou(a, b, kind: str, metadata) -> float:
    """Mask or polygon IoU on the image; for other kinds 1.0 when class and coordinates agree."""
    if kind in ("masks", "polygons"):
        fa, fb = _frame(a, kind, metadata), _frame(b, kind, metadata)
        return float((fa & fb).sum() / max((fa | fb).sum(), 1)) if a.label == b.label else 0.0
    return 1.0 if review.same_geometry(a, b) else 0.0


def _assert_geometry_is(label, region: dict, kind: str, metadata) -> None:
    """The label holds what the person left in the region."""
    value = region["value"]
    size = (metadata.width, metadata.height)
    if kind == "boxes":
        assert label.bounding_box == pytest.approx([value[k] / 100 for k in ("x", "y", "width", "height")], abs=1e-9)
    elif kind == "masks":
        drawn = labelstudio_convert.decode_mask(value["rle"], size)
        shown = labelstudio_convert.frame_mask(label, size)
        assert (drawn & shown).sum() / (drawn | shown).sum() >= 0.99
    elif kind == "polygons":
        assert np.allclose(label.points[0], np.asarray(value["points"]) / 100, atol=1e-9)
    elif kind == "points":
        assert label.points[0] == pytest.approx([value["x"] / 100, value["y"] / 100], abs=1e-9)
    else:
        assert label.label == value["choices"][0]


def _check_text(dataset, field: str, ids: list[str], before: dict, counts) -> None:
    status = f"{field}_review"
    assert dataset[ids[0]][status] == "accepted" and dataset[ids[0]][field] == before[ids[0]]
    assert dataset[ids[1]][status] == "edited" and dataset[ids[1]][field] == PERSON_TEXT
    assert dataset[ids[1]][f"{field}_proposed"] == before[ids[1]]  # Gemini's text, kept for evaluation
    assert dataset[ids[2]][status] == "rejected" and dataset[ids[2]][field] == before[ids[2]]
    assert dataset[ids[3]][status] == "added" and dataset[ids[3]][field] == PERSON_TEXT
    assert dataset[ids[4]].get_field(status) is None and dataset[ids[4]][field] == before[ids[4]]
    assert all(dataset[i][f"{field}_reviewed"] for i in ids[:4]) and not dataset[ids[4]][f"{field}_reviewed"]
    assert (counts.accepted, counts.edited, counts.rejected, counts.added, counts.reviewed_samples) == (1, 1, 1, 1, 4)
