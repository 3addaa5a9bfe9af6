#!/usr/bin/env bash
# Make sure a headless browser and its driver exist, so that tests/test_web.py drives
# the web viewer in a real browser instead of being skipped. Installs Debian's
# chromium and chromium-driver packages when chromium or chromedriver is missing;
# does nothing otherwise.
set -euo pipefail

have_browser() {
    { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } \
        && { command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ]; }
}

if have_browser; then
    echo "install-chromium: chromium and chromedriver found; nothing to do"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: no apt-get here; install chromium and chromedriver yourself" \
        "(the browser tests will be skipped)" >&2
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-chromium: not root and no sudo; the browser tests will be skipped" >&2
        exit 0
    fi
fi

echo "install-chromium: installing Debian's chromium and chromium-driver packages"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium chromium-driver
have_browser || { echo "install-chromium: installed but chromium/chromedriver not found" >&2; exit 1; }
