"""Shared fixtures: a real FiftyOne database (a test database of its own), real
COCO images and labels, and the Gemini emulator driven through the real SDK."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

# before FiftyOne is imported anywhere: tests get their own database, and the
# mongod that runs on Debian 12 (6.0.5) is old but supported
# (one per pytest-xdist worker: delegated operations and datasets of one never reach the other)
os.environ.setdefault("FIFTYONE_DATABASE_NAME", "gemini_annotate_tests")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["FIFTYONE_DATABASE_NAME"] += "_" + os.environ["PYTEST_XDIST_WORKER"]
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")

import pytest  # noqa: E402

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(TESTS_DIR, "data")
COCO_DIR = os.path.join(DATA_DIR, "coco_val_tiny")
TEST_API_KEY = "emulator-test-key"
INSTALL_LOCK = "/tmp/gemini-annotate-install.lock"
"""Held while a test installs what it needs (Chromium, Label Studio), so parallel workers install once."""


def pytest_addoption(parser):
    from client_mistakes import MISTAKES

    parser.addoption("--client-mistake", choices=sorted(MISTAKES),
                     help="put this deliberate mistake into the client's geometry, to prove the tests catch it "
                          "(tests/client_mistakes.py)")


def pytest_configure(config):
    mistake = config.getoption("--client-mistake")
    if mistake:
        from client_mistakes import MISTAKES

        MISTAKES[mistake]()
    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        # the controller of a parallel run starts FiftyOne's database once, before its workers
        # would race to start one each (the loser fails to bind its port)
        import fiftyone as fo

        fo.list_datasets()


@pytest.fixture(autouse=True)
def _no_real_gemini(monkeypatch):
    """No test can reach Google: without an emulator, requests go to a closed port."""
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GEMINI_API_KEY", TEST_API_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


@pytest.fixture
def dataset_name():
    return f"gemini-annotate-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_dataset():
    """Creates datasets that are deleted after the test."""
    import fiftyone as fo

    made = []

    def make(name=None):
        dataset = fo.Dataset(name or f"gemini-annotate-test-{uuid.uuid4().hex[:10]}")
        made.append(dataset)
        return dataset

    yield make
    for dataset in made:
        if fo.dataset_exists(dataset.name):
            fo.delete_dataset(dataset.name)


@pytest.fixture(scope="session")
def coco_dataset_session():
    """The six COCO images with boxes and instance masks as ``ground_truth`` (read-only)."""
    import fiftyone as fo

    name = f"gemini-annotate-coco-{uuid.uuid4().hex[:8]}"
    dataset = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset,
        data_path=os.path.join(COCO_DIR, "images"),
        labels_path=os.path.join(COCO_DIR, "labels.json"),
        label_types=["segmentations"],
        label_field="ground_truth",
        name=name,
        progress=False,
    )
    dataset.compute_metadata(progress=False)
    yield dataset
    fo.delete_dataset(name)


@pytest.fixture
def coco_dataset(coco_dataset_session):
    """A private clone of the COCO dataset, free to modify."""
    clone = coco_dataset_session.clone(f"gemini-annotate-coco-{uuid.uuid4().hex[:8]}")
    yield clone
    clone.delete()


@pytest.fixture
def emulator(monkeypatch):
    """Starts emulators for a test (``emulator(scenario, **options)``), pointed at by the SDK."""
    from gemini_annotate.emulator import EmulatorServer

    servers = []

    def start(scenario, **options):
        options.setdefault("keep_requests", 32)
        server = EmulatorServer(scenario, **options).start()
        servers.append(server)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def oracle_for():
    """An oracle scenario answering from a collection's labels in a field."""
    from gemini_annotate.emulator import LabelIndex, Oracle

    def build(samples, field="ground_truth", **options):
        return Oracle(LabelIndex.from_samples(samples, field), **options)

    return build


