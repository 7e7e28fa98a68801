#!/usr/bin/env bash
# Installs label-studio-sdk 1.x, the client FiftyOne's Label Studio integration
# speaks, into a Python environment, without the opencv-python it names:
# FiftyOne already brings OpenCV as opencv-python-headless, and a second cv2
# distribution would overwrite it with a desktop build that needs libGL.
#
#   tests/labelstudio/install_sdk.sh [PYTHON]      (default: the python on PATH)
set -euo pipefail
PYTHON="${1:-${PYTHON:-python}}"
VERSION="${LABEL_STUDIO_SDK_VERSION:-1.0.20}"

if ! "$PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('label-studio-sdk') != '$VERSION')" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-deps "label-studio-sdk==$VERSION"
    "$PYTHON" - <<'PY' | xargs -r -d '\n' "$PYTHON" -m pip install -q
import importlib.metadata
from packaging.requirements import Requirement

for line in importlib.metadata.requires("label-studio-sdk") or ():
    requirement = Requirement(line)
    if requirement.name.lower().startswith("opencv-"):
        continue  # cv2 comes from FiftyOne's opencv-python-headless
    if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
        requirement.marker = None
        print(requirement)
PY
fi
echo "label-studio-sdk: $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("label-studio-sdk"))')"
