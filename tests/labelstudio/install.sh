#!/usr/bin/env bash
# Installs Label Studio from PyPI into a virtualenv of its own (its pins clash
# with FiftyOne's), for the annotation round-trip test.
#
#   tests/labelstudio/install.sh [VENV_DIR]
#   (default: $LABEL_STUDIO_VENV, else ~/.cache/gemini-annotate/label-studio)
set -euo pipefail
VENV="${1:-${LABEL_STUDIO_VENV:-$HOME/.cache/gemini-annotate/label-studio}}"
VERSION="${LABEL_STUDIO_VERSION:-1.23.2}"

if [ -x "$VENV/bin/label-studio" ] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$VERSION')" 2>/dev/null; then
    echo "label-studio $VERSION: $VENV/bin/label-studio"
    exit 0
fi
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "label-studio==$VERSION"
echo "label-studio $VERSION: $VENV/bin/label-studio"
