#!/usr/bin/env bash
# Installs Debian's chromium for the site's browser tests (tests/test_site.py drives it through
# Playwright's Python client with executable_path, so `playwright install` and its CDN are not
# needed). As root it runs apt-get; otherwise it prints the command to run.
set -euo pipefail

for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v "$name")"
    exit 0
  fi
done

cmd="apt-get update && apt-get install -y --no-install-recommends chromium"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "+ $cmd"
  DEBIAN_FRONTEND=noninteractive bash -c "$cmd"
  command -v chromium
else
  echo "chromium is missing. Install it as root with:"
  echo "  sudo bash -c '$cmd'"
  echo "(or point MMEVAL_CHROMIUM at a Chromium/Chrome binary). The browser tests skip without it."
  exit 0  # not an error: `make test` goes on, and tests/test_site.py skips its browser tests with this reason
fi
