#!/bin/sh
# A compile-failure test (tests/callmodel/CMakeLists.txt):
#
#   check_compile_fails.sh <pattern> <compiler> <flags>... -- <source> <define>
#
# Compiles <source> (syntax only) twice with <compiler> <flags>: as is, which
# must succeed (so a failure below comes from the case, not from the setup),
# and with -D<define>, which must fail with a diagnostic matching the
# extended regular expression <pattern>.
set -u
pattern=$1
shift
compiler=$1
shift
flags=""
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  flags="$flags '$(printf '%s' "$1" | sed "s/'/'\\\\''/g")'"
  shift
done
if [ "$#" -ne 3 ]; then
  echo "usage: $0 <pattern> <compiler> <flags>... -- <source> <define>" >&2
  exit 2
fi
source=$2
define=$3
# Plain-ASCII diagnostics (GCC quotes with ' rather than U+2018), whatever
# the caller's locale.
LC_ALL=C
export LC_ALL
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! eval "\"\$compiler\" $flags -fsyntax-only \"\$source\"" >"$out" 2>&1; then
  echo "FAIL: $source does not compile without -D$define:" >&2
  cat "$out" >&2
  exit 1
fi
if eval "\"\$compiler\" $flags -fsyntax-only -D\"\$define\" \"\$source\"" >"$out" 2>&1; then
  echo "FAIL: $source compiles with -D$define; it must not" >&2
  exit 1
fi
if ! grep -Eq "$pattern" "$out"; then
  echo "FAIL: $source fails with -D$define, but not with a diagnostic matching /$pattern/:" >&2
  cat "$out" >&2
  exit 1
fi
echo "PASS: -D$define does not compile (/$pattern/)"
