"""One reply → result path: the same messy replies give the same statuses, reasons and labels
through an online run, a Batch API run and ``apply_model`` with :class:`GeminiModel`."""

from __future__ import annotations

import io

import gemini_annotate
import numpy as np
import pytest
from gemini_annotate.emulator import EmulatorReply, Scenario
from gemini_annotate.messages import GeminiReply
from gemini_annotate.results import TRUNCATED_REASON, reply_result
from gemini_annotate.tasks import ReplyContext, get_task
from gemini_annotate.vocabulary import Provenance
from PIL import Image

CAT = '{"box_2d": [100, 100, 500, 500], "label": "cat"}'
DOG = '{"box_2d": [200, 600, 700, 900], "label": "dog"}'

# (name, reply text, finish reason, expected status, a phrase of the expected reason)
MESSY_REPLIES = [
    ("clean", f'{{"boxes": [{CAT}, {DOG}]}}', "STOP", "ok", None),
    ("fenced in prose", f'Here you go:\n```json\n{{"boxes": [{CAT}]}}\n```\nDone.', "STOP", "ok", None),
    ("cut mid-item", f'{{"boxes": [{CAT}, {{"box_2d": [600, ', "MAX_TOKENS", "partial", "truncated"),
    ("cut after the last item", f'{{"boxes": [{CAT}, {DOG}]}}', "MAX_TOKENS", "partial", TRUNCATED_REASON),
    ("refused", "", "SAFETY", "failed", "declined to answer"),
    ("no JSON at all", "I cannot see any objects I could box.", "STOP", "failed", "unreadable reply"),
    ("a class outside the list", f'{{"boxes": [{CAT}, {{"box_2d": [1, 1, 9, 9], "label": "sofa"}}]}}',
     "STOP", "ok", "not one of the classes"),
    ("swapped corners", '{"boxes": [{"box_2d": [500, 500, 100, 100], "label": "cat"}]}', "STOP", "ok",
     "corners were swapped"),
]
COLOURS = [(40 * i + 20, 255 - 30 * i, (90 * i) % 256) for i in range(len(MESSY_REPLIES))]


class ReplyByColour(Scenario):
    """Answers each image with the messy reply of its colour (the test's own images)."""

    def respond(self, request):
        pixels = np.asarray(Image.open(io.BytesIO(request.image_data)).convert("RGB"), float)
        mean = pixels.reshape(-1, 3).mean(axis=0)
        case = int(np.argmin([np.abs(mean - colour).sum() for colour in COLOURS]))
        _, text, finish_reason, _, _ = MESSY_REPLIES[case]
        return EmulatorReply(text, finish_reason)


@pytest.fixture
def messy_dataset(make_dataset, tmp_path):
    import fiftyone as fo

    dataset = make_dataset()
    samples = []
    for (name, *_), colour in zip(MESSY_REPLIES, COLOURS):
        path = tmp_path / f"{name.replace(' ', '-')}.jpg"
        Image.new("RGB", (320, 240), colour).save(path, quality=95)
        samples.append(fo.Sample(filepath=str(path), case=name))
    dataset.add_samples(samples)
    return dataset


def _labels(value) -> list[tuple[str, tuple[float, ...]]]:
    if value is None:
        return []
    return sorted((d.label, tuple(round(v, 6) for v in d.bounding_box)) for d in value.detections)


def _run_results(dataset, field: str) -> dict[str, tuple]:
    return {case: (status, reason, _labels(labels)) for case, status, reason, labels
            in zip(*dataset.values(["case", f"{field}_status", f"{field}_reason", field]))}


def test_messy_replies_get_the_same_result_through_every_front_door(messy_dataset, emulator):
    emulator(ReplyByColour(), batch_timing=(0.1, 0.1))
    options = dict(task="detect", classes=["cat", "dog"])

    gemini_annotate.annotate(messy_dataset, label_field="online", **options)
    gemini_annotate.annotate(messy_dataset, label_field="batched", batch=True, batch_poll_interval=0.1, **options)
    model = gemini_annotate.GeminiModel(**options)
    messy_dataset.apply_model(model, label_field="applied", batch_size=3, progress=False)

    online = _run_results(messy_dataset, "online")
    assert _run_results(messy_dataset, "batched") == online
    applied = {}
    for sample_id, case, labels in zip(*messy_dataset.values(["id", "case", "applied"])):
        if sample_id in model.failures:
            applied[case] = ("failed", model.failures[sample_id], _labels(labels))
        else:
            result = model.results[sample_id]
            applied[case] = (result.status, result.reason, _labels(labels))
    assert applied == online
    for name, _, _, status, phrase in MESSY_REPLIES:
        got_status, reason, labels = online[name]
        assert got_status == status, name
        assert (phrase is None and reason is None) or (phrase is not None and phrase in reason), (name, reason)
        assert bool(labels) == (status != "failed"), name


@pytest.mark.parametrize("name, text, finish_reason, status, phrase", MESSY_REPLIES)
def test_reply_result_reads_each_messy_reply(name, text, finish_reason, status, phrase):
    config = gemini_annotate.AnnotateConfig(task="detect", classes=["cat", "dog"])
    context = ReplyContext(config, (320, 240), Provenance(model=config.model, run_key="test"))

    result = reply_result("sample", GeminiReply(text, finish_reason), get_task("detect"), context)

    assert result.status == status
    assert (phrase is None and result.reason is None) or phrase in result.reason
    assert (result.label is None) == (status == "failed")
