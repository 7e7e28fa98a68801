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

import pytest
import requests

import gemini_annotate
from gemini_annotate import review
from gemini_annotate.annotation_tool import load_corrections, send_for_review

pytestmark = pytest.mark.labelstudio

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
INSTALL = os.path.join(TESTS_DIR, "labelstudio", "install.sh")
INSTALL_SDK = os.path.join(TESTS_DIR, "labelstudio", "install_sdk.sh")
STARTUP_TIMEOUT = 240.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A Label Studio server on 127.0.0.1: (url, api token)."""
    venv = os.environ.get("LABEL_STUDIO_VENV", os.path.expanduser("~/.cache/gemini-annotate/label-studio"))
    subprocess.run(["bash", INSTALL, venv], check=True, capture_output=True, timeout=1200)
    subprocess.run(["bash", INSTALL_SDK, sys.executable], check=True, capture_output=True, timeout=1200)
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
                if requests.get(f"{url}/api/version", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
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
