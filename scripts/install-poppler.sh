#!/usr/bin/env bash
# poppler-utils (pdftoppm, pdfinfo, pdftotext) for the PDF report tests (tests/gateway/test_report.py), which render
# the report to an image and measure it. From Debian's own package; does nothing when it is already installed.
# Needs root (or sudo) the first time.
set -euo pipefail

if command -v pdftoppm >/dev/null && command -v pdfinfo >/dev/null && command -v pdftotext >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "error: pdftoppm is missing and apt-get is not available; install poppler-utils by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: installing poppler-utils needs root: run 'apt-get install -y poppler-utils' as root" >&2; exit 1
  fi
fi
echo "installing poppler-utils (Debian package) for the PDF report tests..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null
pdftoppm -v 2>&1 | head -1
