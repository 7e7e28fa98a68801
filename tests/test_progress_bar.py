"""annotate()'s progress bar: on stderr by FiftyOne's setting, off with progress=False, a callable instead."""

from __future__ import annotations

import json

import fiftyone as fo
import pytest

import gemini_annotate
from gemini_annotate.emulator import Canned

ONE_BOX = json.dumps({"boxes": [{"box_2d": [100, 100, 400, 400], "label": "cat"}]})
NO_JSON = "this is not JSON"


@pytest.fixture
def four_images(coco_dataset):
    return coco_dataset.limit(4)


@pytest.mark.parametrize("setting, progress, shown", [
    (True, None, True),     # follows fo.config.show_progress_bars
    (False, None, False),
    (False, True, True),    # forced on
    (True, False, False),   # silenced
])
def test_progress_bar_on_stderr_follows_the_setting_and_the_argument(
        four_images, emulator, monkeypatch, capfd, setting, progress, shown):
    emulator(Canned(ONE_BOX), latency=0.01)
    monkeypatch.setattr(fo.config, "show_progress_bars", setting)

    gemini_annotate.annotate(four_images, label_field="gemini", progress=progress)

    out, err = capfd.readouterr()
    assert out == ""
    if shown:
        assert "4/4" in err and "samples/s" in err and "0 failed, 4 labels" in err
    else:
        assert err == ""


def test_progress_bar_counts_failures(four_images, emulator, monkeypatch, capfd):
    emulator(Canned([ONE_BOX, NO_JSON]), latency=0.01)

    gemini_annotate.annotate(four_images, label_field="gemini", progress=True, max_attempts=1)

    err = capfd.readouterr().err
    assert "4/4" in err and "2 failed" in err


def test_a_callable_receives_progress_and_no_bar_is_drawn(four_images, emulator, monkeypatch, capfd):
    emulator(Canned(ONE_BOX), latency=0.01)
    monkeypatch.setattr(fo.config, "show_progress_bars", True)
    seen = []

    gemini_annotate.annotate(four_images, label_field="gemini", progress=seen.append)

    assert seen[-1].finished == 4 and seen[-1].labels == 4
    assert capfd.readouterr().err == ""
