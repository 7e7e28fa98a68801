#!/usr/bin/env bash
# Installs what the browser tests need on a fresh Debian machine: Debian's
# Chromium (Playwright's own browser downloads are not used) and the Playwright
# Python package into the Python that runs the tests.
#
#   tests/browser/install.sh [PYTHON]      (default: the python on PATH)
set -euo pipefail
PYTHON="${1:-${PYTHON:-python}}"

if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-liberation >/dev/null
fi
if ! "$PYTHON" -c "import playwright" >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q "playwright>=1.45"
fi
echo "chromium: $(command -v chromium); playwright: $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("playwright"))')"
