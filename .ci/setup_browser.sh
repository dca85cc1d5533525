#!/usr/bin/env bash
# Installs, once, what tests/test_browser.py needs: Debian's chromium (a system package; the tests never
# download a browser) and Playwright's Python package in the venv given as $1. Safe to run repeatedly.
set -euo pipefail
VENV="${1:-${CA_VENV:-$HOME/.venvs/comfyui-ca}}"
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
if ! "$VENV/bin/python" -c "import playwright.sync_api" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q playwright
fi
/usr/bin/chromium --version 2>/dev/null || true
