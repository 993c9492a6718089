#!/usr/bin/env bash
# Installs the browser that tests/e2e/test_browser.py drives: the distribution's Chromium and its chromedriver
# (Debian packages `chromium` and `chromium-driver`), never a downloaded browser build. Nothing to do when both
# /usr/bin/chromium and /usr/bin/chromedriver are there. Uses sudo (non-interactively) when not run as root.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "== chromium and chromedriver already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "no apt-get here: install Chromium and its chromedriver as /usr/bin/chromium and /usr/bin/chromedriver" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "not root and no sudo: cannot install chromium chromium-driver" >&2; exit 1; }
  as_root=(sudo -n)
fi
echo "== installing chromium chromium-driver with apt-get"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
/usr/bin/chromium --version
/usr/bin/chromedriver --version
