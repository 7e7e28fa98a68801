"""GeminiModel: Gemini behind FiftyOne's Model interface, for ``apply_model``."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.utils.image as foui
import pytest

from gemini_annotate import GeminiModel
from gemini_annotate.emulator import Canned
from gemini_annotate.messages import GeminiError


def test_apply_model_writes_classifications_in_concurrent_batches(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset), keep_requests=10, latency=0.2)
    model = GeminiModel(task="classify", classes=["indoor", "outdoor"])

    described_dataset.apply_model(model, label_field="scene", batch_size=3, progress=False)

    assert described_dataset.values("scene.label") == described_dataset.values("truth_scene.label")
    assert described_dataset.first().scene.gemini_model == model.config.model
    assert model.failures == {} and model.usage.input_tokens > 0
    assert server.count() == len(described_dataset) and server.max_in_flight == 3
    # the file itself went to Gemini (prepared exactly as an annotation run prepares it)
    sent = {r.images[0].data for r in server.last_requests}
    assert open(described_dataset.first().filepath, "rb").read() in sent


def test_apply_model_fills_prompt_templates_from_each_sample(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset), keep_requests=10)
    model = GeminiModel(task="caption", prompt="Describe this picture from {place}.")

    described_dataset.apply_model(model, label_field="caption", progress=False)

    assert described_dataset.values("caption") == described_dataset.values("truth_caption")
    assert sorted(r.prompt for r in server.last_requests) == sorted(
        f"Describe this picture from {p}." for p in described_dataset.values("place"))


def test_predict_takes_an_image_array_like_any_zoo_model(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    sample = coco_dataset.first()

    label = GeminiModel(task="detect").predict(foui.read(sample.filepath))

    assert isinstance(label, fo.Detections)
    assert sorted(d.label for d in label.detections) == sorted(d.label for d in sample.ground_truth.detections)


def test_an_unreadable_reply_gives_no_label_and_a_reason(coco_dataset, emulator):
    emulator(Canned(['{"boxes": []}', "Sorry, I cannot help with that."]))  # every other reply
    model = GeminiModel(task="detect")

    coco_dataset.apply_model(model, label_field="pred", batch_size=4, progress=False)

    assert coco_dataset.count("pred") == len(coco_dataset) // 2
    assert len(model.failures) == len(coco_dataset) // 2
    assert all(reason.startswith("unreadable reply") for reason in model.failures.values())


def test_a_bad_key_stops_apply_model_with_a_clear_error(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset), api_keys={"right"})
    model = GeminiModel(task="caption", api_key="wrong")

    with pytest.raises(GeminiError, match="rejected the API key"):
        coco_dataset.apply_model(model, label_field="caption", batch_size=2, skip_failures=False, progress=False)
    with pytest.raises(GeminiError):  # no further requests once the key is known to be bad
        model.predict_all([None], samples=[coco_dataset.last()])
    assert server.count() == 2


def test_batch_mode_is_refused_with_the_way_to_get_it():
    with pytest.raises(ValueError, match="batch=True"):
        GeminiModel(task="caption", batch=True)
