"""The emulator beyond boxes: answers for caption / classify / VQA schemas, File API
records and expiry, and batch jobs moving through their states over time."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from gemini_annotate.config import AnnotateConfig
from gemini_annotate.emulator.batches import BatchStore
from gemini_annotate.emulator.files import FileAccessError, FileStore
from gemini_annotate.emulator.oracle import KnownImage, KnownObject, answer_form, answer_question, oracle_answer
from gemini_annotate.emulator.wire import EmulatedImage, EmulatorRequest
from gemini_annotate.tasks import TASKS

KNOWN = KnownImage(
    key="k", width=640, height=480, caption="Two people and a dog on a beach.", classification="outdoor",
    objects=(KnownObject("person", (0.1, 0.1, 0.2, 0.5)), KnownObject("person", (0.5, 0.1, 0.2, 0.5)),
             KnownObject("dog", (0.3, 0.6, 0.2, 0.2))),
)


def _schema(**options):
    config = AnnotateConfig(**options)
    return TASKS[config.task].build_schema(config)


@pytest.mark.parametrize("options, kind, reply", [
    (dict(task="caption"), "caption", {"caption": "Two people and a dog on a beach."}),
    (dict(task="classify", classes=["indoor", "outdoor"]), "classify", {"label": "outdoor"}),
    (dict(task="classify", classes=["dog", "cat", "person"], multi_label=True), "classify_multi",
     {"labels": ["person", "dog"]}),
    (dict(task="vqa", question="How many people are there?"), "vqa", {"answer": "2"}),
])
def test_the_oracle_answers_each_task_in_its_schema(options, kind, reply):
    form = answer_form(_schema(**options), "")
    assert form.kind == kind
    prompt = "Question: " + options.get("question", "")
    assert json.loads(oracle_answer(KNOWN, form, (640, 480), prompt=prompt)) == reply


@pytest.mark.parametrize("question, answer", [
    ("How many people are there?", "2"),
    ("How many dogs can you see?", "1"),
    ("How many cats are there?", "0"),
    ("Is there a dog?", "yes"),
    ("Are there any cats in the picture?", "no"),
    ("What kind of scene is this?", "outdoor"),
    ("Describe the image.", "Two people and a dog on a beach."),
])
def test_the_oracle_answers_simple_questions_truthfully(question, answer):
    assert answer_question(KNOWN, f"Answer this question.\nQuestion: {question}") == answer


def test_uploaded_files_are_read_back_for_requests_until_they_expire():
    store = FileStore()
    upload = store.start_upload("image/png", "a.png")
    file = store.finish_upload(upload, b"png bytes")
    uri = store.record(file, "http://127.0.0.1:1")["uri"]

    assert store.resolve(EmulatedImage("image/png", uri=uri)).data == b"png bytes"
    file.created -= datetime.timedelta(hours=49)
    with pytest.raises(FileAccessError) as gone:
        store.resolve(EmulatedImage("image/png", uri=uri))
    assert gone.value.status == 403


def test_uris_beyond_the_loopback_interface_are_not_fetched():
    with pytest.raises(FileAccessError, match="Cannot fetch"):
        FileStore().resolve(EmulatedImage("image/jpeg", uri="https://example.com/a.jpg"))


def test_batch_jobs_move_from_pending_to_running_to_succeeded():
    store = BatchStore(pending_seconds=0.2, running_seconds=0.2)
    request = EmulatorRequest(api="generate_content", model="gemini-3-flash-preview", prompt="hi")
    job = store.create("gemini-3-flash-preview", "job", [({"key": "a"}, request), ({"key": "b"}, request)])
    answered = []

    def answer(req):
        answered.append(req)
        return 200, {"candidates": []}

    states = []
    for _ in range(8):
        body = store.body(job, answer, lambda data: "files/results")
        states.append(body["metadata"]["state"])
        time.sleep(0.1)

    assert states[0] == "BATCH_STATE_PENDING" and states[-1] == "BATCH_STATE_SUCCEEDED"
    assert "BATCH_STATE_RUNNING" in states
    assert len(answered) == 2, "answers are computed once"
    responses = body["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    assert [r["metadata"]["key"] for r in responses] == ["a", "b"] and body["done"] is True
