"""The review commands of ``gemini-annotate`` over a real database."""

from __future__ import annotations

import pytest

import gemini_annotate
from gemini_annotate.cli import main
from gemini_annotate.cli_commands import EXIT_ERROR, EXIT_OK


def test_runs_lists_inspects_and_deletes(coco_dataset, emulator, oracle_for, capsys):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini", classes=["person"], prompt="Find people.")

    assert main(["runs", coco_dataset.name]) == EXIT_OK
    assert "gemini: task=detect" in capsys.readouterr().out
    assert main(["runs", coco_dataset.name, "gemini"]) == EXIT_OK
    shown = capsys.readouterr().out
    assert "prompt: Find people." in shown and "classes: person" in shown and "0/6 samples reviewed" in shown
    assert main(["runs", coco_dataset.name, "nope"]) == EXIT_ERROR
    assert main(["runs", coco_dataset.name, "gemini", "--delete", "--delete-labels"]) == EXIT_OK
    assert not coco_dataset.has_field("gemini") and coco_dataset.list_runs() == []


def test_estimate_prints_requests_and_tokens(coco_dataset, capsys):
    assert main(["estimate", coco_dataset.name, "--max-image-side", "512"]) == EXIT_OK
    assert "6 of 6 sample(s) → 6 request(s)" in capsys.readouterr().out


def test_review_promote_and_evaluate_from_the_command_line(coco_dataset, emulator, oracle_for, capsys):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini")
    coco_dataset.limit(2).tag_samples("checked")
    name = coco_dataset.name

    assert main(["evaluate", name]) == EXIT_ERROR  # nothing reviewed yet
    assert main(["review", name, "--view-tag", "checked", "--classes", "person", "--reject"]) == EXIT_OK
    assert main(["review", name, "--view-tag", "checked", "--mark-reviewed"]) == EXIT_OK
    assert main(["promote", name, "--to", "truth"]) == EXIT_OK
    capsys.readouterr()
    assert main(["evaluate", name]) == EXIT_OK

    out = capsys.readouterr().out
    people = coco_dataset.match_tags("checked").count_values("gemini.detections.label")["person"]
    assert f"FP {people}, FN 0" in out and "mAP is not reported" in out
    assert "person" not in coco_dataset.distinct("truth.detections.label")


def test_review_with_an_empty_label_id_list_is_refused_not_applied_to_every_label(coco_dataset, emulator,
                                                                                   oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini")

    with pytest.raises(SystemExit):
        main(["review", coco_dataset.name, "--accept", "--label-ids"])

    assert set(coco_dataset.distinct("gemini.detections.review")) == {"unreviewed"}


@pytest.mark.parametrize("command, message", [
    (["promote", "{name}", "--label-field", "nope"], "'nope' is not a label field"),
    (["promote", "{name}", "--to", "ground_truth", "--label-field", "ground_truth"], "different field"),
    (["review", "{name}", "--label-field", "filepath", "--accept"], "'filepath' is not a label field"),
    (["evaluate", "{name}"], "no sample is marked reviewed"),
    (["runs", "{name}", "nope"], "no gemini-annotate run 'nope'"),
    (["labelstudio-send", "{name}", "--label-field", "nope", "--anno-key", "k", "--url", "http://127.0.0.1:9"],
     "'nope' is not a label field"),
])
def test_review_commands_say_what_is_wrong_instead_of_raising(coco_dataset, capsys, command, message):
    assert main([part.format(name=coco_dataset.name) for part in command]) == EXIT_ERROR
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--prices", "/no/such/prices.json"], "No such file"),
    (["--max-image-side", "3"], "max_image_side"),
    (["--task", "vqa"], "needs a question"),
])
def test_estimate_reports_bad_options_and_files_without_a_traceback(coco_dataset, capsys, flags, message):
    assert main(["estimate", coco_dataset.name, *flags]) == EXIT_ERROR
    assert message in capsys.readouterr().err
