#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/gateway/test_browser.py), from Debian's own `chromium` package.
# Does nothing when it is already installed. Needs root (or sudo) the first time.
set -euo pipefail

CHROMIUM=/usr/bin/chromium  # where the browser tests look for it
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "error: $CHROMIUM is missing and apt-get is not available; install the Debian chromium package by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: installing chromium needs root: run 'apt-get install -y chromium' as root" >&2; exit 1
  fi
fi
echo "installing chromium (Debian package) for the browser tests..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
"$CHROMIUM" --version
