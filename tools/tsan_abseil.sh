#!/usr/bin/env bash
# Builds Debian's own Abseil (the source package of the installed libabsl-dev)
# with clang and ThreadSanitizer, as static libraries, into a cache directory,
# and prints that directory (a CMAKE_PREFIX_PATH for `make tsan`).
#
#   tools/tsan_abseil.sh            # -> ~/.cache/locus/absl-tsan-<version>
#
# Why: Debian's libabsl is not built with -fsanitize=thread, so TSan cannot see
# the synchronization inside absl::Mutex and reports races that are not there.
# The same version and patches as the installed package keep the headers the
# rest of the build compiles against identical.
#
# Needs a deb-src entry (tools/install_deps.sh --deb-src adds one) and
# dpkg-dev. Rebuilds only when the installed libabsl-dev version changes.
# Environment: LOCUS_CACHE_DIR (default ~/.cache/locus), JOBS (default nproc).
set -euo pipefail

version=$(dpkg-query -W -f='${Version}' libabsl-dev)
cache=${LOCUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/locus}
prefix="$cache/absl-tsan-${version//[^A-Za-z0-9.+-]/_}"
if [[ -f "$prefix/.complete" ]]; then
  echo "$prefix"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  # The source of exactly the installed version (Debian's patches included).
  apt-get source --only-source "abseil=$version" >&2
) || {
  echo "tsan_abseil.sh: cannot fetch Debian's abseil source $version (is there a deb-src entry?)" >&2
  exit 1
}
src=$(find "$work" -maxdepth 1 -type d -name 'abseil-*' | head -n 1)

rm -rf "$prefix"
CC=clang CXX=clang++ cmake -S "$src" -B "$work/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_STANDARD=17 -DABSL_PROPAGATE_CXX_STD=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
  -DCMAKE_C_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_SHARED_LIBS=OFF -DBUILD_TESTING=OFF \
  -DABSL_BUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$prefix" >&2
cmake --build "$work/build" -j "${JOBS:-$(nproc)}" >&2
cmake --install "$work/build" >&2
touch "$prefix/.complete"
echo "$prefix"
