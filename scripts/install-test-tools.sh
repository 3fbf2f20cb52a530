#!/usr/bin/env bash
# The system tools some tests need, from Debian's own packages; does nothing when they are already installed. Needs
# root (or sudo) the first time.
#   - chromium (headless, at /usr/bin/chromium) for the browser tests (tests/gateway/test_browser.py);
#   - poppler-utils (pdftoppm, pdfinfo, pdftotext) for the PDF report tests, which render the report and measure it.
set -euo pipefail

CHROMIUM=/usr/bin/chromium  # where the browser tests look for it
packages=()
[ -x "$CHROMIUM" ] || packages+=(chromium fonts-dejavu-core)
for tool in pdftoppm pdfinfo pdftotext; do
  command -v "$tool" >/dev/null || { packages+=(poppler-utils); break; }
done
[ ${#packages[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "error: ${packages[*]} missing and apt-get is not available; install these Debian packages by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: installing ${packages[*]} needs root: run 'apt-get install -y ${packages[*]}' as root" >&2; exit 1
  fi
fi
echo "installing ${packages[*]} (Debian packages) for the browser and PDF report tests..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
"$CHROMIUM" --version
pdftoppm -v 2>&1 | head -1
