"""Vertex AI through the same SDK: client construction, request routing, credentials.

What cannot be tested here: Google's real Vertex endpoints and IAM (no network),
Application Default Credentials from gcloud or a service account (replaced by a
stand-in), gs:// images read by Vertex, and Vertex batch jobs (which read Cloud
Storage or BigQuery; this tool refuses batch mode on Vertex).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import google.auth
import google.auth.exceptions
import google.oauth2.credentials
import pytest

import gemini_annotate
from gemini_annotate.config import AnnotateConfig
from gemini_annotate.emulator import Scenario
from gemini_annotate.job import AnnotationStopped

VERTEX = dict(vertexai=True, project="my-project", location="us-central1")


@pytest.fixture
def application_default_credentials(monkeypatch):
    """What `gcloud auth application-default login` would give: a token for a project."""
    credentials = google.oauth2.credentials.Credentials(
        token="ya29.test-token",
        expiry=datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(hours=1),
    )
    monkeypatch.setattr(google.auth, "default", lambda *args, **kwargs: (credentials, "my-project"))
    return credentials


@pytest.fixture
def no_credentials(monkeypatch):
    def missing(*args, **kwargs):
        raise google.auth.exceptions.DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", missing)


class CallerRecorder(Scenario):
    """The oracle, recording the credential each request came with (a key or a bearer token)."""

    def __init__(self, inner: Scenario):
        self.inner = inner
        self.credentials: list = []

    def respond(self, request):
        self.credentials.append(request.api_key)
        return self.inner.respond(request)


def test_vertex_requests_go_to_the_project_and_region_with_a_bearer_token(
        coco_dataset, emulator, oracle_for, application_default_credentials):
    recorder = CallerRecorder(oracle_for(coco_dataset))
    server = emulator(recorder)

    summary = gemini_annotate.annotate(coco_dataset, task="detect", label_field="boxes", base_url=server.url,
                                       **VERTEX)

    assert summary.done == len(coco_dataset) and summary.failed == 0
    paths = {record.path for record in server.records}
    assert paths == {"/v1beta1/projects/my-project/locations/us-central1/publishers/google/models/"
                     "gemini-3-flash-preview:generateContent"}
    assert coco_dataset.count("boxes.detections") == coco_dataset.count("ground_truth.detections")
    # every request carried the credentials' token as a bearer token, not the API key of the environment
    assert recorder.credentials == [application_default_credentials.token] * len(coco_dataset)
    # the run records where it ran, never a credential
    config = coco_dataset.get_run_info("boxes").config
    assert (config.vertexai, config.project, config.location) == (True, "my-project", "us-central1")
    assert "ya29" not in str(config.serialize())


def test_missing_vertex_credentials_stop_the_run_with_what_to_do(coco_dataset, emulator, oracle_for,
                                                                 no_credentials):
    server = emulator(oracle_for(coco_dataset))

    with pytest.raises(AnnotationStopped, match="application-default login"):
        gemini_annotate.annotate(coco_dataset, task="caption", base_url=server.url, **VERTEX)
    assert server.count() == 0


def test_vertex_command_line_reports_missing_credentials(coco_dataset, tmp_path):
    coco_dataset.persistent = True
    env = {"NO_GCE_CHECK": "true", "CLOUDSDK_CONFIG": str(tmp_path), "GOOGLE_APPLICATION_CREDENTIALS": "",
           "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "gemini_annotate.cli", "annotate", coco_dataset.name, "--quiet", "--vertexai",
         "--project", "my-project", "--location", "us-central1", "--base-url", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )
    assert done.returncode == 2, done.stderr
    assert "Vertex AI credentials" in done.stderr


@pytest.mark.parametrize("options, message", [
    (dict(VERTEX, image_transport="file_api"), "no File API"),
    (dict(VERTEX, batch=True), "batch mode runs on the Gemini Developer API only"),
    (dict(VERTEX, api="interactions"), "generateContent"),
    (dict(project="my-project"), "vertexai=True"),
])
def test_options_vertex_cannot_serve_are_refused_up_front(options, message):
    with pytest.raises(ValueError, match=message):
        AnnotateConfig(**options)
