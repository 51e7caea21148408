#!/usr/bin/env bash
# Adds deb-src to Debian's apt sources (deb822 or one-line format) if no
# source entry is there, so that `apt-get source` can fetch Debian's own
# sources (tools/tsan_abseil.sh). Uses sudo when not root.
set -euo pipefail
if grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  exit 0
fi
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  $SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
else
  grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' | $SUDO tee /etc/apt/sources.list.d/locus-deb-src.list >/dev/null
fi
echo "Added deb-src entries; updating apt"
$SUDO apt-get update -qq
