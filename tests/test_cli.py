"""The ``gemini-annotate`` command, run as a user runs it: a subprocess on a real database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import fiftyone as fo
import pytest

from gemini_annotate.emulator import Canned

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "gemini_annotate.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def _persist(dataset):
    dataset.persistent = True  # visible to the CLI's process; deleted by the fixture
    return dataset


def test_annotate_command_labels_a_dataset(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))
    _persist(coco_dataset)

    done = _cli("annotate", coco_dataset.name, "--task", "detect", "--classes", "person,cup",
                "--label-field", "pre", "--base-url", server.url, "--quiet")

    assert done.returncode == 0, done.stderr
    assert "labeled" in done.stdout and "0 failed" in done.stdout
    coco_dataset.reload()
    assert set(coco_dataset.distinct("pre.detections.label")) == {"person", "cup"}


def test_view_tag_limits_the_command_to_tagged_samples(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))
    _persist(coco_dataset)
    coco_dataset.take(2, seed=3).tag_samples("todo")

    done = _cli("annotate", coco_dataset.name, "--view-tag", "todo", "--quiet")

    assert done.returncode == 0, done.stderr
    assert server.count() == 2
    coco_dataset.reload()
    assert set(coco_dataset.exists("gemini").values("id")) == set(coco_dataset.match_tags("todo").values("id"))


def test_bad_key_exits_with_a_clear_message_and_no_secret(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset), api_keys={"right"})
    _persist(coco_dataset)
    wrong = "AIza" + "W" * 35

    done = _cli("annotate", coco_dataset.name, "--quiet", env={"GEMINI_API_KEY": wrong})

    assert done.returncode == 2
    assert "rejected the API key" in done.stderr
    assert wrong not in done.stdout + done.stderr
    coco_dataset.reload()
    assert not coco_dataset.has_field("gemini")


def test_missing_key_is_a_clear_error_before_any_request(coco_dataset, emulator):
    server = emulator(Canned('{"boxes": []}'))
    _persist(coco_dataset)
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}

    done = subprocess.run([sys.executable, "-m", "gemini_annotate.cli", "annotate", coco_dataset.name],
                          capture_output=True, text=True, timeout=300, env=env)

    assert done.returncode == 2 and "No Gemini API key found" in done.stderr
    assert "Traceback" not in done.stderr and server.count() == 0


def test_unknown_dataset_is_a_clear_error():
    done = _cli("annotate", "no-such-dataset-anywhere")
    assert done.returncode == 1 and "no FiftyOne dataset named 'no-such-dataset-anywhere'" in done.stderr


def test_invalid_options_are_reported_not_raised(coco_dataset):
    _persist(coco_dataset)
    done = _cli("annotate", coco_dataset.name, "--label-field", "bad field")
    assert done.returncode == 1 and "label_field" in done.stderr and "Traceback" not in done.stderr


def test_demo_runs_offline_without_a_key(tmp_path):
    name = f"gemini-annotate-demo-test-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["GOOGLE_GEMINI_BASE_URL"] = "http://127.0.0.1:9"  # the demo must not need it
    done = subprocess.run([sys.executable, "-m", "gemini_annotate.cli", "demo", "--name", name],
                          capture_output=True, text=True, timeout=300, env=env)
    try:
        assert done.returncode == 0, done.stderr
        assert "2 labeled" in done.stdout and "precision" in done.stdout
        dataset = fo.load_dataset(name)
        assert dataset.count("gemini.detections") > 0
        assert dataset.count("ground_truth.detections") == 26
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_emulator_command_serves_the_sdk(tmp_path):
    from gemini_annotate.gemini import GeminiClient
    from gemini_annotate.messages import GeminiRequest
    import asyncio

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gemini_annotate.cli", "emulator", "--port", str(port), "--canned", '{"boxes": [1]}'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert "listening on http://127.0.0.1:" in process.stdout.readline()

        async def ask():
            async with GeminiClient(model="gemini-3-flash-preview", base_url=f"http://127.0.0.1:{port}") as c:
                return await c.generate(GeminiRequest(prompt="hi", images=()))

        assert asyncio.run(ask()).text == '{"boxes": [1]}'
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_plugin_install_makes_fiftyone_find_the_operator(tmp_path):
    plugins_dir = tmp_path / "plugins"
    done = _cli("plugin-install", "--plugins-dir", str(plugins_dir))
    assert done.returncode == 0, done.stderr

    probe = subprocess.run(
        [sys.executable, "-c", (
            "import fiftyone.plugins as fop, fiftyone.operators as foo;"
            "d = fop.get_plugin('@gemini-annotate/gemini-annotate');"
            "print(d.directory, d.py_entry, d.secrets);"
            "print(foo.get_operator('@gemini-annotate/gemini-annotate/annotate_with_gemini').config.label)"
        )],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "FIFTYONE_PLUGINS_DIR": str(plugins_dir)},
    )
    assert probe.returncode == 0, probe.stderr
    assert "plugin/__init__.py" in probe.stdout and "GEMINI_API_KEY" in probe.stdout
    assert "Annotate with Gemini" in probe.stdout


def _options_of(command: str) -> dict:
    from gemini_annotate.cli import build_parser

    parser = build_parser()._subparsers._group_actions[0].choices[command]
    return {action.dest: action for action in parser._actions}


def test_every_configuration_field_is_an_option_of_the_annotate_command():
    from gemini_annotate.config import AnnotateConfig

    assert set(AnnotateConfig.model_fields) <= set(_options_of("annotate"))


@pytest.mark.parametrize("flags, expected", [
    (["--thinking-level", "low", "--unknown-labels", "keep"], {"thinking_level": "low", "unknown_labels": "keep"}),
    (["--classes", "cat, dog", "--reference-image", "a.jpg", "--reference-image", "b.jpg"],
     {"classes": ("cat", "dog"), "reference_images": ("a.jpg", "b.jpg")}),
    (["--batch", "--no-wait", "--batch-poll-interval", "5"], {"batch": True, "batch_wait": False,
                                                             "batch_poll_interval": 5.0}),
    ([], {"task": "detect", "label_field": "gemini", "batch_wait": True, "thinking_level": None}),
])
def test_annotate_options_become_the_run_configuration(flags, expected):
    from gemini_annotate.cli import build_parser
    from gemini_annotate.cli_commands import config_from_args

    config = config_from_args(build_parser().parse_args(["annotate", "some-dataset", *flags]))

    assert {name: getattr(config, name) for name in expected} == expected
