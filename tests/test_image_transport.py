"""Ways to pass images: inline (default), File API uploads reused across runs, URIs, and
several images per request."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

import gemini_annotate
from gemini_annotate.config import MAX_IMAGES_PER_REQUEST, AnnotateConfig
from gemini_annotate.uploads import remembered_uploads

# not imported from conftest: with tests/browser/conftest.py also collected, that name is ambiguous
COCO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "coco_val_tiny")


def _labels(dataset, field):
    return [sorted(d.label for d in dets.detections) for dets in dataset.values(field)]


def test_file_api_uploads_each_image_once_across_two_tasks(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset), keep_requests=32)
    count = len(described_dataset)

    detect = gemini_annotate.annotate(described_dataset, task="detect", label_field="boxes",
                                      image_transport="file_api")
    caption = gemini_annotate.annotate(described_dataset, task="caption", label_field="caption",
                                       image_transport="file_api")

    assert server.files.uploads == count
    assert (detect.files_uploaded, detect.files_reused) == (count, 0)
    assert (caption.files_uploaded, caption.files_reused) == (0, count)
    assert _labels(described_dataset, "boxes") == _labels(described_dataset, "ground_truth")
    assert described_dataset.values("caption") == described_dataset.values("truth_caption")
    sent = [image for request in server.last_requests for image in request.images]
    assert len(sent) == 2 * count and all(i.uri and i.data is None for i in sent)
    assert len({i.uri for i in sent}) == count


def test_a_file_deleted_elsewhere_is_uploaded_again(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="caption", image_transport="file_api")
    gone = remembered_uploads(described_dataset)[0]["name"]
    server.files.delete(gone.split("/")[1])

    rerun = gemini_annotate.annotate(described_dataset, task="caption", label_field="again",
                                     image_transport="file_api")

    assert (rerun.files_uploaded, rerun.files_reused, rerun.failed) == (1, len(described_dataset) - 1, 0)


def test_a_reference_image_is_uploaded_once_for_all_concurrent_requests(described_dataset, emulator,
                                                                         described_oracle, tmp_path):
    server = emulator(described_oracle(described_dataset), latency=0.1, keep_requests=10)
    reference = tmp_path / "reference.png"
    Image.linear_gradient("L").resize((320, 200)).save(reference)

    summary = gemini_annotate.annotate(described_dataset, task="caption", image_transport="file_api",
                                       reference_images=[str(reference)], concurrency=6)

    assert summary.failed == 0
    assert server.files.uploads == summary.files_uploaded == len(described_dataset) + 1
    assert len({r.images[1].uri for r in server.last_requests}) == 1


def test_uploaded_files_are_deleted_on_request(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="caption", image_transport="file_api")
    described_dataset.persistent = True

    listed = subprocess.run([sys.executable, "-m", "gemini_annotate.cli", "files", described_dataset.name],
                            capture_output=True, text=True, timeout=300)
    deleted = subprocess.run([sys.executable, "-m", "gemini_annotate.cli", "files", described_dataset.name,
                              "--delete", "--base-url", server.url], capture_output=True, text=True, timeout=300)

    assert listed.returncode == 0 and f"{len(described_dataset)} uploaded file(s)" in listed.stdout
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted {len(described_dataset)}" in deleted.stdout
    assert server.files.deleted == len(described_dataset) and len(server.files) == 0
    assert remembered_uploads(described_dataset) == []


@pytest.fixture
def image_host():
    """A web server on 127.0.0.1 serving the COCO images, as a CDN would."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=os.path.join(COCO_DIR, "images"))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_uri_transport_sends_addresses_gemini_reads_itself(coco_dataset, emulator, oracle_for, image_host):
    server = emulator(oracle_for(coco_dataset), keep_requests=10)
    urls = [f"{image_host}/{os.path.basename(p)}" for p in coco_dataset.values("filepath")]
    coco_dataset.set_values("image_url", urls)

    summary = gemini_annotate.annotate(coco_dataset, task="detect", label_field="boxes",
                                       image_transport="uri", uri_field="image_url")

    assert summary.failed == 0
    assert _labels(coco_dataset, "boxes") == _labels(coco_dataset, "ground_truth")
    assert sorted(r.images[0].uri for r in server.last_requests) == sorted(urls)
    assert all(r.images[0].data is None for r in server.last_requests)


def test_unreachable_or_missing_uris_fail_only_their_samples(coco_dataset, emulator, oracle_for, image_host):
    emulator(oracle_for(coco_dataset))
    names = [os.path.basename(p) for p in coco_dataset.values("filepath")]
    urls = [f"{image_host}/{n}" for n in names]
    urls[0] = "gs://a-bucket/" + names[0]   # Gemini cannot read it from here
    urls[1] = None
    urls[2] = "/local/path.jpg"
    coco_dataset.set_values("image_url", urls)

    summary = gemini_annotate.annotate(coco_dataset, task="detect", image_transport="uri", uri_field="image_url")

    assert (summary.done, summary.failed) == (len(coco_dataset) - 3, 3)
    reasons = coco_dataset.values("gemini_reason")
    assert "Cannot fetch content" in reasons[0]
    assert "needs an http(s):// or gs:// address" in reasons[1] and "needs an http(s)" in reasons[2]


def test_reference_images_follow_the_sample_image_in_each_request(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset), keep_requests=10)
    references = [os.path.join(COCO_DIR, "images", n) for n in ("000000444010.jpg", "000000471345.jpg")]

    gemini_annotate.annotate(described_dataset, task="caption", reference_images=references)

    for request in server.last_requests:
        assert len(request.images) == 3
        assert request.images[1].data == open(references[0], "rb").read()
        assert "the 2 image(s) after it are reference examples" in request.prompt
    # the answer is about the sample's own image, the first one
    assert described_dataset.values("gemini") == described_dataset.values("truth_caption")


def test_requests_hold_at_most_3600_images():
    AnnotateConfig(reference_images=["x.jpg"] * (MAX_IMAGES_PER_REQUEST - 1))
    with pytest.raises(ValueError, match="3600 images per request"):
        AnnotateConfig(reference_images=["x.jpg"] * MAX_IMAGES_PER_REQUEST)


def test_inline_is_the_default_and_sends_the_bytes(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset), keep_requests=10)
    gemini_annotate.annotate(coco_dataset.limit(1), task="detect")
    assert server.last_requests[0].images[0].data == open(coco_dataset.first().filepath, "rb").read()
    assert server.files.uploads == 0
