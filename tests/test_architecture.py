"""The agreed structure holds: import-linter contracts, no import cycles, no hidden imports.

The contracts live in ``pyproject.toml`` ([tool.importlinter]); what each layer
holds is described in ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "plugin"
LAZY_REASON = re.compile(r"#\s*lazy:\s*\S")


def test_import_linter_contracts_are_kept(monkeypatch):
    monkeypatch.chdir(REPO)  # lint-imports reads pyproject.toml from the working directory
    assert lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True) == 0


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("gemini_annotate", cache_dir=None)


def test_no_module_imports_one_that_imports_it_back(graph):
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(" → ".join((module, *back)))
    assert cycles == []


def test_the_emulator_imports_nothing_of_the_client(graph):
    emulator = {m for m in graph.modules if m.startswith("gemini_annotate.emulator")}
    reached = set()
    for module in emulator:
        reached |= graph.find_modules_directly_imported_by(module)
    assert sorted(m for m in reached - emulator if m.startswith("gemini_annotate")) == []


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, source line)`` of every import inside a function of a module."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append((inner.lineno, lines[inner.lineno - 1]))
    return sorted(set(found))


def test_every_import_inside_a_function_says_why_it_is_there():
    """Imports inside functions hide cycles; the few left (an optional dependency, start-up
    cost) each carry a ``# lazy: <reason>`` comment on their line."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line_number, line in _function_level_imports(path):
            if not LAZY_REASON.search(line):
                unexplained.append(f"{path.relative_to(REPO)}:{line_number}: {line.strip()}")
    assert unexplained == []


def test_the_function_level_import_check_finds_an_import_inside_a_function(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("import os\n\ndef f():\n    import json\n    return json\n")
    assert _function_level_imports(module) == [(4, "    import json")]