@pytest.fixture
def review_as_a_person():
    """Reviews a pre-annotation field against ``ground_truth`` the way a person would:
    accepts proposals matching a true object (IoU 0.5, same class), rejects the
    others, draws what was missed, and marks the samples reviewed.
    Returns ``(accepted, rejected, added)``."""
    import fiftyone as fo
    import fiftyone.utils.iou as foui

    from gemini_annotate import review

    def reviewed(dataset, field="gemini"):
        kept = rejected = added = 0
        for sample in dataset.select_fields([field, "ground_truth"]):
            truth = [d for d in sample.ground_truth.detections if not d.iscrowd]
            proposals = sample[field].detections
            ious = foui.compute_ious(proposals, truth, classwise=True) if proposals and truth else None
            matched = set()
            for i, proposal in enumerate(proposals):
                best = None if ious is None else max(range(len(truth)), key=lambda j: ious[i][j])
                if best is not None and ious[i][best] >= 0.5 and best not in matched:
                    matched.add(best)
                    proposal.review = review.ACCEPTED
                    kept += 1
                else:
                    proposal.review = review.REJECTED
                    rejected += 1
            for j, gt in enumerate(truth):
                if j not in matched:
                    proposals.append(fo.Detection(label=gt.label, bounding_box=gt.bounding_box))
                    added += 1
            sample.save()
        review.mark_reviewed(dataset, field)
        return kept, rejected, added

    return reviewed


@pytest.fixture
def described_dataset(coco_dataset):
    """The COCO clone with known captions (``truth_caption``), scene classes
    (``truth_scene``, a Classification) and a ``place`` string, for the
    caption / classify / VQA tasks and prompt templates."""
    import fiftyone as fo

    ids = coco_dataset.values("id")
    coco_dataset.set_values("truth_caption", [f"A COCO photograph, number {i}." for i in range(len(ids))])
    coco_dataset.set_values("truth_scene", [fo.Classification(label="indoor" if i % 2 else "outdoor")
                                            for i in range(len(ids))])
    coco_dataset.set_values("place", [f"place {i}" for i in range(len(ids))])
    return coco_dataset


@pytest.fixture
def described_oracle():
    """An oracle answering from a collection's boxes, captions and scene classes."""
    from gemini_annotate.emulator import LabelIndex, Oracle

    def build(samples, **options):
        index = LabelIndex.from_samples(samples, "ground_truth", caption_field="truth_caption",
                                        classification_field="truth_scene")
        return Oracle(index, **options)

    return build


REPO_ROOT = os.path.dirname(TESTS_DIR)


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A FiftyOne plugins directory holding this checkout, for this process and its children.

    Returns the directory.
    """
    import fiftyone as fo

    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "gemini-annotate").symlink_to(REPO_ROOT, target_is_directory=True)
    monkeypatch.setattr(fo.config, "plugins_dir", str(plugins_dir))
    monkeypatch.setenv("FIFTYONE_PLUGINS_DIR", str(plugins_dir))
    return plugins_dir


DELEGATED_TIMEOUT = 180.0


@pytest.fixture
def delegated_launch(tmp_path):
    """Runs ``fiftyone delegated launch`` until a dataset's queued operations finish.

    ``delegated_launch(dataset_name)`` returns the dataset's delegated operations
    once none is queued or running (or the timeout passed), then stops the service.
    """
    import subprocess
    import sys
    import time

    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    service = DelegatedOperationService()
    names = []

    def launch(dataset_name: str):
        names.append(dataset_name)
        log_path = tmp_path / f"delegated-{len(names)}.log"
        with open(log_path, "w") as log:
            launcher = subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "fiftyone"), "delegated", "launch"],
                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
            )
            try:
                deadline = time.monotonic() + DELEGATED_TIMEOUT
                pending = (ExecutionRunState.QUEUED, ExecutionRunState.SCHEDULED, ExecutionRunState.RUNNING)
                while time.monotonic() < deadline:
                    ops = service.list_operations(dataset_name=dataset_name)
                    if ops and all(op.run_state not in pending for op in ops):
                        break
                    time.sleep(0.5)
            finally:
                launcher.terminate()
                launcher.wait(30)
        launch.log = log_path.read_text()
        return service.list_operations(dataset_name=dataset_name)

    yield launch
    for name in names:
        for op in service.list_operations(dataset_name=name):
            service.delete_operation(op.id)


@dataclass(frozen=True)
class Chromium:
    """Debian's Chromium and the flags it needs headless, as root, on a closed network."""

    executable: str = "/usr/bin/chromium"
    args: tuple = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run")


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Chromium (and Playwright), installed by tests/browser/install.sh when missing."""
    import subprocess
    import sys

    subprocess.run(["flock", INSTALL_LOCK, "bash", os.path.join(TESTS_DIR, "browser", "install.sh"), sys.executable],
                   check=True, timeout=1200)
    return Chromium()
